"""The CUDA backend on the host, for tests and the GPU check's rehearsal: ``etn.backends.cuda`` gets
numpy for cupy and g++ (with this folder's ``cuda_runtime.h``) for nvcc, so that ``CudaBackend`` and
``CudaDesign`` run the generated CUDA sources' own code, one thread after another."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class HostArrays:
    """numpy standing in for cupy: the CUDA sources compiled for the host take host pointers."""

    asarray = staticmethod(np.ascontiguousarray)
    zeros = staticmethod(np.zeros)
    empty = staticmethod(np.empty)
    asnumpy = staticmethod(np.array)

    class cuda:
        class Device:
            compute_capability = "90"


def host_build(folder: Path):
    """``etn.backends.cuda.build`` for the host: g++ -O0 with this folder's cuda_runtime.h, cached in ``folder``."""
    def build(source, arch, rebuild=False):
        d = Path(folder) / hashlib.sha256((source.header + source.kernels).encode()).hexdigest()[:16]
        lib = d / "lib.so"
        if rebuild or not lib.exists():
            d.mkdir(parents=True, exist_ok=True)
            (d / "etn_cuda.h").write_text(source.header_file())
            (d / "etn_kernels.cu").write_text(source.kernels)
            r = subprocess.run(["g++", "-O0", "-std=c++17", "-shared", "-fPIC", "-x", "c++", "-I", str(HERE),
                                "-I", str(d), str(d / "etn_kernels.cu"), "-o", str(lib)], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"g++ failed on the CUDA source of spec {source.spec_hash[:12]}:\n{r.stderr[-3000:]}")
        return lib
    return build


def emulate(folder: Path, setattr=setattr) -> None:
    """Point ``etn.backends.cuda`` at the host (``setattr``: pytest's ``monkeypatch.setattr`` in tests)."""
    from etn.backends import cuda

    setattr(cuda, "_cupy", lambda: HostArrays)
    setattr(cuda, "build", host_build(folder))
