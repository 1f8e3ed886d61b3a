"""Design-matrix rows: the model is linear in each parameter group with the others fixed.

A *group* is what one least-squares step of a fit solves for: ``e0`` (reference energies), ``core{k}``
(all path blocks of core k) or ``core{k}.U`` (the channel factor of core k); the schedule names each
block's group (``Block.group``). For a group with parameters θ, every site energy is
``V_i = Σ_θ θ Env_i[θ]`` (each term of the network passes through core k and U_k exactly once), so

    energy rows   Σ_i Env_i[θ]
    force rows    -∂/∂x Σ_i Env_i[θ]            (3N per configuration)
    virial rows   the same pair sum as the model's virial

``Env_i`` contracts core k's two inputs (bond states h_x, the features or their compression B) and
its right environment ρ_k = ∂V/∂h_k. Force rows need ∂Env_i/∂r_ij; they come from forward-mode
derivatives (one tangent per pair and Cartesian direction) pushed through the bond states that feed
core k and the right environments on the way from core k to the output, with the same CG
contractions as the model itself. This is the numpy reference of the rows: the fitter uses
it, and the generated row kernels are tested against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..generator.spec import FEATURES
from .reference import NumpyBackend

#: Pairs per chunk of tangents (3 per pair): bounds the memory of the force rows of one configuration.
PAIR_CHUNK = 1024


@dataclass(frozen=True)
class Group:
    """A set of parameter blocks that is linear in the model with all other blocks fixed."""

    name: str
    blocks: tuple
    cols: np.ndarray  # flat parameter indices, in block order
    core: int = 0  # the core the blocks belong to (0: e0)
    U: bool = False  # the channel factor U_k of the core, not its path blocks

    @property
    def size(self) -> int:
        return int(self.cols.size)


def groups(sched) -> dict[str, Group]:
    """The groups of a schedule (``Schedule.group_blocks``): ``e0``, and per core ``core{k}.U`` (if
    compressed) and ``core{k}``."""
    out = {}
    for name, blocks in sched.group_blocks().items():
        cols = np.concatenate([np.arange(b.offset, b.offset + b.size) for b in blocks])
        out[name] = Group(name, blocks, cols, blocks[0].core, blocks[0].core > 0 and name.endswith(".U"))
    return out


def default_group(sched) -> str:
    """The group of extrapolation grades (etn.fitting.grade) and of the rows the evaluation kernels write
    beside the forces: the species-specific core (``Spec.species_core``)."""
    return f"core{sched.spec.species_core}"


def species_columns(sched, group) -> list[np.ndarray] | None:
    """For a species-specific core: the columns (within the group) that belong to each species; else None."""
    g = groups(sched)[group]
    if g.U or not sched.cores[g.core - 1].species_specific:
        return None
    S = sched.spec.n_species
    cols, start = [[] for _ in range(S)], 0
    for b in g.blocks:
        per = b.size // S
        for s in range(S):
            cols[s].append(np.arange(start + s * per, start + (s + 1) * per))
        start += b.size
    return [np.concatenate(c) for c in cols]


def segment_sum(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """``out[x] = Σ_{q: index[q] = x} values[q]`` for x < n (sorted reduction, no scatter-add)."""
    out = np.zeros((n,) + values.shape[1:])
    if index.size == 0:
        return out
    order = np.argsort(index, kind="stable")
    sidx = index[order]
    starts = np.searchsorted(sidx, np.arange(n))
    nonempty = np.bincount(sidx, minlength=n) > 0
    out[nonempty] = np.add.reduceat(values[order], starts[nonempty], axis=0)
    return out


class DesignReference:
    """Rows of the linear least-squares problem of each group, in numpy."""

    def __init__(self, sched):
        self.sched = sched
        self.nb = NumpyBackend(sched)
        self.groups = groups(sched)

    # -- contractions shared by the model and its tangents -----------------------------------------
    def _g(self, params, core, p):
        b = self.sched.block(p.param)
        return params[b.offset:b.offset + b.size].reshape(b.shape)

    def _U(self, params, core, l):
        b = self.sched.block(core.compress[l])
        return params[b.offset:b.offset + b.size].reshape(b.shape)

    # The contractions are written as (batched) matrix products: numpy's einsum falls back to slow
    # loops for products that share the batch index n. ``g`` is (r_in, n_c, r_out) or, for a
    # species-specific core, selected per row by ``s``.
    @staticmethod
    def _hcg(cg, h):
        """X[n, i, O, m] = Σ_I h[n, i, I] cg[O, I, m]."""
        O, I, m = cg.shape
        n, ri, _ = h.shape
        return (h.reshape(n * ri, I) @ cg.transpose(1, 0, 2).reshape(I, O * m)).reshape(n, ri, O, m)

    @staticmethod
    def _rhog(rho, g, s):
        """Y[n, O, i, c] = Σ_o ρ[n, o, O] g[i, c, o]."""
        n, ro, O = rho.shape
        ri, nc = g.shape[-3], g.shape[-2]
        rt = rho.transpose(0, 2, 1)
        if s is None:
            return (rt.reshape(n * O, ro) @ g.reshape(ri * nc, ro).T).reshape(n, O, ri, nc)
        return (rt @ g[s].reshape(n, ri * nc, ro).transpose(0, 2, 1)).reshape(n, O, ri, nc)

    @classmethod
    def _fwd(cls, cg, h, B, g, s):
        """Σ CG h B g -> (n, r_out, 2L_out + 1)."""
        n, ri = h.shape[:2]
        O, nc, ro = cg.shape[0], g.shape[-2], g.shape[-1]
        X = cls._hcg(cg, h).reshape(n, ri * O, -1)
        T = (X @ B.transpose(0, 2, 1)).reshape(n, ri, O, nc).transpose(0, 2, 1, 3)  # (n, O, i, c)
        if s is None:
            out = T.reshape(n * O, ri * nc) @ g.reshape(ri * nc, ro)
        else:
            out = T.reshape(n, O, ri * nc) @ g[s].reshape(n, ri * nc, ro)
        return out.reshape(n, O, ro).transpose(0, 2, 1)

    @classmethod
    def _bwd(cls, cg, rho, B, g, s):
        """Σ CG ρ B g -> (n, r_in, 2L_in + 1): the right environment one bond to the left."""
        n, O = rho.shape[0], rho.shape[2]
        ri, nc = g.shape[-3], g.shape[-2]
        I = cg.shape[1]
        Y = cls._rhog(rho, g, s).reshape(n, O * ri, nc)
        Z = (Y @ B).reshape(n, O, ri, -1).transpose(0, 2, 1, 3)  # (n, i, O, m)
        return (Z.reshape(n * ri, -1) @ cg.transpose(0, 2, 1).reshape(-1, I)).reshape(n, ri, I)

    @classmethod
    def _env(cls, cg, rho, h, B):
        """Σ CG ρ h B -> (n, r_in, n_c, r_out): ∂V/∂g of one path."""
        n, ro, O = rho.shape
        ri, I = h.shape[1:]
        m = cg.shape[2]
        T1 = (rho.reshape(n * ro, O) @ cg.reshape(O, I * m)).reshape(n, ro, I, m)
        T2 = h[:, None] @ T1  # (n, ro, ri, m)
        env = T2.reshape(n, ro * ri, m) @ B.transpose(0, 2, 1)  # (n, ro*ri, c)
        return env.reshape(n, ro, ri, -1).transpose(0, 2, 3, 1)

    @classmethod
    def _dB(cls, cg, rho, h, g, s):
        """Σ CG ρ h g -> (n, n_c, 2l + 1): ∂V/∂B of one path."""
        n, O = rho.shape[0], rho.shape[2]
        ri, nc = g.shape[-3], g.shape[-2]
        Y = cls._rhog(rho, g, s).transpose(0, 3, 2, 1).reshape(n, nc, ri * O)  # (n, c, i*O)
        X = cls._hcg(cg, h).reshape(n, ri * O, -1)
        return Y @ X

    def _inputs(self, core, hs, B, A):
        """Core k's two inputs as {L: (n, dim, 2L + 1)}: bond states, or the features (B: compressed)."""
        def one(x, feats):
            return dict(enumerate(feats)) if x == FEATURES else hs[x]
        x, y = core.inputs
        return one(x, A), one(y, B if B is not None else A)

    def _states(self, params, A, species):
        """Bond states h_0..h_n, compressed features per core (None: uncompressed), right environments
        ρ_k = ∂V/∂h_k (a dict over bonds k = 1 … n; a bond's consumer comes after it, so reversed core
        order completes each ρ before it is used)."""
        N = A[0].shape[0]
        cgs = self.nb._cg
        hs, Bs = [{0: np.ones((N, 1, 1))}], []
        for core in self.sched.cores:
            B = [self._U(params, core, l).T @ A[l] for l in range(len(A))] if core.K else None
            Bs.append(B)
            s = species if core.species_specific else None
            hx, by = self._inputs(core, hs, B, A)
            out = {t["L"]: np.zeros((N, t["rank"], 2 * t["L"] + 1)) for t in self.sched.bonds[core.k]["terms"]}
            for p in core.paths:
                out[p.L_out] += self._fwd(cgs[p.param], hx[p.L_in], by[p.l], self._g(params, core, p), s)
            hs.append(out)
        rhos = {len(self.sched.cores): {0: np.ones((N, 1, 1))}}
        for core in reversed(self.sched.cores):
            s = species if core.species_specific else None
            hx, by = self._inputs(core, hs, Bs[core.k - 1], A)
            for src, adj in zip(core.inputs, self._adjoints(core, rhos[core.k], hx, by, params, s)):
                if src != FEATURES and src != 0:
                    rhos[src] = adj
        return hs, Bs, rhos

    def _adjoints(self, core, rho, hx, by, params, s, which=(True, True)):
        """∂/∂(first input) and ∂/∂(second input) of Σ_M ρ[M] h_k[M] through core k (None where not asked)."""
        cgs = self.nb._cg
        dx = {L: np.zeros_like(v) for L, v in hx.items()} if which[0] else None
        dy = {L: np.zeros_like(v) for L, v in by.items()} if which[1] else None
        for p in core.paths:
            g = self._g(params, core, p)
            if dx is not None:
                dx[p.L_in] += self._bwd(cgs[p.param], rho[p.L_out], by[p.l], g, s)
            if dy is not None:
                dy[p.l] += self._dB(cgs[p.param], rho[p.L_out], hx[p.L_in], g, s)
        return dx, dy

    # -- rows --------------------------------------------------------------------------------------
    def _env_rows(self, params, core, group, rho, hx, by, A, s):
        """Rows of ``group`` (n, size) from core k's inputs and right environment, and (U group only)
        ∂V/∂B of core k."""
        cgs = self.nb._cg
        n = A[0].shape[0]
        if group.U:
            dB = self._adjoints(core, rho, hx, by, params, s if core.species_specific else None, (False, True))[1]
            return np.concatenate([(A[l] @ dB[l].transpose(0, 2, 1)).reshape(n, -1) for l in range(len(A))],
                                  axis=1), dB
        S = self.sched.spec.n_species
        cols = []
        for p in core.paths:
            e = self._env(cgs[p.param], rho[p.L_out], hx[p.L_in], by[p.l]).reshape(n, -1)
            if core.species_specific:
                full = np.zeros((n, S, e.shape[1]))
                full[np.arange(n), s] = e
                e = full.reshape(n, -1)
            cols.append(e)
        return np.concatenate(cols, axis=1), None

    def rows(self, params, pairs, group: str | Group, forces: bool = True):
        """Rows of one group for one configuration.

        Returns ``(energies, forces, W)``: per-atom energy rows (N, n), force rows (N, 3, n) and
        ``W`` rows (3, 3, n) with ``W = Σ_pairs ∂V_i/∂r_ij ⊗ r_ij`` symmetrised (stress = W / volume,
        virial = -W). ``rows @ params[group.cols]`` reproduces the model's own values; for ``core``
        and ``U`` groups the energies lack ``e0``.
        """
        params = np.asarray(params, dtype=np.float64)
        group = self.groups[group] if isinstance(group, str) else group
        N, sp = pairs.n_atoms, pairs.species
        n = group.size
        if group.name == "e0":
            E = np.zeros((N, n))
            E[np.arange(N), sp] = 1.0
            return E, np.zeros((N, 3, n)), np.zeros((3, 3, n))
        core = self.sched.cores[group.core - 1]
        A, (Q, dQ, Y, dY, tj) = self.nb.features(pairs)
        hs, Bs, rhos = self._states(params, A, sp)
        E, dB0 = self._env_rows(params, core, group, rhos[core.k], *self._inputs(core, hs, Bs[core.k - 1], A), A, sp)
        F, W = np.zeros((N, 3, n)), np.zeros((3, 3, n))
        if not forces:
            return E, F, W
        for a in range(0, len(pairs.i), PAIR_CHUNK):
            q = slice(a, a + PAIR_CHUNK)
            G = self._pair_rows(params, core, group, pairs.i[q], tj[q], pairs.r[q],
                                Q[q], dQ[q], Y[q], dY[q], sp, A, hs, Bs, rhos, dB0)  # (P, 3, n)
            F += segment_sum(G, pairs.i[q], N) - segment_sum(G, pairs.j[q], N)
            W += np.einsum("qap,qb->abp", G, pairs.r[q])
        W = 0.5 * (W + W.transpose(1, 0, 2))
        return E, F, W

    def batch(self, params, pairs_list, group, gradients: bool = True):
        """Rows of many configurations: energy rows (C, n) summed over atoms, force rows (ΣN, 3, n)
        and W rows (C, 3, 3, n); the contract of the generated kernels (:class:`etn.backends.cdesign.CDesign`)."""
        out = [self.rows(params, p, group, forces=gradients) for p in pairs_list]
        return (np.stack([o[0].sum(axis=0) for o in out]), np.concatenate([o[1] for o in out]),
                np.stack([o[2] for o in out]))

    def site_rows(self, params, pairs_list, group) -> np.ndarray:
        """Per-atom energy rows (ΣN, n) of many configurations (no e0); as :meth:`etn.backends.cdesign.CDesign.site_rows`."""
        return np.concatenate([self.rows(params, p, group, forces=False)[0] for p in pairs_list])

    def _pair_rows(self, params, core, group, pi, tj, r, Q, dQ, Y, dY, sp, A, hs, Bs, rhos, dB0):
        """``∂Env_i/∂r_ij`` (P, 3, n) by forward-mode tangents, one per pair and direction: tangents dh of
        every bond off core k's way to the output (those feed core k or its environment), then dρ down
        that way from the output to core k."""
        cgs = self.nb._cg
        spec = self.sched.spec
        Nr, P = spec.n_radial, len(pi)
        u = r / np.linalg.norm(r, axis=1)[:, None]
        # ∇_a [Q_n(r) Y_lm(r̂)] -> (P, 3, N_r, n_sh), tangent t = 3 q + a
        dphi = (dQ[:, None, :, None] * u[:, :, None, None] * Y[:, None, None, :]
                + Q[:, None, :, None] * dY.transpose(0, 2, 1)[:, :, None, :])
        ti = np.repeat(pi, 3)  # atom of each tangent
        st = sp[ti]
        T = 3 * P
        dA = []
        for l in range(spec.l_max + 1):
            x = np.zeros((T, spec.channels(l), 2 * l + 1))
            ch = (tj[:, None] * Nr + np.arange(Nr)[None, :])  # (P, N_r)
            x[np.arange(T)[:, None], np.repeat(ch, 3, axis=0)] = dphi[:, :, :, l * l:(l + 1) ** 2].reshape(T, Nr, 2 * l + 1)
            dA.append(x)
        At = [a[ti] for a in A]
        hs_t = [{L: v[ti] for L, v in h.items()} for h in hs]
        Bs_t = [None if B is None else [b[ti] for b in B] for B in Bs]

        def tangent_inputs(c, dh):  # tangents of core c's two inputs (None: constant)
            dB = [self._U(params, c, l).T @ dA[l] for l in range(len(dA))] if c.K else None
            one = lambda v, feats: dict(enumerate(feats)) if v == FEATURES else dh.get(v)  # noqa: E731
            return one(c.inputs[0], dA), one(c.inputs[1], dB if dB is not None else dA)

        # the way from core k to the output: core k, its consumer, …, the last core
        consumer = {v: c.k for c in self.sched.cores for v in c.inputs if v != FEATURES and v != 0}
        way = [core.k]
        while way[-1] in consumer:
            way.append(consumer[way[-1]])
        # dh of every bond off the way: bilinear, d(x ∘ y) = dx ∘ y + x ∘ dy
        dh = {}
        for c in self.sched.cores:
            if c.k in way:
                continue
            s = st if c.species_specific else None
            hx, by = self._inputs(c, hs_t, Bs_t[c.k - 1], At)
            dx, dy = tangent_inputs(c, dh)
            out = {t["L"]: np.zeros((T, t["rank"], 2 * t["L"] + 1)) for t in self.sched.bonds[c.k]["terms"]}
            for p in c.paths:
                g = self._g(params, c, p)
                if dy is not None:
                    out[p.L_out] += self._fwd(cgs[p.param], hx[p.L_in], dy[p.l], g, s)
                if dx is not None:
                    out[p.L_out] += self._fwd(cgs[p.param], dx[p.L_in], by[p.l], g, s)
            dh[c.k] = out
        # dρ down the way: ρ_j = adjoint of core c (consumer of j) in its input j, given ρ_c and the other input
        drho = None
        for c_k, j in zip(way[:0:-1], way[-2::-1]):
            c = self.sched.cores[c_k - 1]
            s = st if c.species_specific else None
            hx, by = self._inputs(c, hs_t, Bs_t[c.k - 1], At)
            dx, dy = tangent_inputs(c, dh)
            rho_c = {L: v[ti] for L, v in rhos[c.k].items()}
            first = c.inputs[0] == j  # the way enters core c through its first input, else its second
            which = (first, not first)
            pick = lambda pair: pair[0] if first else pair[1]  # noqa: E731
            out = None
            if first and dy is not None:  # ρ_c through the tangent of the other input
                out = pick(self._adjoints(c, rho_c, hx, dy, params, s, which))
            elif not first and dx is not None:
                out = pick(self._adjoints(c, rho_c, dx, by, params, s, which))
            if drho is not None:  # dρ_c through the other input
                more = pick(self._adjoints(c, drho, hx, by, params, s, which))
                out = more if out is None else {L: out[L] + more[L] for L in out}
            drho = out
        rho = {L: v[ti] for L, v in rhos[core.k].items()}
        hx, by = self._inputs(core, hs_t, Bs_t[core.k - 1], At)
        dx, dy = tangent_inputs(core, dh)
        s = st if core.species_specific else None
        if group.U:
            # Env_U = Σ_m dB[K,l,m] A[c,l,m]: d(Env_U) = (d dB) A + dB dA, d dB from dρ and the first input's tangent
            ddB = [np.zeros_like(b) for b in by.values()]
            for rho_, hx_ in ((drho, hx), (rho, dx)):
                if rho_ is not None and hx_ is not None:
                    d = self._adjoints(core, rho_, hx_, by, params, s, (False, True))[1]
                    for l in d:
                        ddB[l] += d[l]
            dB = [b[ti] for b in dB0.values()]
            G = np.concatenate([(At[l] @ ddB[l].transpose(0, 2, 1) + dA[l] @ dB[l].transpose(0, 2, 1)).reshape(T, -1)
                                for l in range(len(A))], axis=1)
        else:
            G = np.zeros((T, group.size))
            for rho_, hx_, by_ in ((rho, hx, dy), (rho, dx, by), (drho, hx, by)):
                if rho_ is not None and hx_ is not None and by_ is not None:
                    G += self._env_rows(params, core, group, rho_, hx_, by_, At, st)[0]
        return G.reshape(P, 3, -1)
