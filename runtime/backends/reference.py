"""numpy reference backend: the executable definition of a :class:`~etn.generator.Schedule`, and the one
numpy contraction engine (the design rows of :mod:`etn.backends.design` run on it).

It interprets a :class:`~etn.backends.plan.Plan` for the ``numpy`` target, as the templates render one
for C and CUDA: the cores in graph order with their inputs, each path's CG entries and where its
weights are (a block of the parameters, or for a folded core g' = U g), the channel factors U and e0.
The one-particle basis comes from the schedule (SH monomials, radial basis). Generated kernels are tested
against it, and it is tested against the dense implementation of the maths in
``tests/dense_reference.py``. Each path is contracted by one set of batched matrix
products (``couple`` and its adjoints); the contraction *order* a path runs in is a choice of the
generated kernels (``Path.order``), tested by forcing each order on them.

Shapes: ``N`` atoms, ``Np`` ordered pairs, ``S`` species, ``N_r`` radial functions,
``n_sh = (l_max + 1)²`` spherical harmonics; features per ``l`` are ``(N, n_c(l), 2l + 1)``.
"""

from __future__ import annotations

import numpy as np

from ..generator.schedule import Schedule
from ..generator.spec import FEATURES
from .plan import Plan, plan


def fade_in(d, r0: float, r1: float):
    """s(d) = x³(10 - 15x + 6x²), x = (d - r0)/(r1 - r0) clipped to [0, 1], and ds/dd: 0 up to r0, 1 from
    r1 on, s, s' and s'' continuous. The pair term is switched by 1 - s, the radial basis by s."""
    x = np.clip((d - r0) / (r1 - r0), 0.0, 1.0)
    return x ** 3 * (10 - 15 * x + 6 * x ** 2), 30 * x ** 2 * (1 - x) ** 2 / (r1 - r0)


