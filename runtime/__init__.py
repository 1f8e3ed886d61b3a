"""etn: equivariant tensor network interatomic potentials.

    >>> import etn
    >>> spec = etn.Spec.load("spec.toml")            # or etn.catalogue.load("tiny")
    >>> etn.schedule(spec)                             # exact CG contraction plan
    >>> pot = etn.Potential.random(spec, seed=0)       # or etn.Potential.load("model.etn")
    >>> atoms.calc = etn.Calculator(pot)
    >>> etn.Fitter(spec, train, valid).run()           # frames from etn.io.dataset.read

The package is in rooms, each importing only the ones before it: ``etn.generator`` (spec, exact SH
and CG, schedule), ``etn.io`` (pairs, model files, data, metrics, reports), ``etn.backends``
(numpy reference, rendering, build, C and CUDA), ``etn.potential``, ``etn.fitting`` (ALS, grades,
MPI), ``etn.hosts`` (ASE, LAMMPS), ``etn.workflows`` (the commands' work), ``etn.cli``. Rooms and
their modules load on first use: ``etn.fitting.fit.Fitter`` works after ``import etn`` alone.
"""

__version__ = "0.1.0"

import importlib

#: the rooms of the package and their modules, loaded on first attribute access
ROOMS = {
    "io": ("neighbors", "modelfile", "dataset", "metrics", "report"),
    "backends": ("reference", "design", "plan", "codegen", "build", "cbackend", "cdesign", "cuda", "resolver"),
    "fitting": ("fit", "grade", "parallel"),
    "hosts": ("calculator", "lammps"),
    "workflows": ("train", "learn", "example"),
}
#: names of the curated namespace that live in a room: name -> (module, attribute)
LAZY = {"Calculator": ("hosts.calculator", "Calculator"), "Fitter": ("fitting.fit", "Fitter"),
        "FitSettings": ("fitting.fit", "FitSettings"), "set_threads": ("backends.resolver", "set_threads")}
MODULES = {"cli", "cost", "potential", "generator", "data"}


def lazy_modules(package: str, names) -> callable:
    """A module ``__getattr__`` that imports the submodules ``names`` of ``package`` on first access."""
    def getattr_(name):
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr_


# the rooms' __init__ files use ROOMS and lazy_modules: defined above, imported below
from .generator import EtnError, Irreps, Schedule, Spec, SpecError, schedule  # noqa: E402
from .io.modelfile import ModelFileError  # noqa: E402
from .io.neighbors import ConfigurationError, ExtrapolationWarning  # noqa: E402
from .potential import Potential  # noqa: E402
from . import catalogue  # noqa: E402


def __getattr__(name):
    if name in LAZY:
        module, attr = LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    if name in ROOMS or name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'etn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(LAZY) | set(ROOMS) | MODULES | {"data"})


__all__ = ["Calculator", "ConfigurationError", "EtnError", "ExtrapolationWarning", "FitSettings", "Fitter", "Irreps",
           "ModelFileError", "Potential", "Schedule", "Spec", "SpecError", "__version__", "catalogue", "schedule",
           "set_threads"]
