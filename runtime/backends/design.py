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
from .plan import plan
from .reference import NumpyBackend, adjoint_weights

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
        k = blocks[0].core
        out[name] = Group(name, blocks, cols, k, k > 0 and blocks[0].name in sched.core(k).compress)
    return out


def default_group(sched) -> str:
    """The group of extrapolation grades (etn.fitting.grade) and of the rows the evaluation kernels write
    beside the forces: the species-specific core (``Spec.species_core``)."""
    return f"core{sched.spec.species_core}"


def species_columns(sched, group) -> list[np.ndarray] | None:
    """For a species-specific core: the columns (within the group) that belong to each species; else None."""
    g = groups(sched)[group]
    if g.U or not sched.core(g.core).species_specific:
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
        self.engine = NumpyBackend(plan(sched, "design", "numpy"))
        self.groups = groups(sched)

    def _states(self, params, A, species):
        """Bond states, compressed features per core and right environments: the reference's sweeps."""
        hs, Bs = self.engine.forward(params, A, species)
        rhos, _ = self.engine.backward(params, A, species, hs, Bs, features=False)
        return hs, Bs, rhos

    # -- rows --------------------------------------------------------------------------------------
    def _env_rows(self, params, core, group, rho, hx, by, A, s):
        """Rows of ``group`` (n, size) from core k's inputs and right environment, and (U group only)
        ∂V/∂B of core k."""
        n = A[0].shape[0]
        if group.U:
            dB = self.engine.core_adjoints(params, core, rho, hx, by, s, (False, True))[1]
            return np.concatenate([(A[l] @ dB[l].transpose(0, 2, 1)).reshape(n, -1) for l in range(len(A))],
                                  axis=1), dB
        S = self.sched.spec.n_species
        cols = []
        for p in core.paths:
            e = adjoint_weights(self.engine.cg[p.param], rho[p.L_out], hx[p.L_in], by[p.l]).reshape(n, -1)
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
        core = self.engine.plan.core(group.core)
        A, (Q, dQ, Y, dY, tj) = self.engine.features(pairs)
        hs, Bs, rhos = self._states(params, A, sp)
        E, dB0 = self._env_rows(params, core, group, rhos[core.k], *self.engine.inputs(core, hs, Bs[core.k], A), A, sp)
        F, W = np.zeros((N, 3, n)), np.zeros((3, 3, n))
        if not forces:
            return E, F, W
        for a in range(0, len(pairs.i), PAIR_CHUNK):
            q = slice(a, a + PAIR_CHUNK)
            G = self._pair_rows(params, core, group, pairs.i[q], tj[q], pairs.r[q],
                                Q[q], dQ[q], Y[q], dY[q], sp, A, hs, Bs, rhos, dB0)  # (Np, 3, n)
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
        """``∂Env_i/∂r_ij`` (Np, 3, n) by forward-mode tangents, one per pair and direction: tangents dh of
        every bond off core k's way to the output (those feed core k or its environment), then dρ down
        that way from the output to core k."""
        engine, spec = self.engine, self.sched.spec
        Nr, Np = spec.n_radial, len(pi)
        u = r / np.linalg.norm(r, axis=1)[:, None]
        # ∇_a [Q_n(r) Y_lm(r̂)] -> (Np, 3, N_r, n_sh), tangent t = 3 q + a
        dphi = (dQ[:, None, :, None] * u[:, :, None, None] * Y[:, None, None, :]
                + Q[:, None, :, None] * dY.transpose(0, 2, 1)[:, :, None, :])
        ti = np.repeat(pi, 3)  # atom of each tangent
        st = sp[ti]
        T = 3 * Np
        dA = []
        for l in range(spec.l_max + 1):
            x = np.zeros((T, spec.channels(l), 2 * l + 1))
            ch = (tj[:, None] * Nr + np.arange(Nr)[None, :])  # (Np, N_r)
            x[np.arange(T)[:, None], np.repeat(ch, 3, axis=0)] = dphi[:, :, :, l * l:(l + 1) ** 2].reshape(T, Nr, 2 * l + 1)
            dA.append(x)
        At = [a[ti] for a in A]
        hs_t = [{L: v[ti] for L, v in h.items()} for h in hs]
        Bs_t = {k: None if B is None else [b[ti] for b in B] for k, B in Bs.items()}

        def tangent_inputs(c, dh):  # tangents of core c's two inputs (None: constant)
            dB = engine.compressed(params, c, dA)
            one = lambda v, feats: dict(enumerate(feats)) if v == FEATURES else dh.get(v)  # noqa: E731
            return one(c.inputs[0], dA), one(c.inputs[1], dB if dB is not None else dA)

        way = spec.way(core.k)  # core k, the core that takes its bond, …, the last core
        # dh of every bond off the way: bilinear, d(x ∘ y) = dx ∘ y + x ∘ dy
        dh = {}
        for c in self.engine.plan.cores:
            if c.k in way:
                continue
            hx, by = engine.inputs(c, hs_t, Bs_t[c.k], At)
            dx, dy = tangent_inputs(c, dh)
            out = engine.core_forward(params, c, hx, dy, st) if dy is not None else None
            if dx is not None:
                more = engine.core_forward(params, c, dx, by, st)
                out = more if out is None else {L: out[L] + more[L] for L in out}
            dh[c.k] = out
        # dρ down the way: ρ_j = adjoint of core c (consumer of j) in its input j, given ρ_c and the other input
        drho = None
        for c_k, j in zip(way[:0:-1], way[-2::-1]):
            c = self.engine.plan.core(c_k)
            hx, by = engine.inputs(c, hs_t, Bs_t[c.k], At)
            dx, dy = tangent_inputs(c, dh)
            rho_c = {L: v[ti] for L, v in rhos[c.k].items()}
            first = c.inputs[0] == j  # the way enters core c through its first input, else its second
            which = (first, not first)
            pick = lambda pair: pair[0] if first else pair[1]  # noqa: E731
            out = None
            if first and dy is not None:  # ρ_c through the tangent of the other input
                out = pick(engine.core_adjoints(params, c, rho_c, hx, dy, st, which))
            elif not first and dx is not None:
                out = pick(engine.core_adjoints(params, c, rho_c, dx, by, st, which))
            if drho is not None:  # dρ_c through the other input
                more = pick(engine.core_adjoints(params, c, drho, hx, by, st, which))
                out = more if out is None else {L: out[L] + more[L] for L in out}
            drho = out
        rho = {L: v[ti] for L, v in rhos[core.k].items()}
        hx, by = engine.inputs(core, hs_t, Bs_t[core.k], At)
        dx, dy = tangent_inputs(core, dh)
        if group.U:
            # Env_U = Σ_m dB[K,l,m] A[c,l,m]: d(Env_U) = (d dB) A + dB dA, d dB from dρ and the first input's tangent
            ddB = [np.zeros_like(b) for b in by.values()]
            for rho_, hx_ in ((drho, hx), (rho, dx)):
                if rho_ is not None and hx_ is not None:
                    d = engine.core_adjoints(params, core, rho_, hx_, by, st, (False, True))[1]
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
        return G.reshape(Np, 3, -1)
