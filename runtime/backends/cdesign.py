"""Generated C design-matrix rows (``templates/design.c.j2``), for fitting.

``CDesign(sched).batch(params, pairs, group)`` gives the same rows as
:meth:`etn.backends.design.DesignReference.batch`, for many configurations in one call (OpenMP over
configurations): energy rows ``E`` (C, n), force rows ``F`` (ΣN, 3, n) and ``W`` rows (C, 3, 3, n).
``etn.backends.cuda.CudaDesign`` is the same on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .build import build
from .codegen import Library, render_design


@dataclass
class Batch:
    """Pairs of many configurations as the row kernels take them: atoms concatenated
    (``config_first``), pairs grouped by centre atom (``first``, a global index), the neighbour's
    species ``tj`` and index within its configuration ``nb``, and ``r``; never empty (cffi)."""

    n_configs: int
    n_atoms: int
    config_first: np.ndarray
    species: np.ndarray
    first: np.ndarray
    tj: np.ndarray
    nb: np.ndarray
    r: np.ndarray

    @classmethod
    def of(cls, pairs_list) -> Batch:
        counts = np.array([p.n_atoms for p in pairs_list], dtype=np.int64)
        species, first, tj, nb, r = [np.zeros(0, np.int32)], [np.zeros(1, np.int64)], [], [], []
        n_pairs = 0
        for p in pairs_list:
            order = np.argsort(p.i, kind="stable")
            i, j = p.i[order], p.j[order]
            sp = np.asarray(p.species, dtype=np.int32)
            species.append(sp)
            first.append(n_pairs + np.searchsorted(i, np.arange(1, p.n_atoms + 1)).astype(np.int64))
            tj.append(sp[j])
            nb.append(j.astype(np.int64))
            r.append(p.r[order])
            n_pairs += len(i)
        species = np.concatenate(species)
        return cls(len(pairs_list), int(counts.sum()), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                   np.ascontiguousarray(species if len(species) else np.zeros(1), dtype=np.int32),
                   np.ascontiguousarray(np.concatenate(first), dtype=np.int64),
                   np.ascontiguousarray(np.concatenate(tj + [np.zeros(1)]), dtype=np.int32),
                   np.ascontiguousarray(np.concatenate(nb + [np.zeros(1)]), dtype=np.int64),
                   np.ascontiguousarray(np.concatenate(r + [np.zeros((1, 3))]), dtype=np.float64))


class CDesign(Library):
    def __init__(self, sched):
        self.sched = sched
        self.module = build(render_design(sched))
        super().__init__(self.module.ffi, self.module.lib)
        self.group_ids = {self.ffi.string(self.lib.etn_design_group_name(g)).decode(): g
                          for g in range(self.lib.etn_design_n_groups())}

    def set_num_threads(self, n: int) -> int:
        return self.lib.etn_design_set_num_threads(n)

    def batch(self, params, pairs_list, group, gradients: bool = True):
        g = self.group_ids[group if isinstance(group, str) else group.name]
        n = self.lib.etn_design_group_size(g)
        b = Batch.of(pairs_list)
        E = np.empty((b.n_configs, n))
        F = np.zeros((b.n_atoms if gradients else 1, 3, n))
        W = np.empty((b.n_configs, 3, 3, n))
        params = np.ascontiguousarray(params, dtype=np.float64)
        self.call("etn_design_rows",
            g, self.ptr("double *", params), b.n_configs, self.ptr("long long *", b.config_first),
            self.ptr("int *", b.species), self.ptr("long long *", b.first), self.ptr("int *", b.tj),
            self.ptr("long long *", b.nb), self.ptr("double *", b.r), int(gradients),
            self.ptr("double *", E), self.ptr("double *", F), self.ptr("double *", W), what="etn_design_rows")
        return E, (F if gradients else np.zeros((b.n_atoms, 3, n))), W

    def site_rows(self, params, pairs_list, group) -> np.ndarray:
        """Per-atom energy rows (ΣN, n) (no e0), as :meth:`etn.backends.design.DesignReference.site_rows`."""
        g = self.group_ids[group if isinstance(group, str) else group.name]
        n = self.lib.etn_design_group_size(g)
        b = Batch.of(pairs_list)
        E = np.empty((max(b.n_atoms, 1), n))
        params = np.ascontiguousarray(params, dtype=np.float64)
        self.call("etn_design_site_rows",
            g, self.ptr("double *", params), b.n_atoms, self.ptr("int *", b.species),
            self.ptr("long long *", b.first), self.ptr("int *", b.tj), self.ptr("double *", b.r),
            self.ptr("double *", E), what="etn_design_site_rows")
        return E[:b.n_atoms]
