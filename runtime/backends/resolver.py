"""One place that turns a backend name into a backend, for the evaluation and for the design rows, and
one thread setting for all of them.

Evaluation backends: ``"c"`` (generated C in the spec's precision), ``"c-float64"``, ``"c-float32"``,
``"cuda"``, ``"cuda-float64"``, ``"cuda-float32"``, ``"auto"`` (CUDA when a GPU, cupy and nvcc are
present, else C) and ``"numpy"`` (the reference). Design rows are float64: ``"numpy"``, the C kernels
(any ``c*`` name) or the CUDA ones (any ``cuda*`` name; ``auto`` as above).

``set_threads(n)`` caps the OpenMP threads of every C library (loaded or to come) and BLAS at ``n``;
``None`` restores all cores.
"""

from __future__ import annotations

import os
import weakref
from functools import lru_cache

EVALUATION = ("c", "c-float64", "c-float32", "cuda", "cuda-float64", "cuda-float32", "auto", "numpy")

_threads: int | None = None
_loaded: weakref.WeakSet = weakref.WeakSet()  # backends with set_num_threads, to apply a new setting to


def set_threads(n: int | None) -> None:
    """Threads of the C libraries (OpenMP) and of BLAS (threadpoolctl): ``n``, or all cores for None."""
    global _threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be an integer >= 1 or None (all cores), not {n!r}")
    _threads = n
    every = n or os.cpu_count() or 1  # None: back to all cores (a limit of None would keep the last one)
    for backend in list(_loaded):
        backend.set_num_threads(every)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(every)
    except ImportError:
        pass


def threads() -> int | None:
    """The thread setting in effect (None: all cores)."""
    return _threads


def _threaded(backend):
    if hasattr(backend, "set_num_threads"):
        _loaded.add(backend)
        if _threads:
            backend.set_num_threads(_threads)
    return backend


def _auto(name: str) -> str:
    if name != "auto":
        return name
    from .cuda import available

    return "cuda" if available() else "c"


def evaluation(sched, name: str = "c"):
    """The backend ``name`` of a schedule: an object with ``compute(params, pairs, gradients)``."""
    if name not in EVALUATION:
        raise ValueError(f"unknown backend {name!r}; available: 'c' (generated C, the default), "
                         f"'c-float32', 'c-float64', 'cuda', 'cuda-float32', 'cuda-float64', 'auto' "
                         f"(CUDA when a GPU, cupy and nvcc are present, else C), 'numpy' (reference)")
    name = _auto(name)
    if name == "numpy":
        from .reference import NumpyBackend

        return NumpyBackend(sched)
    if name.startswith("cuda"):
        from .cuda import CudaBackend

        return _threaded(CudaBackend(sched, None if name == "cuda" else name[5:]))
    from .cbackend import CBackend

    return _threaded(CBackend(sched, None if name == "c" else name[2:]))


def design(sched, name: str = "c"):
    """The design rows of a schedule with backend ``name`` (one object per spec and kind, kept)."""
    if name not in EVALUATION:
        raise ValueError(f"unknown backend {name!r} for design rows; available: {', '.join(EVALUATION)}")
    name = _auto(name)
    return _threaded(_design(sched.spec, "numpy" if name == "numpy" else "cuda" if name.startswith("cuda") else "c"))


@lru_cache(maxsize=8)
def _design(spec, kind: str):
    from ..generator import cached_schedule

    if kind == "numpy":
        from .design import DesignReference

        return DesignReference(cached_schedule(spec))
    if kind == "cuda":
        from .cuda import CudaDesign

        return CudaDesign(cached_schedule(spec))
    from .cdesign import CDesign

    return CDesign(cached_schedule(spec))
