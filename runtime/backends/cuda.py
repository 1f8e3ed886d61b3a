"""CUDA backend: the schedule rendered to CUDA (``templates/kernels.cu.j2``), built by nvcc into a
shared library (cached like the C build, keyed also by the GPU architecture), loaded by cffi in ABI
mode, and called on cupy arrays by device pointer.

Same contract as the other backends: ``compute(params, pairs, gradients)`` returns site energies
(N,) and per-pair gradients (Np, 3) as float64 numpy arrays.

Needs an NVIDIA GPU, cupy (``pip install cupy-cuda13x``, the ``cuda`` extra) and nvcc (or
``$NVCC``); each missing piece raises :class:`CudaError` saying what to do.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .build import _verified, cache_dir, publish, work_folder
from .codegen import Library, Source, render_cuda
from ..generator.errors import EtnError

CUDA_CACHE_VERSION = 1
NVCC_FLAGS = ["-O3", "-shared", "-Xcompiler", "-fPIC", "-std=c++17"]


class CudaError(EtnError, RuntimeError):
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


def build(source: Source, arch: str, rebuild: bool = False) -> Path:
    """Compile (or fetch from the cache) the CUDA library of ``source`` for compute capability ``arch``;
    ``rebuild``: compile even when the cache holds it."""
    cmd = nvcc()
    h = hashlib.sha256()
    for part in (source.header, source.kernels, _nvcc_id(tuple(cmd)), " ".join(NVCC_FLAGS), arch,
                 str(CUDA_CACHE_VERSION)):
        h.update(part.encode() + b"\0")
    key = "cuda-" + h.hexdigest()[:24]
    root = cache_dir()
    final = root / key / "libetn_cuda.so"
    if final.exists() and _verified(final) and not rebuild:
        return final
    work = work_folder(root, key, CudaError)
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
        publish(work / final.name, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def load(ffi, source: Source, arch: str):
    """``ffi.dlopen`` of the built library; a cached library that does not load (built on a machine with
    other system libraries, e.g. carried to a GPU machine) is built again here, once."""
    try:
        return ffi.dlopen(str(build(source, arch)))
    except OSError:
        path = build(source, arch, rebuild=True)
    try:
        return ffi.dlopen(str(path))
    except OSError as e:
        raise CudaError(f"the CUDA library built here does not load ({e}); check the CUDA driver and "
                        f"toolkit, or use backend='c'") from None


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


class CudaBackend(Library):
    error_string, error = "etn_cuda_error_string", CudaError

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
        self.lib = load(self.ffi, source, self.arch)
        assert self.lib.etn_cuda_n_params() == sched.n_params
        self.n_fold = self.lib.etn_cuda_n_fold()

    def prepare(self, params, pairs, gradients: bool = True, rows: bool = False, active=None) -> Launch:
        """Inputs, outputs and the folded blocks' room on the GPU, and the launch of ``etn_cuda_compute`` on
        them (``run`` it as often as wanted: the speed benchmark times it without the transfers); with
        ``rows`` or ``active``, of ``etn_cuda_compute_graded`` (see :meth:`compute_graded`)."""
        from .cbackend import PairsCSR

        cp = self.cp
        N = pairs.n_atoms
        csr = PairsCSR(pairs, self.np_dtype)
        n_species = self.sched.spec.n_species
        if (N and (csr.species.min() < 0 or csr.species.max() >= n_species)) or \
                (csr.n_pairs and (csr.tj.min() < 0 or csr.tj.max() >= n_species)):
            raise ValueError("a species index is out of range for this model")
        graded = rows or active is not None
        d = {k: cp.asarray(v) for k, v in dict(params=np.ascontiguousarray(params, dtype=self.np_dtype),
                                               species=csr.species if N else np.zeros(1, np.int32),
                                               first=csr.first, tj=csr.tj, r=csr.r).items()}
        d["energies"] = cp.zeros(max(N, 1), dtype=self.np_dtype)
        d["grad"] = cp.zeros((len(csr.r), 3), dtype=self.np_dtype) if gradients or graded else None
        d["Pf"] = cp.empty(self.n_fold, dtype=self.np_dtype) if self.n_fold else None
        p = self.ptr
        args = (p("etn_real *", d["params"]), N, p("int *", d["species"]), p("long long *", d["first"]),
                p("int *", d["tj"]), p("etn_real *", d["r"]), p("etn_real *", d["energies"]), p("etn_real *", d["grad"]),
                p("etn_real *", d["Pf"]))
        name = "etn_cuda_compute"
        if graded:
            name = "etn_cuda_compute_graded"
            size = self.lib.etn_cuda_grade_row_size()
            d["rows"] = cp.empty((max(N, 1), size), dtype=self.np_dtype) if rows else None
            rank = np.ascontiguousarray(active[1], dtype=np.int32) if active is not None else None
            d["M"] = cp.asarray(np.ascontiguousarray(active[0], dtype=self.np_dtype)) if active is not None else None
            d["rank"], d["rank_host"] = (cp.asarray(rank), rank) if active is not None else (None, None)
            d["gamma"] = cp.empty(max(N, 1), dtype=self.np_dtype) if active is not None else None
            args += (p("etn_real *", d["rows"]), p("etn_real *", d["M"]), p("int *", d["rank"]),
                     p("int *", d["rank_host"]), p("etn_real *", d["gamma"]))
        return Launch(lambda: self.call(name, *args, what=f"the CUDA kernel ({N} atoms)"), d, csr, N)

    def compute(self, params, pairs, gradients: bool = True):
        launch = self.prepare(params, pairs, gradients)
        launch.run()
        return launch.result(self.cp)

    def compute_graded(self, params, pairs, rows: bool = True, active=None):
        """As :meth:`etn.backends.cbackend.CBackend.compute_graded`, on the GPU: energies, per-pair
        gradients, each atom's row of extrapolation grades (if ``rows``) and its grade γ (if ``active``
        = (M, rank)), from one pass of the kernels."""
        launch = self.prepare(params, pairs, True, rows, active)
        launch.run()
        e, grad = launch.result(self.cp)
        R, gamma = (launch.arrays[k] for k in ("rows", "gamma"))
        N = launch.n_atoms
        return (e, grad, self.cp.asnumpy(R)[:N].astype(np.float64) if R is not None else None,
                self.cp.asnumpy(gamma)[:N].astype(np.float64) if gamma is not None else None)


@dataclass
class Launch:
    """One prepared ``etn_cuda_compute``: ``run()`` launches it; ``result`` fetches energies and gradients."""

    run: Callable[[], None]
    arrays: dict  # on the device, kept alive as long as the launch
    csr: object
    n_atoms: int

    def result(self, cp):
        e = cp.asnumpy(self.arrays["energies"])[:self.n_atoms].astype(np.float64)
        grad = self.arrays["grad"]
        return e, (self.csr.unsort(cp.asnumpy(grad)) if grad is not None else None)


class CudaDesign(Library):
    error_string, error = "etn_cuda_design_error_string", CudaError

    """The design rows of :class:`etn.backends.cdesign.CDesign` computed on the GPU (``templates/design.cu.j2``);
    inputs go up and the rows come back as numpy arrays, for the fitter's normal equations."""

    def __init__(self, sched):
        from .codegen import render_design_cuda
        from .design import groups

        self.cp = _cupy()
        self.sched = sched
        arch = str(self.cp.cuda.Device().compute_capability)
        source = render_design_cuda(sched)
        import cffi

        self.ffi = cffi.FFI()
        self.ffi.cdef(source.header)
        self.lib = load(self.ffi, source, arch)
        self.group_ids = {name: k for k, name in enumerate(g for g in groups(sched) if g != "e0")}

    def batch(self, params, pairs_list, group, gradients: bool = True):
        from .cdesign import Batch

        cp = self.cp
        g = self.group_ids[group if isinstance(group, str) else group.name]
        n = self.lib.etn_cuda_design_group_size(g)
        b = Batch.of(pairs_list)
        S = self.sched.spec.n_species
        if (b.n_atoms and (b.species.min() < 0 or b.species.max() >= S)) or b.tj.min() < 0 or b.tj.max() >= S:
            raise ValueError("a species index is out of range for this model")
        atom_config = np.repeat(np.arange(b.n_configs, dtype=np.int32), np.diff(b.config_first)).astype(np.int32)
        d = {k: cp.asarray(v) for k, v in dict(
            params=np.ascontiguousarray(params, dtype=np.float64), atom_config=atom_config if b.n_atoms else np.zeros(1, np.int32),
            config_first=b.config_first, species=b.species, first=b.first, tj=b.tj, nb=b.nb, r=b.r).items()}
        E = cp.empty((max(b.n_configs, 1), n))
        F = cp.empty((max(b.n_atoms, 1) if gradients else 1, 3, n))
        W = cp.empty((max(b.n_configs, 1), 3, 3, n))
        scratch = cp.empty((max(b.n_atoms, 1), n))
        p = self.ptr
        self.call("etn_cuda_design_rows",
            g, p("double *", d["params"]), b.n_configs, b.n_atoms, p("int *", d["atom_config"]),
            p("long long *", d["config_first"]), p("int *", d["species"]), p("long long *", d["first"]),
            p("int *", d["tj"]), p("long long *", d["nb"]), p("double *", d["r"]), int(gradients),
            p("double *", E), p("double *", F), p("double *", W), p("double *", scratch), what="the CUDA row kernels")
        F = cp.asnumpy(F)[:b.n_atoms] if gradients else np.zeros((b.n_atoms, 3, n))
        return cp.asnumpy(E)[:b.n_configs], F, cp.asnumpy(W)[:b.n_configs]
