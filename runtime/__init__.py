"""etn: equivariant tensor network interatomic potentials.

    >>> import etn
    >>> spec = etn.Spec.load("spec.toml")            # or etn.catalogue.load("tiny")
    >>> etn.schedule(spec)                             # exact CG contraction plan
    >>> pot = etn.Potential.random(spec, seed=0)       # or etn.Potential.load("model.etn")
    >>> atoms.calc = etn.Calculator(pot)
"""

__version__ = "0.1.0"

from .generator import EtnError, Irreps, Schedule, Spec, SpecError, schedule  # noqa: E402
from .modelfile import ModelFileError  # noqa: E402
from .neighbors import ConfigurationError, ExtrapolationWarning  # noqa: E402
from .potential import Potential  # noqa: E402
from . import catalogue  # noqa: E402


#: Submodules importable as attributes of ``etn`` without importing them first (``etn.fit.Fitter``).
SUBMODULES = {"build", "calculator", "cdesign", "cli", "codegen", "cuda", "dataset", "design", "example", "fit", "grade",
              "lammps", "learn", "metrics", "modelfile", "neighbors", "potential", "reference", "report", "train"}


def __getattr__(name):
    if name == "Calculator":  # imports ASE's calculator machinery only when asked for
        from .calculator import Calculator

        return Calculator
    if name in SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'etn' has no attribute {name!r}")


__all__ = ["Calculator", "ConfigurationError", "EtnError", "ExtrapolationWarning", "Irreps", "ModelFileError", "Potential",
           "Schedule", "Spec", "SpecError", "__version__", "catalogue", "schedule"]
