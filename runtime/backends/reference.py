"""numpy reference backend: the executable definition of a :class:`~etn.generator.Schedule`.

Everything here is driven by the schedule (SH monomials, CG non-zeros, parameter blocks, the
contraction order chosen per path); generated kernels are tested against it, and it is tested
against the dense implementation of the maths in ``tests/dense_reference.py``.

Shapes: ``N`` atoms, ``P`` ordered pairs, ``S`` species, ``N_r`` radial functions,
``n_sh = (l_max + 1)²`` spherical harmonics; features per ``l`` are ``(N, n_c(l), 2l + 1)``.
"""

from __future__ import annotations

import numpy as np

from ..generator.schedule import Schedule
from ..generator.spec import FEATURES


def fade_in(d, r0: float, r1: float):
    """s(d) = x³(10 - 15x + 6x²), x = (d - r0)/(r1 - r0) clipped to [0, 1], and ds/dd: 0 up to r0, 1 from
    r1 on, s, s' and s'' continuous. The pair term is switched by 1 - s, the radial basis by s."""
    x = np.clip((d - r0) / (r1 - r0), 0.0, 1.0)
    return x ** 3 * (10 - 15 * x + 6 * x ** 2), 30 * x ** 2 * (1 - x) ** 2 / (r1 - r0)


def repulsion(rep: dict | None, pairs):
    """The spec's pair term (``Schedule.repulsion``): site energies ½ Σ_j φ(r_ij) S(r_ij) (N,) and their
    per-pair gradients ∂/∂r_ij (P, 3); zeros without a pair term. Each ordered pair carries half of
    φ S, so that the two directions of a pair sum to φ S."""
    N = pairs.n_atoms
    e, g = np.zeros(N), np.zeros((len(pairs.i), 3))
    if not rep or not len(pairs.i):
        return e, g
    d = np.linalg.norm(pairs.r, axis=1)
    near = np.flatnonzero(d < rep["r_outer"])
    if not len(near):
        return e, g
    d_, si, sj = d[near], pairs.species[pairs.i[near]], pairs.species[pairs.j[near]]
    pre = np.asarray(rep["prefactor"])[si, sj]
    ia = np.asarray(rep["inverse_screening"])[si, sj]
    Phi, dPhi = np.zeros_like(d_), np.zeros_like(d_)
    for c, k in rep["phi"]:
        t = c * np.exp(-k * ia * d_)
        Phi += t
        dPhi -= k * ia * t
    phi = pre * Phi / d_
    dphi = pre * (dPhi / d_ - Phi / d_ ** 2)
    s, ds = fade_in(d_, rep["r_inner"], rep["r_outer"])
    S, dS = 1 - s, -ds
    np.add.at(e, pairs.i[near], 0.5 * phi * S)
    g[near] = (0.5 * (dphi * S + phi * dS) / d_)[:, None] * pairs.r[near]
    return e, g


