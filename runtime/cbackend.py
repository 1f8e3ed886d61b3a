"""Generated C backend: render the schedule, compile (cached), call through cffi.

Same contract as :class:`~etn.reference.NumpyBackend`: ``compute(params, pairs, gradients)``
returns site energies ``e0[s_i] + V_i`` (N,) and per-pair gradients ``∂V_i/∂r_ij`` (P, 3), in
float64 arrays whatever the kernels' precision.
"""

from __future__ import annotations

import numpy as np

from .build import build
from .codegen import render


class CBackend:
    def __init__(self, sched, dtype: str | None = None):
        self.sched = sched
        self.dtype = dtype or sched.spec.dtype
        self.np_dtype = np.float32 if self.dtype == "float32" else np.float64
        self.module = build(render(sched, self.dtype))
        self.ffi, self.lib = self.module.ffi, self.module.lib
        assert self.lib.etn_n_params() == sched.n_params

    def _ptr(self, ctype, arr):
        return self.ffi.cast(ctype, self.ffi.from_buffer(arr))

    def set_num_threads(self, n: int) -> int:
        return self.lib.etn_set_num_threads(n)

    def compute(self, params, pairs, gradients: bool = True):
        N = pairs.n_atoms
        i = pairs.i
        order = None
        if i.size and np.any(i[1:] < i[:-1]):
            order = np.argsort(i, kind="stable")
            i = i[order]
        first = np.searchsorted(i, np.arange(N + 1)).astype(np.int64)
        tj = pairs.species[pairs.j if order is None else pairs.j[order]].astype(np.int32)
        r = np.ascontiguousarray(pairs.r if order is None else pairs.r[order], dtype=self.np_dtype)
        p = np.ascontiguousarray(params, dtype=self.np_dtype)
        species = np.ascontiguousarray(pairs.species, dtype=np.int32)
        energies = np.zeros(N, dtype=self.np_dtype)
        grad = np.zeros((max(len(r), 1), 3), dtype=self.np_dtype)  # never an empty buffer for cffi
        tj = tj if tj.size else np.zeros(1, np.int32)
        r_buf = r if r.size else np.zeros((1, 3), self.np_dtype)
        rc = self.lib.etn_compute(
            self._ptr("etn_real *", p), N, self._ptr("int *", species), self._ptr("long long *", first),
            self._ptr("int *", tj), self._ptr("etn_real *", r_buf), self._ptr("etn_real *", energies),
            self._ptr("etn_real *", grad) if gradients else self.ffi.NULL)
        grad = grad[:len(r)]
        if rc != 0:
            raise ValueError("a species index is out of range for this model")
        if gradients and order is not None:
            back = np.empty_like(grad)
            back[order] = grad
            grad = back
        return energies.astype(np.float64), (grad.astype(np.float64) if gradients else None)
