"""Compile rendered C into a cffi extension module, cached by content.

Cache key: SHA-256 of the rendered header and kernels, the compiler's identity (its ``--version``),
the flags, the machine architecture and CPU model (flags include ``-march=native``), the Python
extension ABI, and :data:`CACHE_VERSION`. The cache lives in ``$ETN_CACHE_DIR`` or the user cache
directory (``platformdirs``). Builds happen in a private temporary folder and are published with an
atomic ``os.replace``, so processes building the same model at once all end with one good module.
A failed build raises :class:`CompilerError` naming a log file with the compiler's output. Each module
is published with its SHA-256 beside it (``*.so.sha256``) and checked before it is loaded: a truncated,
damaged or replaced module is rebuilt rather than loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import importlib.machinery
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path

from .codegen import Source
from ..generator.errors import EtnError

CACHE_VERSION = 1
# -ffp-contract=fast: fused multiply-adds (ISO C modes leave them off by default); about 6% on `default`.
# -fno-math-errno: sqrt of a vector becomes one SIMD instruction instead of a scalar call per lane (the
# argument is a sum of squares, so errno is never set and the results are the same correctly rounded ones)
FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-fPIC", "-shared", "-std=c99"]


class CompilerError(EtnError, RuntimeError):
    """No C compiler, or compilation failed; the message says what to do and where the log is."""


def cache_dir() -> Path:
    """``$ETN_CACHE_DIR``, else the user cache directory; without a usable home directory, a per-user
    folder in the system's temporary directory."""
    env = os.environ.get("ETN_CACHE_DIR")
    if env:
        return Path(env).absolute()
    import platformdirs

    path = Path(platformdirs.user_cache_dir("etn"))
    if not path.is_absolute() or str(path).startswith("~"):  # HOME unset
        path = Path(tempfile.gettempdir()) / f"etn-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def work_folder(root: Path, key: str, error=None) -> Path:
    """A private build folder in the cache ``root``; ``error`` (an EtnError class) says so if the cache
    cannot be written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=root))
    except OSError as e:
        raise (error or CompilerError)(f"cannot write the kernel cache {root} ({e.strerror or e}); point "
                                       f"ETN_CACHE_DIR at a writable folder") from None


def publish(built: Path, final: Path) -> None:
    """Move a built module to its cache place, its SHA-256 first (see :func:`_verified`); each step atomic."""
    stamp = built.with_name(final.name + ".sha256")
    stamp.write_text(_digest(built) + "\n")
    os.replace(stamp, final.with_name(stamp.name))
    os.replace(built, final)


def _verified(final: Path) -> bool:
    """Whether a cached module is the one published: its SHA-256 matches the digest written beside it at
    publish time (a truncated, damaged or replaced file does not, and is rebuilt)."""
    stamp = final.with_name(final.name + ".sha256")
    try:
        return stamp.read_text().strip() == _digest(final)
    except OSError:
        return False


def compiler() -> list[str]:
    cc = shlex.split(os.environ.get("CC", "cc"))
    if not cc or not shutil.which(cc[0]):
        raise CompilerError(f"no C compiler found (looked for {cc[0] if cc else 'cc'!r}); install one "
                            f"(e.g. `apt-get install gcc`) or point the CC environment variable at it, "
                            f"or use backend='numpy'")
    return cc


@lru_cache(maxsize=None)
def _compiler_id(cc: tuple[str, ...]) -> str:
    out = subprocess.run([*cc, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@lru_cache(maxsize=None)
def openmp_flags(cc: tuple[str, ...]) -> tuple[str, ...]:
    """``('-fopenmp',)`` when the compiler can build and link OpenMP code, else ``()``."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d, "t.c")
        src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
        r = subprocess.run([*cc, "-fopenmp", str(src), "-o", str(Path(d, "t"))], capture_output=True)
        return ("-fopenmp",) if r.returncode == 0 else ()


def _key(source: Source, cc, flags) -> str:
    h = hashlib.sha256()
    for part in (source.header, source.kernels, " ".join(cc), _compiler_id(tuple(cc)), " ".join(flags), platform.machine(),
                 _cpu_model(), sysconfig.get_config_var("EXT_SUFFIX") or "", str(CACHE_VERSION)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _load(name: str, path: Path):
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


_loaded: dict[str, object] = {}


def build(source: Source, verbose: bool = False):
    """Compile (or fetch from the cache) and load ``source``; returns the cffi module (``.ffi``, ``.lib``)."""
    import cffi

    cc = compiler()
    flags = FLAGS + list(openmp_flags(tuple(cc)))
    key = _key(source, cc, flags)
    if key in _loaded:
        return _loaded[key]
    name = f"_etn_{key}"
    root = cache_dir()
    final = root / key / (name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    if not (final.exists() and _verified(final)):
        work = work_folder(root, key, CompilerError)
        try:
            (work / "etn_model.h").write_text(source.header_file())
            (work / "etn_kernels.c").write_text(source.kernels)
            ffi = cffi.FFI()
            ffi.cdef(source.header)
            ffi.set_source(name, '#include "etn_model.h"')
            with contextlib.redirect_stdout(io.StringIO()):  # cffi announces what it writes
                ffi.emit_c_code(str(work / f"{name}.c"))
            out = work / final.name
            # relative names in the build folder: the module's bytes do not depend on the folder's name, so
            # processes building the same source at once publish identical modules (and digests)
            cmd = [*cc, *flags, "-I.", f"-I{sysconfig.get_paths()['include']}", f"{name}.c", "etn_kernels.c",
                   "-o", final.name, "-lm"]
            if verbose:
                print(" ".join(cmd), file=sys.stderr)
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
            if r.returncode != 0:
                logs = root / "logs"
                logs.mkdir(exist_ok=True)
                log = logs / f"{key}.log"
                log.write_text(" ".join(cmd) + "\n\n" + r.stdout + r.stderr)
                kept = root / "failed" / key
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(work, kept)
                raise CompilerError(f"compiling the kernels of spec {source.spec_hash[:12]} failed; the compiler's "
                                    f"output is in {log} and the sources in {kept}")
            final.parent.mkdir(parents=True, exist_ok=True)
            for f in ("etn_model.h", "etn_kernels.c"):  # kept beside the module for inspection
                os.replace(work / f, final.parent / f)
            publish(out, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    mod = _load(name, final)
    _loaded[key] = mod
    return mod
