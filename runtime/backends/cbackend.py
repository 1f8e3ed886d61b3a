"""Generated C backend: render the schedule, compile (cached), call through cffi.

Same contract as :class:`~etn.backends.reference.NumpyBackend`: ``compute(params, pairs, gradients)``
returns site energies ``e0[s_i] + V_i`` (N,) and per-pair gradients ``∂V_i/∂r_ij`` (Np, 3), in
float64 arrays whatever the kernels' precision.
"""

from __future__ import annotations

import numpy as np

from .build import build
from .codegen import Library, render


class CBackend(Library):
    def __init__(self, sched, dtype: str | None = None):
        self.sched = sched
        self.dtype = dtype or sched.spec.dtype
        self.np_dtype = np.float32 if self.dtype == "float32" else np.float64
        self.module = build(render(sched, self.dtype))
        super().__init__(self.module.ffi, self.module.lib)
        assert self.lib.etn_n_params() == sched.n_params

    def set_num_threads(self, n: int) -> int:
        return self.lib.etn_set_num_threads(n)

    def compute(self, params, pairs, gradients: bool = True):
        N = pairs.n_atoms
        csr = PairsCSR(pairs, self.np_dtype)
        p = np.ascontiguousarray(params, dtype=self.np_dtype)
        energies = np.zeros(N, dtype=self.np_dtype)
        grad = np.empty((len(csr.r), 3), dtype=self.np_dtype)  # etn_compute writes every row
        self.call("etn_compute",
            self.ptr("etn_real *", p), N, self.ptr("int *", csr.species), self.ptr("long long *", csr.first),
            self.ptr("int *", csr.tj), self.ptr("etn_real *", csr.r), self.ptr("etn_real *", energies),
            self.ptr("etn_real *", grad) if gradients else self.ffi.NULL, what=f"etn_compute ({N} atoms)")
        return energies.astype(np.float64), (csr.unsort(grad) if gradients else None)

    def output(self, params, pairs) -> np.ndarray:
        """The network's output per atom (N, 2L + 1) for a tensor-output spec, or the site energies (N, 1)."""
        N, n_out = pairs.n_atoms, self.sched.bonds[-1].size
        csr = PairsCSR(pairs, self.np_dtype)
        p = np.ascontiguousarray(params, dtype=self.np_dtype)
        out = np.zeros(N * n_out, dtype=self.np_dtype)
        self.call("etn_compute",
            self.ptr("etn_real *", p), N, self.ptr("int *", csr.species), self.ptr("long long *", csr.first),
            self.ptr("int *", csr.tj), self.ptr("etn_real *", csr.r), self.ptr("etn_real *", out), self.ffi.NULL,
            what=f"etn_compute ({N} atoms)")
        return out.astype(np.float64).reshape(N, n_out)

    def compute_graded(self, params, pairs, rows: bool = True, active=None):
        """``compute`` with gradients and, from the same pass, each atom's row of extrapolation grades
        (N × etn_grade_row_size: dV_i/dg of the species-specific core's block for its species, :mod:`etn.fitting.grade`) if ``rows``,
        and its grade γ if ``active`` = (M, rank) (:meth:`etn.fitting.grade.ActiveSet.kernel_blocks`).
        Returns (energies, per-pair gradients, rows or None, γ or None)."""
        N = pairs.n_atoms
        csr = PairsCSR(pairs, self.np_dtype)
        p = np.ascontiguousarray(params, dtype=self.np_dtype)
        energies = np.zeros(N, dtype=self.np_dtype)
        grad = np.empty((len(csr.r), 3), dtype=self.np_dtype)
        R = np.empty((max(N, 1), self.lib.etn_grade_row_size()), dtype=self.np_dtype) if rows else None
        if active is not None:
            M = np.ascontiguousarray(active[0], dtype=self.np_dtype)
            rank = np.ascontiguousarray(active[1], dtype=np.int32)
            gamma = np.empty(max(N, 1), dtype=self.np_dtype)
        self.call("etn_compute_graded",
            self.ptr("etn_real *", p), N, self.ptr("int *", csr.species), self.ptr("long long *", csr.first),
            self.ptr("int *", csr.tj), self.ptr("etn_real *", csr.r), self.ptr("etn_real *", energies),
            self.ptr("etn_real *", grad), self.ptr("etn_real *", R) if rows else self.ffi.NULL,
            self.ptr("etn_real *", M) if active is not None else self.ffi.NULL,
            self.ptr("int *", rank) if active is not None else self.ffi.NULL,
            self.ptr("etn_real *", gamma) if active is not None else self.ffi.NULL,
            what=f"etn_compute_graded ({N} atoms)")
        return (energies.astype(np.float64), csr.unsort(grad), R[:N].astype(np.float64) if rows else None,
                gamma[:N].astype(np.float64) if active is not None else None)

    def forces_virial(self, pairs, grad):
        """Forces (N, 3) and W = sym(Σ_pairs ∂V_i/∂r_ij ⊗ r_ij) (3, 3) from per-pair gradients, by the
        library's etn_forces_virial (float64 builds; None for float32, where numpy does it)."""
        if self.dtype != "float64":
            return None
        i, j = (np.ascontiguousarray(a, dtype=np.int32) for a in (pairs.i, pairs.j))
        r, g = (np.ascontiguousarray(a, dtype=np.float64) for a in (pairs.r, grad))
        F, V = np.empty((pairs.n_atoms, 3)), np.empty((3, 3))
        self.lib.etn_forces_virial(pairs.n_atoms, len(i), self.ptr("int *", i), self.ptr("int *", j),
                                   self.ptr("etn_real *", r), self.ptr("etn_real *", g),
                                   self.ptr("etn_real *", F), self.ptr("etn_real *", V))
        return F, -V  # etn_forces_virial gives the virial, -W


class PairsCSR:
    """Pairs grouped by centre atom, as the kernels take them: ``first`` (N+1), neighbour species
    ``tj`` and ``r`` in that order, never empty (one dummy row when there are no pairs, since cffi
    wants a buffer); ``unsort`` puts per-pair results back into the caller's pair order."""

    def __init__(self, pairs, np_dtype):
        N = pairs.n_atoms
        i = pairs.i
        self.n_pairs = len(i)
        self.order = None
        if i.size and np.any(i[1:] < i[:-1]):
            self.order = np.argsort(i, kind="stable")
            i = i[self.order]
        j = pairs.j if self.order is None else pairs.j[self.order]
        self.first = np.searchsorted(i, np.arange(N + 1)).astype(np.int64)
        self.species = np.ascontiguousarray(pairs.species, dtype=np.int32)
        tj = self.species[j] if j.size else np.zeros(1, np.int32)
        self.tj = np.ascontiguousarray(tj, dtype=np.int32)
        r = pairs.r if self.order is None else pairs.r[self.order]
        self.r = np.ascontiguousarray(r if len(r) else np.zeros((1, 3)), dtype=np_dtype)

    def unsort(self, grad) -> np.ndarray:
        g = np.asarray(grad, dtype=np.float64)[:self.n_pairs]
        if self.order is None:
            return g
        back = np.empty_like(g)
        back[self.order] = g
        return back
