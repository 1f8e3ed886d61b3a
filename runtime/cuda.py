"""CUDA backend: the schedule rendered to CUDA (``templates/kernels.cu.j2``), built by nvcc into a
shared library (cached like the C build, keyed also by the GPU architecture), loaded by cffi in ABI
mode, and called on cupy arrays by device pointer.

Same contract as the other backends: ``compute(params, pairs, gradients)`` returns site energies
(N,) and per-pair gradients (P, 3) as float64 numpy arrays.

Needs an NVIDIA GPU, cupy (``pip install cupy-cuda13x``, the ``cuda`` extra) and nvcc (or
``$NVCC``); each missing piece raises :class:`CudaError` saying what to do.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from .build import cache_dir
from .codegen import Source, render_cuda

CUDA_CACHE_VERSION = 1
NVCC_FLAGS = ["-O3", "-shared", "-Xcompiler", "-fPIC", "-std=c++17"]


class CudaError(RuntimeError):
    """No GPU, no cupy, no nvcc, a failed build or a failed launch; the message says what to do."""


def nvcc() -> list[str]:
    """The nvcc command: ``$NVCC`` if set, else ``nvcc`` on PATH, else /usr/local/cuda/bin/nvcc."""
    cmd = shlex.split(os.environ.get("NVCC", ""))
    if cmd:
        if shutil.which(cmd[0]):
            return cmd
        raise CudaError(f"NVCC={cmd[0]} was not found; point NVCC at the CUDA compiler, or use backend='c'")
    found = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if found:
        return [found]
    raise CudaError("nvcc (the CUDA compiler) was not found; install the CUDA toolkit, put nvcc on PATH or point "
                    "the NVCC environment variable at it, or use backend='c'")


@lru_cache(maxsize=None)
def _nvcc_id(cmd: tuple[str, ...]) -> str:
    return subprocess.run([*cmd, "--version"], capture_output=True, text=True).stdout.strip()


def gencode(archs) -> list[str]:
    """nvcc flags building real code for each compute capability in ``archs`` (e.g. ``["90", "80"]``)."""
    out = []
    for a in archs:
        out += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    return out


def compile_source(source: Source, out: Path, archs, extra=()) -> subprocess.CompletedProcess:
    """Write ``source`` beside ``out`` and run nvcc; returns the finished process (no raising)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / "etn_cuda.h").write_text(source.header_file())
    cu = out.parent / "etn_kernels.cu"
    cu.write_text(source.kernels)
    cmd = [*nvcc(), *NVCC_FLAGS, *gencode(archs), *extra, str(cu), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    r.args = cmd
    return r


def build(source: Source, arch: str) -> Path:
    """Compile (or fetch from the cache) the CUDA library of ``source`` for compute capability ``arch``."""
    cmd = nvcc()
    h = hashlib.sha256()
    for part in (source.header, source.kernels, _nvcc_id(tuple(cmd)), " ".join(NVCC_FLAGS), arch,
                 str(CUDA_CACHE_VERSION)):
        h.update(part.encode() + b"\0")
    key = "cuda-" + h.hexdigest()[:24]
    root = cache_dir()
    final = root / key / "libetn_cuda.so"
    if final.exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=root))
    try:
        r = compile_source(source, work / final.name, [arch])
        if r.returncode != 0:
            logs = root / "logs"
            logs.mkdir(exist_ok=True)
            log = logs / f"{key}.log"
            log.write_text(" ".join(r.args) + "\n\n" + r.stdout + r.stderr)
            raise CudaError(f"nvcc failed on the CUDA kernels of spec {source.spec_hash[:12]}; its output is in {log}")
        final.parent.mkdir(parents=True, exist_ok=True)
        for f in ("etn_cuda.h", "etn_kernels.cu"):
            os.replace(work / f, final.parent / f)
        os.replace(work / final.name, final)  # atomic publish
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _cupy():
    try:
        import cupy
    except ImportError:
        raise CudaError("backend 'cuda' needs cupy: pip install cupy-cuda13x (or pip install 'etn[cuda]'); "
                        "or use backend='c'") from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, or the driver sees no device
        raise CudaError(f"no usable NVIDIA GPU ({e}); use backend='c'") from None
    if n == 0:
        raise CudaError("no NVIDIA GPU is visible (CUDA_VISIBLE_DEVICES?); use backend='c'")
    return cupy


def available() -> bool:
    """True when a GPU, cupy and nvcc are all present (what ``backend='auto'`` checks)."""
    try:
        _cupy()
        nvcc()
        return True
    except CudaError:
        return False


class CudaBackend:
    def __init__(self, sched, dtype: str | None = None):
        self.cp = _cupy()
        self.sched = sched
        self.dtype = dtype or sched.spec.dtype
        self.np_dtype = np.float32 if self.dtype == "float32" else np.float64
        self.arch = str(self.cp.cuda.Device().compute_capability)  # e.g. "90"
        source = render_cuda(sched, self.dtype)
        import cffi

        self.ffi = cffi.FFI()
        self.ffi.cdef(source.header)
        self.lib = self.ffi.dlopen(str(build(source, self.arch)))
        assert self.lib.etn_cuda_n_params() == sched.n_params

    def _ptr(self, ctype, arr):
        return self.ffi.cast(ctype, arr.data.ptr)

    def compute(self, params, pairs, gradients: bool = True):
        from .cbackend import PairsCSR

        cp = self.cp
        N = pairs.n_atoms
        csr = PairsCSR(pairs, self.np_dtype)
        n_species = self.sched.spec.n_species
        if (N and (csr.species.min() < 0 or csr.species.max() >= n_species)) or \
                (csr.n_pairs and (csr.tj.min() < 0 or csr.tj.max() >= n_species)):
            raise ValueError("a species index is out of range for this model")
        d = {k: cp.asarray(v) for k, v in dict(params=np.ascontiguousarray(params, dtype=self.np_dtype),
                                               species=csr.species if N else np.zeros(1, np.int32),
                                               first=csr.first, tj=csr.tj, r=csr.r).items()}
        energies = cp.zeros(max(N, 1), dtype=self.np_dtype)
        grad = cp.zeros((len(csr.r), 3), dtype=self.np_dtype)
        rc = self.lib.etn_cuda_compute(
            self._ptr("etn_real *", d["params"]), N, self._ptr("int *", d["species"]),
            self._ptr("long long *", d["first"]), self._ptr("int *", d["tj"]), self._ptr("etn_real *", d["r"]),
            self._ptr("etn_real *", energies), self._ptr("etn_real *", grad) if gradients else self.ffi.NULL)
        if rc != 0:
            raise CudaError(f"the CUDA kernel failed: {self.ffi.string(self.lib.etn_cuda_error_string(rc)).decode()}")
        e = cp.asnumpy(energies)[:N].astype(np.float64)
        return e, (csr.unsort(cp.asnumpy(grad)) if gradients else None)