def repulsion(rep: dict | None, pairs):
    """The spec's pair term (``Schedule.repulsion``): site energies ½ Σ_j φ(r_ij) S(r_ij) (N,) and their
    per-pair gradients ∂/∂r_ij (Np, 3); zeros without a pair term. Each ordered pair carries half of
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


# -- the contraction: one path of a core as batched matrix products -----------------------------------
# x[n, a, M_in] is the core's first input (irrep L_in), y[n, c, m] its second (irrep l), g[(s,) a, c, b] the
# path's weights (s: the centre's species per row, for the species-specific core), ρ[n, b, M_out] the right
# environment of its bond. numpy's einsum falls back to slow loops for products sharing the batch index n,
# hence matrix products.
def _xcg(cg, x):
    """X[n, a, O, m] = Σ_I x[n, a, I] cg[O, I, m]."""
    O, I, m = cg.shape
    n, ra, _ = x.shape
    return (x.reshape(n * ra, I) @ cg.transpose(1, 0, 2).reshape(I, O * m)).reshape(n, ra, O, m)


def _rhog(rho, g, s):
    """Y[n, O, a, c] = Σ_b ρ[n, b, O] g[a, c, b]."""
    n, rb, O = rho.shape
    ra, nc = g.shape[-3], g.shape[-2]
    rt = rho.transpose(0, 2, 1)
    if s is None:
        return (rt.reshape(n * O, rb) @ g.reshape(ra * nc, rb).T).reshape(n, O, ra, nc)
    return (rt @ g[s].reshape(n, ra * nc, rb).transpose(0, 2, 1)).reshape(n, O, ra, nc)


def couple(cg, x, y, g, s):
    """Σ CG x y g -> (n, r_out, 2L_out + 1): the path's contribution to the core's bond."""
    n, ra = x.shape[:2]
    O, nc, rb = cg.shape[0], g.shape[-2], g.shape[-1]
    X = _xcg(cg, x).reshape(n, ra * O, -1)
    T = (X @ y.transpose(0, 2, 1)).reshape(n, ra, O, nc).transpose(0, 2, 1, 3)  # (n, O, a, c)
    if s is None:
        out = T.reshape(n * O, ra * nc) @ g.reshape(ra * nc, rb)
    else:
        out = T.reshape(n, O, ra * nc) @ g[s].reshape(n, ra * nc, rb)
    return out.reshape(n, O, rb).transpose(0, 2, 1)


def adjoint_first(cg, rho, y, g, s):
    """Σ CG ρ y g -> (n, r_in, 2L_in + 1): ∂/∂x of the path."""
    n, O = rho.shape[0], rho.shape[2]
    ra, nc = g.shape[-3], g.shape[-2]
    I = cg.shape[1]
    Y = _rhog(rho, g, s).reshape(n, O * ra, nc)
    Z = (Y @ y).reshape(n, O, ra, -1).transpose(0, 2, 1, 3)  # (n, a, O, m)
    return (Z.reshape(n * ra, -1) @ cg.transpose(0, 2, 1).reshape(-1, I)).reshape(n, ra, I)


def adjoint_second(cg, rho, x, g, s):
    """Σ CG ρ x g -> (n, n_c, 2l + 1): ∂/∂y of the path."""
    n, O = rho.shape[0], rho.shape[2]
    ra, nc = g.shape[-3], g.shape[-2]
    Y = _rhog(rho, g, s).transpose(0, 3, 2, 1).reshape(n, nc, ra * O)  # (n, c, a*O)
    return Y @ _xcg(cg, x).reshape(n, ra * O, -1)


def adjoint_weights(cg, rho, x, y):
    """Σ CG ρ x y -> (n, r_in, n_c, r_out): ∂/∂g of the path (a design row)."""
    n, rb, O = rho.shape
    ra, I = x.shape[1:]
    m = cg.shape[2]
    T1 = (rho.reshape(n * rb, O) @ cg.reshape(O, I * m)).reshape(n, rb, I, m)
    T2 = x[:, None] @ T1  # (n, rb, ra, m)
    env = T2.reshape(n, rb * ra, m) @ y.transpose(0, 2, 1)  # (n, rb*ra, c)
    return env.reshape(n, rb, ra, -1).transpose(0, 2, 3, 1)


class NumpyBackend:
    """Site energies ``V_i`` (without ``e0``) and per-pair gradients ``∂V_i/∂r_ij``: a plan interpreted
    (a schedule is planned for the numpy evaluation, unfolded)."""

    def __init__(self, source: Schedule | Plan):
        self.plan = source if isinstance(source, Plan) else plan(source, "evaluate", "numpy")
        self.sched = sched = self.plan.schedule
        self._folds = {f["name"]: f for f in self.plan.folds}
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
        self.cg = {}  # per path (by its parameter block): its CG entries, dense (2L_out + 1, 2L_in + 1, 2l + 1)
        for core in self.plan.cores:
            for p in core.paths:
                arr = np.zeros((2 * p.L_out + 1, 2 * p.L_in + 1, 2 * p.l + 1))
                for e in p.cg:
                    arr[e.M_out + p.L_out, e.M_in + p.L_in, e.m + p.l] = e.value
                self.cg[p.param] = arr

    # -- one-particle basis -----------------------------------------------------------------------
    def radial(self, d: np.ndarray):
        """``Q_n(r)`` and ``dQ_n/dr`` for distances ``d`` (Np,) -> two arrays (Np, N_r)."""
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
        """``Y_lm(r̂)`` (Np, n_sh) and ``∇_r Y_lm`` (Np, n_sh, 3) for pair vectors ``r`` (Np, 3)."""
        d = np.linalg.norm(r, axis=1)
        u = r / d[:, None]
        mono = np.prod(u[:, None, :] ** self._exps[None, :, :], axis=2)  # (Np, n_mono)
        Y = mono @ self._R.T
        dR = np.stack([mono @ self._dR[a].T for a in range(3)], axis=-1)  # (Np, n_sh, 3)
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
        phi = Q[:, :, None] * Y[:, None, :]  # (Np, N_r, n_sh)
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
    def weights(self, params, core, p):
        """A path's weights g[(s,) a, c, b]: a view of ``params``, or for a folded core g' = U g."""
        shape = ((self.spec.n_species,) if core.species_specific else ()) + (p.r_in, p.n_c, p.r_out)
        f = self._folds.get(p.param)
        if f is None:
            return params[p.g:p.g + int(np.prod(shape))].reshape(shape)
        g = params[f["g"]:f["g"] + f["rows"] * f["K"] * f["r_out"]].reshape(f["rows"], f["K"], f["r_out"])
        U = params[f["U"]:f["U"] + f["C"] * f["K"]].reshape(f["C"], f["K"])
        return (U @ g).reshape(shape)

    def U(self, params, core, l):
        """The channel factor U_k[l] (channels, K) of a compressing core."""
        n = self.sched.features["channels"][l] * core.K
        return params[core.U[l]:core.U[l] + n].reshape(-1, core.K)

    def compressed(self, params, core, A):
        """B_k = U_k^T A per l for a compressing core, else None (the core reads A)."""
        return [self.U(params, core, l).T @ A[l] for l in range(len(A))] if core.K else None

    @staticmethod
    def inputs(core, hs, B, A):
        """Core k's two inputs as {L: (n, dim, 2L + 1)}: bond states, or the features (B: compressed)."""
        def one(v, feats):
            return dict(enumerate(feats)) if v == FEATURES else hs[v]
        x, y = core.inputs
        return one(x, A), one(y, B if B is not None else A)

    def core_forward(self, params, core, hx, by, species):
        """Core k's bond from its two inputs (each {L: (n, dim, 2L + 1)}): Σ_paths CG x y g."""
        n = next(iter(hx.values())).shape[0]
        s = species if core.species_specific else None
        out = {t.L: np.zeros((n, t.rank, 2 * t.L + 1)) for t in self.sched.bonds[core.k].terms}
        for p in core.paths:
            out[p.L_out] += couple(self.cg[p.param], hx[p.L_in], by[p.l], self.weights(params, core, p), s)
        return out

    def core_adjoints(self, params, core, rho, hx, by, species, which=(True, True)):
        """∂/∂(first input) and ∂/∂(second input) of Σ_M ρ[M] h_k[M] through core k (None where not
        asked, or where the first input is the constant)."""
        s = species if core.species_specific else None
        dx = {L: np.zeros_like(v) for L, v in hx.items()} if which[0] and not core.constant_input else None
        dy = {L: np.zeros_like(v) for L, v in by.items()} if which[1] else None
        for p in core.paths:
            g, cg = self.weights(params, core, p), self.cg[p.param]
            if dx is not None:
                dx[p.L_in] += adjoint_first(cg, rho[p.L_out], by[p.l], g, s)
            if dy is not None:
                dy[p.l] += adjoint_second(cg, rho[p.L_out], hx[p.L_in], g, s)
        return dx, dy

    def forward(self, params, A, species):
        """Bond states ``h_k`` (list over k = 0 … n of {L: (N, r_L, 2L + 1)}; h_0 = 1) and per core k its
        compressed features ``Bs[k]`` (None where it reads A itself), in graph order."""
        N = A[0].shape[0]
        hs, Bs = [{0: np.ones((N, 1, 1))}], {}
        for core in self.plan.cores:
            B = Bs[core.k] = self.compressed(params, core, A)
            hs.append(self.core_forward(params, core, *self.inputs(core, hs, B, A), species))
        return hs, Bs

    def backward(self, params, A, species, hs, Bs, rho_out=None, features: bool = True):
        """Right environments ρ_k = ∂y/∂h_k of every bond (a dict; cores in reverse order: a bond's consumer
        comes after it) and, with ``features``, ``∂y/∂A_i`` per l (same shapes as ``A``), for
        y = Σ_M ρ_out[M] h_n[M] (default: the site energy)."""
        N = A[0].shape[0]
        n = len(self.plan.cores)
        rhos = {n: rho_out if rho_out is not None else {0: np.ones((N, 1, 1))}}
        dA = [np.zeros_like(a) for a in A] if features else None
        for core in reversed(self.plan.cores):
            x, y = core.inputs
            B = Bs[core.k]
            which = (x != FEATURES or features, y != FEATURES or features)
            d_x, d_y = self.core_adjoints(params, core, rhos[core.k], *self.inputs(core, hs, B, A), species, which)
            for src, d, compressed in ((x, d_x, False), (y, d_y, B is not None)):
                if d is None or src == 0:
                    continue
                if src != FEATURES:
                    rhos[src] = d
                elif compressed:
                    for l in range(len(dA)):
                        dA[l] += self.U(params, core, l) @ d[l]
                else:
                    for l in range(len(dA)):
                        dA[l] += d[l]
        return rhos, dA

    def output(self, params, pairs):
        """The network's output per atom, (N, 2L + 1) for output irreps ``1xL`` (no ``e0``, no pair term)."""
        params = np.asarray(params, dtype=np.float64)
        A, _ = self.features(pairs)
        hs, _ = self.forward(params, A, pairs.species)
        (L, _), = self.spec.output.terms
        return hs[-1][L][:, 0, :]

    def compute(self, params, pairs, gradients: bool = True):
        """Site energies ``e0[s_i] + V_i`` (N,) and per-pair gradients ``∂V_i/∂r_ij`` (Np, 3) or None."""
        if not self.spec.is_energy:
            raise ValueError(f"this spec's output is '{self.spec.output}', not a site energy: use output()")
        params = np.asarray(params, dtype=np.float64)
        A, (Q, dQ, Y, dY, tj) = self.features(pairs)
        hs, Bs = self.forward(params, A, pairs.species)
        e0 = self.plan.e0
        V = params[e0:e0 + self.spec.n_species][pairs.species] + hs[-1][0][:, 0, 0]
        e_rep, g_rep = repulsion(self.sched.repulsion, pairs)
        V = V + e_rep
        if not gradients:
            return V, None
        _, dA = self.backward(params, A, pairs.species, hs, Bs)
        spec = self.spec
        N, S, Nr = pairs.n_atoms, spec.n_species, spec.n_radial
        full = np.concatenate([dA[l][:, :S * Nr, :] for l in range(self.l_max + 1)], axis=2)
        G = full.reshape(N, S, Nr, -1)[pairs.i, tj]  # (Np, N_r, n_sh)
        u = pairs.r / np.linalg.norm(pairs.r, axis=1)[:, None]
        radial_part = np.einsum("pns,pn,ps->p", G, dQ, Y)
        GQ = np.einsum("pns,pn->ps", G, Q)
        grad = radial_part[:, None] * u + np.einsum("ps,psa->pa", GQ, dY)
        return V, grad + g_rep