class NumpyBackend:
    """Site energies ``V_i`` (without ``e0``) and per-pair gradients ``∂V_i/∂r_ij`` for one schedule."""

    def __init__(self, sched: Schedule):
        self.sched = sched
        spec = sched.spec
        self.spec = spec
        self.l_max = spec.l_max
        rows = sched.sh
        exps = sorted({tuple(e) for row in rows for poly in [row["R"], *row["dR"]] for _, _, e in poly})
        self._exps = np.array(exps, dtype=np.int64).reshape(-1, 3)
        col = {e: k for k, e in enumerate(exps)}
        self._R = np.zeros((len(rows), len(exps)))
        self._dR = np.zeros((3, len(rows), len(exps)))
        for s, row in enumerate(rows):
            for _, v, e in row["R"]:
                self._R[s, col[tuple(e)]] = v
            for a in range(3):
                for _, v, e in row["dR"][a]:
                    self._dR[a, s, col[tuple(e)]] = v
        self._ls = np.array([row["l"] for row in rows], dtype=np.float64)
        self._cg = {}
        for core in sched.cores:
            for p in core.paths:
                arr = np.zeros((2 * p.L_out + 1, 2 * p.L_in + 1, 2 * p.l + 1))
                for e in p.cg:
                    arr[e.M_out + p.L_out, e.M_in + p.L_in, e.m + p.l] = e.value
                self._cg[p.param] = arr

    # -- one-particle basis -----------------------------------------------------------------------
    def radial(self, d: np.ndarray):
        """``Q_n(r)`` and ``dQ_n/dr`` for distances ``d`` (P,) -> two arrays (P, N_r)."""
        spec = self.spec
        w = spec.r_cut - spec.r_min
        xi = (2 * d - spec.r_min - spec.r_cut) / w
        # with the ZBL pair term, T_n continues linearly below r_min (xi < -1): T_n(-1) + T_n'(-1)(xi + 1),
        # so the features stay moderate where the pair term takes over, instead of growing as xi^n
        xc = np.maximum(xi, -1.0) if spec.repulsion != "none" else xi
        T = np.zeros((d.size, spec.n_radial))
        dT = np.zeros_like(T)
        T[:, 0] = 1.0
        if spec.n_radial > 1:
            T[:, 1] = xc
            dT[:, 1] = 1.0
        for n in range(2, spec.n_radial):
            T[:, n] = 2 * xc * T[:, n - 1] - T[:, n - 2]
            dT[:, n] = 2 * T[:, n - 1] + 2 * xc * dT[:, n - 1] - dT[:, n - 2]
        T += dT * (xi - xc)[:, None]
        f = ((spec.r_cut - d) / w) ** 2
        df = -2 * (spec.r_cut - d) / w**2
        if spec.repulsion != "none":  # and it fades out where the pair term fades in: f s, s = 1 - S
            s, ds = fade_in(d, self.sched.repulsion["r_inner"], spec.r_min)
            f, df = f * s, df * s + f * ds
        Q = T * f[:, None]
        dQ = dT * (2 / w) * f[:, None] + T * df[:, None]
        return Q, dQ

    def angular(self, r: np.ndarray):
        """``Y_lm(r̂)`` (P, n_sh) and ``∇_r Y_lm`` (P, n_sh, 3) for pair vectors ``r`` (P, 3)."""
        d = np.linalg.norm(r, axis=1)
        u = r / d[:, None]
        mono = np.prod(u[:, None, :] ** self._exps[None, :, :], axis=2)  # (P, n_mono)
        Y = mono @ self._R.T
        dR = np.stack([mono @ self._dR[a].T for a in range(3)], axis=-1)  # (P, n_sh, 3)
        dY = (dR - self._ls[None, :, None] * Y[:, :, None] * u[:, None, :]) / d[:, None, None]
        return Y, dY

    # -- features ---------------------------------------------------------------------------------
    def features(self, pairs):
        """Pooled features ``A_l`` (list over l of (N, n_c(l), 2l + 1)) and the pair basis."""
        spec = self.spec
        N, S, Nr = pairs.n_atoms, spec.n_species, spec.n_radial
        d = np.linalg.norm(pairs.r, axis=1)
        Q, dQ = self.radial(d)
        Y, dY = self.angular(pairs.r)
        tj = pairs.species[pairs.j]
        phi = Q[:, :, None] * Y[:, None, :]  # (P, N_r, n_sh)
        acc = np.zeros((N * S, Nr * Y.shape[1]))
        np.add.at(acc, pairs.i * S + tj, phi.reshape(len(d), Nr * Y.shape[1]))
        acc = acc.reshape(N, S * Nr, -1)
        A = []
        for l in range(self.l_max + 1):
            a = acc[:, :, l * l:(l + 1) ** 2]
            if l == 0:
                a = np.concatenate([a, np.ones((N, 1, 1))], axis=1)
            A.append(np.ascontiguousarray(a))
        return A, (Q, dQ, Y, dY, tj)

    # -- contraction ------------------------------------------------------------------------------
    def _weights(self, params, core, p, species):
        b = self.sched.block(p.param)
        g = params[b.offset:b.offset + b.size].reshape(b.shape)
        return (g[species], "n") if core.species_specific else (g, "")

    def _compressed(self, params, core, A):
        if not core.K:
            return A
        out = []
        for l, name in enumerate(core.compress):
            b = self.sched.block(name)
            U = params[b.offset:b.offset + b.size].reshape(b.shape)
            out.append(np.einsum("ncm,cK->nKm", A[l], U))
        return out

    def _input(self, x, hs, B, A):
        """The states {L: (N, dim, 2L + 1)} of one input of a core: a bond's, or the features (B: compressed)."""
        if x == FEATURES:
            return dict(enumerate(B if B is not None else A))
        return hs[x]

    def forward(self, params, A, species):
        """Bond states ``h_k`` (list over k = 0 … n of {L: (N, r_L, 2L + 1)}; h_0 = 1) and per core the
        compressed features of its second input (None where it is a bond or uncompressed)."""
        N = A[0].shape[0]
        hs = [{0: np.ones((N, 1, 1))}]
        Bs = []
        for core in self.sched.cores:
            x, y = core.inputs
            B = self._compressed(params, core, A) if core.K else None
            Bs.append(B)
            h_in, b_in = self._input(x, hs, None, A), self._input(y, hs, B, A)
            out = {t["L"]: np.zeros((N, t["rank"], 2 * t["L"] + 1)) for t in self.sched.bonds[core.k]["terms"]}
            for p in core.paths:
                g, n = self._weights(params, core, p, species)
                cg, h, a = self._cg[p.param], h_in[p.L_in], b_in[p.l]
                if p.order == "hA":
                    T = np.einsum("OIm,niI,ncm->nicO", cg, h, a, optimize=True)
                    out[p.L_out] += np.einsum(f"nicO,{n}ico->noO", T, g, optimize=True)
                elif p.order == "gh":
                    W = np.einsum(f"niI,{n}ico->ncoI", h, g, optimize=True)
                    out[p.L_out] += np.einsum("OIm,ncoI,ncm->noO", cg, W, a, optimize=True)
                else:
                    X = np.einsum(f"ncm,{n}ico->niom", a, g, optimize=True)
                    out[p.L_out] += np.einsum("OIm,niI,niom->noO", cg, h, X, optimize=True)
            hs.append(out)
        return hs, Bs

    def backward(self, params, A, species, hs, Bs, rho_out=None):
        """``∂y/∂A_i`` per l (same shapes as ``A``) by the backward sweep from the output (the right
        environments ρ_k = ∂y/∂h_k, cores in reverse order: a bond's consumers come after it), for
        y = Σ_M ρ_out[M] h_n[M] (default: the site energy)."""
        N = A[0].shape[0]
        n = len(self.sched.cores)
        rhos = {n: rho_out if rho_out is not None else {0: np.ones((N, 1, 1))}}
        dA = [np.zeros_like(a) for a in A]
        for core in reversed(self.sched.cores):
            x, y = core.inputs
            rho, B = rhos.pop(core.k), Bs[core.k - 1]
            h_in, b_in = self._input(x, hs, None, A), self._input(y, hs, B, A)
            d_in = {L: np.zeros_like(v) for L, v in h_in.items()}
            d_b = {L: np.zeros_like(v) for L, v in b_in.items()}
            for p in core.paths:
                g, sp = self._weights(params, core, p, species)
                cg = self._cg[p.param]
                Pm = np.einsum(f"noO,{sp}ico->nicO", rho[p.L_out], g, optimize=True)
                if not core.constant_input:
                    d_in[p.L_in] += np.einsum("OIm,nicO,ncm->niI", cg, Pm, b_in[p.l], optimize=True)
                d_b[p.l] += np.einsum("OIm,nicO,niI->ncm", cg, Pm, h_in[p.L_in], optimize=True)
            for src, d, compressed in ((x, d_in, False), (y, d_b, bool(core.K))):
                if src == 0:
                    continue
                if src != FEATURES:
                    rhos[src] = {L: rhos[src][L] + v for L, v in d.items()} if src in rhos else d
                elif compressed:
                    for l, name in enumerate(core.compress):
                        b = self.sched.block(name)
                        U = params[b.offset:b.offset + b.size].reshape(b.shape)
                        dA[l] += np.einsum("nKm,cK->ncm", d[l], U)
                else:
                    for l in d:
                        dA[l] += d[l]
        return dA

    def output(self, params, pairs):
        """The network's output per atom, (N, 2L + 1) for output irreps ``1xL`` (no ``e0``, no pair term)."""
        params = np.asarray(params, dtype=np.float64)
        A, _ = self.features(pairs)
        hs, _ = self.forward(params, A, pairs.species)
        (L, _), = self.spec.output.terms
        return hs[-1][L][:, 0, :]

    def compute(self, params, pairs, gradients: bool = True):
        """Site energies ``e0[s_i] + V_i`` (N,) and per-pair gradients ``∂V_i/∂r_ij`` (P, 3) or None."""
        if not self.spec.is_energy:
            raise ValueError(f"this spec's output is '{self.spec.output}', not a site energy: use output()")
        params = np.asarray(params, dtype=np.float64)
        A, (Q, dQ, Y, dY, tj) = self.features(pairs)
        hs, Bs = self.forward(params, A, pairs.species)
        e0 = self.sched.block("e0")
        V = params[e0.offset:e0.offset + e0.size][pairs.species] + hs[-1][0][:, 0, 0]
        e_rep, g_rep = repulsion(self.sched.repulsion, pairs)
        V = V + e_rep
        if not gradients:
            return V, None
        dA = self.backward(params, A, pairs.species, hs, Bs)
        spec = self.spec
        N, S, Nr = pairs.n_atoms, spec.n_species, spec.n_radial
        full = np.concatenate([dA[l][:, :S * Nr, :] for l in range(self.l_max + 1)], axis=2)
        G = full.reshape(N, S, Nr, -1)[pairs.i, tj]  # (P, N_r, n_sh)
        u = pairs.r / np.linalg.norm(pairs.r, axis=1)[:, None]
        radial_part = np.einsum("pns,pn,ps->p", G, dQ, Y)
        GQ = np.einsum("pns,pn->ps", G, Q)
        grad = radial_part[:, None] * u + np.einsum("ps,psa->pa", GQ, dY)
        return V, grad + g_rep
