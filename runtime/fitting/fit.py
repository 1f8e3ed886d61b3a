"""Fitting by alternating least squares (ALS) over the equivariant cores, with DMRG-style truncation.

The model is linear in each parameter group (``e0``, ``core{k}``, ``core{k}.U``) with the others fixed
(see :mod:`etn.backends.design`), so a fit is a sequence of linear least-squares problems::

    min_θ  Σ_c w_E ((E_c - Ê_c) / N_c)² + w_F |F_c - F̂_c|² / N_c + w_S |(σ_c - σ̂_c) V_c / N_c|² + λ m |θ|²

(energies per atom, squared force errors per atom, stress as virial per atom in eV/atom: the
normalisation of MLIP and motep, so that their weights 1 / 0.01 / 0.001 mean the same here, and a
large cell's forces do not outweigh its single energy; m = mean(diag XᵀX) makes λ relative; e0 is
not penalised; see :func:`solve_normal`). Labels are taken less the spec's fixed pair term
(``repulsion``), which has no parameters. A sweep visits the cores 1 … n (then n … 1: in a tensor train, left
to right and back); between two cores the gauge moves along the bonds of the network's path between them,
one bond at a time: the core being left is orthogonalised per irrep block of that bond (QR, or SVD with
truncation for rank adaptation) and the triangular factor is pushed into the next core's leg for it,
which leaves the model unchanged. The channel factor U_k is solved and orthogonalised the same way before
its core.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..backends.resolver import design, set_threads
from ..generator import Spec, cached_schedule
from ..generator.errors import EtnError
from ..generator.spec import Irreps
from ..io.neighbors import pairs as build_pairs
from ..potential import Potential


#: Memory for one batch of design rows (bytes): the fit's peak memory is the normal matrix plus this.
BATCH_BYTES = 64 * 2 ** 20


class FitError(EtnError, RuntimeError):
    """A fit that cannot proceed; the message says what to change."""


@dataclass
class FitSettings:
    """Loss weights, regularisation, sweeps, rank adaptation and seed of a fit (defaults: MTP practice)."""

    energy_weight: float = 1.0
    force_weight: float = 0.01
    stress_weight: float = 0.001
    regularization: float = 1e-5
    ridge: str = "uniform"
    reference_energies: object = "fit"
    sweeps: int = 8
    patience: int = 2
    tolerance: float = 1e-3
    rank_tol: float = 0.0
    max_rank: int | None = None
    polish: int = 0
    seed: int = 0
    init_scale: float = 1.0
    threads: int | None = None
    backend: str = "c"

    def __post_init__(self):
        for name in ("energy_weight", "force_weight", "stress_weight", "regularization", "tolerance", "rank_tol"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise FitError(f"fit setting {name} must be a finite number >= 0, not {v!r}")
        if self.energy_weight + self.force_weight + self.stress_weight == 0:
            raise FitError("all loss weights are zero: set energy_weight, force_weight or stress_weight > 0")
        if not isinstance(self.polish, int) or self.polish < 0:
            raise FitError(f"polish must be an integer >= 0, not {self.polish!r}")
        if not isinstance(self.sweeps, int) or self.sweeps < 1:
            raise FitError(f"sweeps must be an integer >= 1, not {self.sweeps!r}")
        for name in ("patience", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise FitError(f"fit setting {name} must be an integer >= 0, not {v!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise FitError(f"threads must be an integer >= 1 (0 in fit.toml: all cores), not {self.threads!r}")
        if not isinstance(self.init_scale, (int, float)) or not math.isfinite(self.init_scale) or self.init_scale <= 0:
            raise FitError(f"init_scale must be a finite number > 0, not {self.init_scale!r}")
        from ..backends.resolver import EVALUATION

        if self.backend not in EVALUATION:
            raise FitError(f"backend must be 'c', 'cuda', 'auto' or 'numpy' (with -float32/-float64 for c and cuda), "
                           f"not {self.backend!r}")
        ref = self.reference_energies
        if not (ref in ("fit", "unary", "isolated") or isinstance(ref, dict) and all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for k, v in ref.items())):
            raise FitError(f"reference_energies must be 'fit', 'unary', 'isolated' or a table of element = energy "
                           f"(eV), not {ref!r}")
        if self.ridge not in ("uniform", "scaled"):
            raise FitError(f"fit setting ridge must be 'uniform' or 'scaled', not {self.ridge!r}")
        if self.max_rank is not None and (not isinstance(self.max_rank, int) or self.max_rank < 1):
            raise FitError(f"max_rank must be an integer >= 1, not {self.max_rank!r}")


# -- parameters as named blocks ----------------------------------------------------------------------
def to_blocks(pot: Potential) -> dict[str, np.ndarray]:
    return {b.name: pot.block(b.name).copy() for b in pot.schedule.params}


def from_blocks(spec: Spec, blocks: dict) -> np.ndarray:
    sched = cached_schedule(spec)
    flat = np.zeros(sched.n_params)
    for b in sched.params:
        flat[b.offset:b.offset + b.size] = np.asarray(blocks[b.name]).reshape(-1)
    return flat


def _with_rank(spec: Spec, k: int, L: int, rank: int) -> Spec:
    """``spec`` with the multiplicity of irrep L on inner bond k set to ``rank``."""
    d = spec.to_dict()
    bonds = [Irreps.parse(b) for b in d["bonds"]]
    b = bonds[k - 1]
    bonds[k - 1] = Irreps(tuple((L_, rank if L_ == L else r) for L_, r in b.terms))
    d["bonds"] = [str(x) for x in bonds]
    return Spec.from_dict(d)


# -- orthogonalisation (the model's predictions do not change) ---------------------------------------
def orthogonalize_U(spec: Spec, blocks: dict, k: int) -> None:
    """QR of each channel factor U_k[l] = Q R: U ← Q, and R goes into the κ leg of core k's paths."""
    sched = cached_schedule(spec)
    core = sched.core(k)
    for l, name in enumerate(core.compress):
        Q, R = np.linalg.qr(blocks[name])
        if Q.shape[1] < blocks[name].shape[1]:
            continue  # fewer channels than K: nothing to gain
        blocks[name] = Q
        for p in core.paths:
            if p.l == l:
                blocks[p.param] = np.einsum("Kk,...ikr->...iKr", R, blocks[p.param])


def _leg(core, j) -> int:
    """The axis of core k's path blocks that carries its input bond j: -3 (first input) or -2 (second)."""
    return -3 if core.inputs[0] == j else -2


def orthogonalize_output(spec: Spec, blocks: dict, k: int, rank_tol: float = 0.0, max_rank: int | None = None):
    """Core k ← orthonormal per irrep of its output bond (the gauge moves along bond k to the core that
    takes it); the factor R goes into that core's leg for bond k.

    With ``rank_tol`` or ``max_rank``, an SVD truncates each irrep block (singular values below
    ``rank_tol`` times the largest are dropped; at least rank 1 is kept): returns the new spec.
    """
    sched = cached_schedule(spec)
    core, nxt = sched.core(k), spec.consumer(k)
    if nxt is None:
        raise ValueError(f"core {k} forms the output bond: no core takes it, so the gauge cannot move on from it")
    nxt = sched.core(nxt)
    leg = _leg(nxt, k)
    for t in sched.bonds[k].terms:
        L, r = t.L, t.rank
        mine = [p for p in core.paths if p.L_out == L]
        M = np.concatenate([blocks[p.param].reshape(-1, r) for p in mine], axis=0)
        if M.shape[0] < r:
            continue
        if rank_tol > 0 or (max_rank is not None and max_rank < r):
            Uq, s, Vt = np.linalg.svd(M, full_matrices=False)
            keep = int(np.sum(s > rank_tol * s[0])) if s[0] > 0 else 1
            keep = max(1, min(keep, max_rank or keep))
            Q, R = Uq[:, :keep], s[:keep, None] * Vt[:keep]
        else:
            Q, R = np.linalg.qr(M)
        off = 0
        for p in mine:
            shp = blocks[p.param].shape
            n = int(np.prod(shp[:-1]))
            blocks[p.param] = Q[off:off + n].reshape(shp[:-1] + (Q.shape[1],))
            off += n
        for p in nxt.paths:
            if (p.L_in if leg == -3 else p.l) == L:
                blocks[p.param] = np.moveaxis(np.tensordot(R, np.moveaxis(blocks[p.param], leg, 0), 1), 0, leg)
        if Q.shape[1] != r:
            spec = _with_rank(spec, k, L, Q.shape[1])
    return spec


def orthogonalize_input(spec: Spec, blocks: dict, k: int, j: int) -> None:
    """Core k ← orthonormal per irrep of its input bond j (the gauge moves along bond j to core j); the
    factor goes into core j's output leg."""
    sched = cached_schedule(spec)
    core, prv = sched.core(k), sched.core(j)
    leg = _leg(core, j)
    for t in sched.bonds[j].terms:
        L, r = t.L, t.rank
        mine = [p for p in core.paths if (p.L_in if leg == -3 else p.l) == L]
        M = np.concatenate([np.moveaxis(blocks[p.param], leg, 0).reshape(r, -1) for p in mine], axis=1)
        if M.shape[1] < r:
            continue
        Q, R = np.linalg.qr(M.T)  # M = Rᵀ Qᵀ
        off = 0
        for p in mine:
            shp = np.moveaxis(blocks[p.param], leg, 0).shape
            n = int(np.prod(shp[1:]))
            blocks[p.param] = np.moveaxis(Q[off:off + n].T.reshape(shp), 0, leg)
            off += n
        for p in prv.paths:
            if p.L_out == L:
                blocks[p.param] = blocks[p.param] @ R.T


def tour(spec: Spec) -> list[int]:
    """The cores in the order a sweep visits them (the reverse sweep goes back): 1 … n. Cores are numbered
    so that a bond's producer comes before its consumer, so in a tree consecutive cores are close."""
    return list(range(1, spec.cores + 1))


def path_between(spec: Spec, a: int, b: int) -> list[int]:
    """The cores from a to b along the bonds of the network (a tree), both ends included: up from a to
    where the ways of a and b to the output meet, then down to b."""
    up_a, up_b = spec.way(a), spec.way(b)
    meet = next(k for k in up_a if k in up_b)
    return up_a[:up_a.index(meet) + 1] + up_b[:up_b.index(meet)][::-1]


# -- the least-squares problem of one group ----------------------------------------------------------
#: eigenvalues of the column-scaled normal matrix below this fraction of the largest are round-off
UNRESOLVED = 1e-13


def solve_normal(XtX: np.ndarray, Xty: np.ndarray, reg: float, ridge: str = "scaled", free: int = 0):
    """Ridge solution of the normal equations, with columns scaled to unit norm.

    Normal equations keep memory at O(n²) for any amount of data (rows are accumulated one
    batch of configurations at a time with BLAS). They square the condition number, which is why the cores
    around the active one are orthogonalised and the columns are scaled; an eigendecomposition
    then gives the ridge solution and the condition number for the message below.

    ``ridge``: ``"scaled"`` adds ``reg`` times the largest eigenvalue to the column-scaled system (a
    relative ridge, as Levenberg–Marquardt damping uses it); ``"uniform"`` adds ``reg`` times the mean
    diagonal of ``XᵀX`` to every parameter but the first ``free`` (the reference energies), i.e.
    ``reg · mean(diag XᵀX) · |θ|²``. With the other cores orthonormal, |θ| of one core is the norm of
    the whole coefficient tensor (up to the channel factors), so the uniform ridge pulls every
    direction the data do not determine to zero, whatever the column scale: cross-species terms that
    unaries and binaries never excite stay small instead of taking whatever value rounding gives them.
    Returns ``(θ, condition number)``.
    """
    d = np.sqrt(np.diag(XtX)).copy()
    d[d == 0] = 1.0
    M = XtX / d[:, None] / d[None, :]
    b = Xty / d
    lam = 0.0
    if ridge == "uniform":
        pen = np.full(len(d), reg * float(np.mean(np.diag(XtX))))
        pen[:free] = 0.0
        M[np.diag_indices_from(M)] += pen / d ** 2
    elif ridge != "scaled":
        raise FitError(f"ridge must be 'uniform' or 'scaled', not {ridge!r}")
    w, V = np.linalg.eigh(M)
    top = max(w[-1], 1e-300)
    if ridge == "scaled":
        lam = reg * top
    # directions below eigh's resolution (exact null spaces: the gauge of a bond, the (anti)symmetric part
    # of an A x A core's l = l' blocks that A_c A_c' never excites) get no component: a pseudo-inverse there
    keep = w > UNRESOLVED * top
    w = np.where(keep, w, 1.0)
    x = V @ np.where(keep, (V.T @ b) / (w + lam), 0.0) if lam > 0 or ridge == "uniform" and reg > 0 else \
        V @ np.where(keep & (w > 1e-14 * top), (V.T @ b) / w, 0)
    cond = top / max(float(w[keep].min()) + lam, 1e-300) if keep.any() else float("inf")  # over the resolved ones
    return x / d, cond


class Fitter:
    """ALS/DMRG fit of one spec to training frames; ``run()`` returns the best :class:`Potential`."""

    def __init__(self, spec: Spec, train, valid=None, settings: FitSettings | None = None, progress: bool = True,
                 init: Potential | None = None, on_warning=None, comm=None):
        from .parallel import world

        self.settings = s = settings or FitSettings()
        if not spec.is_energy:
            raise FitError(f"fitting needs an energy model; this spec's output is '{spec.output}' per atom")
        if not train:
            raise FitError("no training configurations")
        self.train, self.valid = list(train), list(valid or [])
        # under mpiexec each rank takes its share of the configurations in every sum (etn.fitting.parallel)
        self.comm = comm if comm is not None else world()
        self.progress = progress and self.comm.rank == 0
        pot = init or Potential.random(spec, seed=s.seed, scale=s.init_scale)
        if pot.spec != spec:
            raise FitError("the initial model has a different spec from the one being fitted")
        self.spec, self.blocks = spec, to_blocks(pot)
        for f in self.train + self.valid:
            f.pairs = None
        # e0: "fit" (solved with every group) or fixed
        self.reference = s.reference_energies if isinstance(s.reference_energies, str) else "table"
        self._rep = {}  # id(frame) -> the fixed pair term's (energy, forces, virial), see _repulsion
        self.history: list[dict] = []  # one row per sweep
        self.best = None  # (validation loss, Potential)
        self.warnings: list[str] = []
        self.on_warning = on_warning  # called with each warning when it arises
        self._warned: set[str] = set()
        self.interrupted = False
        self.stop_reason = ""  # why the sweeps ended
        self.best_sweep = None  # the sweep whose model run() returns (None: after polish)
        self._t0 = time.perf_counter()

    def _warn(self, key: str, message: str) -> None:
        """Record a warning (once per ``key``) and pass it on at once, not at the end of a long fit."""
        if key in self._warned:
            return
        self._warned.add(key)
        self.warnings.append(message)
        if self.on_warning and self.comm.rank == 0:
            self.on_warning(message)

    # -- model state --------------------------------------------------------------------------------
    @property
    def params(self) -> np.ndarray:
        return from_blocks(self.spec, self.blocks)

    def potential(self) -> Potential:
        return Potential(self.spec, self.params, backend=self.settings.backend)

    def _pairs(self, f):
        if f.pairs is None:
            f.pairs = build_pairs(f.atoms, self.spec)
        return f.pairs

    # -- rows ---------------------------------------------------------------------------------------
    def _system(self, group_name, frames, residual: bool = False):
        """Normal equations (XᵀX, Xᵀy, yᵀy) of ``e0`` together with one group, accumulated over ``frames``.

        ``e0`` joins every solve: the model is linear in both at once, and solving them together
        avoids a slow alternation between the reference energies and the model's constant part.
        Rows come in batches of configurations (at most :data:`BATCH_BYTES` of rows at a time), so
        memory stays at the normal matrix plus one batch whatever the size of the training set.
        """
        sched = cached_schedule(self.spec)
        frames = self.comm.share(frames)  # this rank's configurations; the sums over ranks come at the end
        gs = [self._groups()[x] for x in ([group_name] if isinstance(group_name, str) else group_name)]
        n = self.spec.n_species + sum(g.size for g in gs)
        XtX, Xty, yty = np.zeros((n, n)), np.zeros(n), 0.0
        rows = design(sched, self.settings.backend)
        params = self.params
        batch, size = [], 0
        for f in frames:
            batch.append(f)
            size += (3 * f.n_atoms + 7) * n * 8
            if size >= BATCH_BYTES:
                yty += self._accumulate(rows, params, gs, batch, residual, XtX, Xty)
                batch, size = [], 0
        if batch:
            yty += self._accumulate(rows, params, gs, batch, residual, XtX, Xty)
        if self.comm.size > 1:  # one reduction per solve: the normal matrix, the right side and yᵀy
            XtX, Xty, yty = self.comm.sum(XtX), self.comm.sum(Xty), self.comm.sum(yty)
        return XtX, Xty, yty

    def _accumulate(self, rows, params, gs, frames, residual, XtX, Xty) -> float:
        """Add the weighted rows of ``frames`` to the normal equations; returns their yᵀy."""
        s = self.settings
        S = self.spec.n_species
        wE, wF, wS = (math.sqrt(x) for x in (s.energy_weight, s.force_weight, s.stress_weight))
        wc = np.sqrt(np.array([f.weight for f in frames], dtype=float))  # per-configuration weights (Frame.weight)
        prs = [self._pairs(f) for f in frames]
        want_F = np.array([wF > 0 and f.forces is not None for f in frames])
        want_S = np.array([wS > 0 and f.stress is not None and f.atoms.cell.rank == 3 for f in frames])
        parts = [rows.batch(params, prs, g, gradients=bool(want_F.any() or want_S.any())) for g in gs]
        E, F, W = parts[0] if len(parts) == 1 else (np.concatenate([p[i] for p in parts], axis=-1) for i in range(3))
        th = params[gs[0].cols]  # the model's own values: rows of any one group times its parameters
        m = gs[0].size
        N = np.array([f.n_atoms for f in frames], dtype=float)
        counts = np.stack([np.bincount(p.species, minlength=S) for p in prs]).astype(float)
        e0 = self.blocks["e0"]
        rep = [self._repulsion(f, p) for f, p in zip(frames, prs)] if cached_schedule(self.spec).repulsion else None
        has_E = np.array([wE > 0 and f.energy is not None for f in frames])
        kE, kS = np.flatnonzero(has_E), np.flatnonzero(want_S)
        atom_rows = want_F[np.repeat(np.arange(len(frames)), N.astype(int))]
        nE, nF, nS = len(kE), 3 * int(atom_rows.sum()), 6 * len(kS)
        if nE + nF + nS == 0:
            return 0.0
        # X is filled in place (one batch of rows in memory, not several copies)
        X, y = np.zeros((nE + nF + nS, S + F.shape[-1])), np.empty(nE + nF + nS)
        if nE:
            X[:nE, :S], X[:nE, S:] = counts[kE], E[kE]
            X[:nE] *= wE * wc[kE, None] / N[kE, None]
            yE = np.array([frames[c].energy for c in kE])
            if rep:
                yE = yE - np.array([rep[c][0] for c in kE])
            if residual:
                yE = yE - (counts[kE] @ e0 + E[kE, :m] @ th)
            y[:nE] = wE * wc[kE] * yE / N[kE]
        if nF:
            XF = X[nE:nE + nF, S:]
            XF[:] = (F if atom_rows.all() else F[atom_rows]).reshape(nF, -1)
            kF = np.flatnonzero(want_F)
            yF = np.concatenate([frames[c].forces.reshape(-1) for c in kF])
            if rep:
                yF = yF - np.concatenate([rep[c][1].reshape(-1) for c in kF])
            if residual:
                yF = yF - XF[:, :m] @ th
            wrow = np.repeat(wF * wc[kF] / np.sqrt(N[kF]), 3 * N[kF].astype(int))[:, None]   # forces per atom, as MLIP
            XF *= wrow
            y[nE:nE + nF] = wrow[:, 0] * yF
        if nS:
            XS = X[nE + nF:, S:].reshape(len(kS), 6, -1)
            for v, (a, b) in enumerate(((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))):
                XS[:, v] = W[kS, a, b]
            yS = np.stack([frames[c].stress for c in kS]) * np.array([frames[c].atoms.get_volume() for c in kS])[:, None]
            if rep:
                yS = yS - np.stack([rep[c][2] for c in kS])
            if residual:
                yS = yS - XS[:, :, :m] @ th
            XS *= wS * wc[kS, None, None] / N[kS, None, None]
            y[nE + nF:] = (wS * wc[kS, None] * yS / N[kS, None]).reshape(-1)
        XtX += X.T @ X
        Xty += X.T @ y
        return float(y @ y)

    def _repulsion(self, f, pr):
        """Energy, forces and virial term (ASE stress × volume, Voigt) of the spec's fixed pair term on frame
        ``f``: the fit's targets are the labels minus these, as the term has no parameters."""
        key = id(f)
        if key not in self._rep:
            from ..backends.reference import repulsion

            e, g = repulsion(cached_schedule(self.spec).repulsion, pr)
            N = pr.n_atoms
            F = np.stack([np.bincount(pr.i, g[:, a], N) - np.bincount(pr.j, g[:, a], N) for a in range(3)], axis=1)
            W = g.T @ pr.r
            W = 0.5 * (W + W.T)
            self._rep[key] = (float(e.sum()), F, np.array([W[0, 0], W[1, 1], W[2, 2], W[1, 2], W[0, 2], W[0, 1]]))
        return self._rep[key]

    def _groups(self):
        from ..backends.design import groups

        return groups(cached_schedule(self.spec))

    def solve(self, group_name: str) -> float:
        """Solve ``e0`` and one group in place; returns the training loss after the solve (per configuration)."""
        XtX, Xty, yty = self._system(group_name, self.train)
        S = self.spec.n_species
        theta, cond = None, 0.0
        if self.comm.rank == 0:  # rank 0 solves; its solution goes to every rank, so the ranks stay identical
            if self.reference == "fit":
                theta, cond = solve_normal(XtX, Xty, self.settings.regularization, self.settings.ridge, free=S)
            else:  # e0 fixed: the normal equations of the group alone, with e0's part of the targets removed
                e0 = self.blocks["e0"]
                rest, cond = solve_normal(XtX[S:, S:], Xty[S:] - XtX[S:, :S] @ e0, self.settings.regularization,
                                          self.settings.ridge)
                theta = np.concatenate([e0, rest])
        theta = self.comm.bcast(theta)
        if not np.all(np.isfinite(theta)):
            raise FitError(f"the least-squares problem of {group_name} has no finite solution; raise regularization "
                           f"(now {self.settings.regularization:g})")
        if cond > 1e14:
            self._warn(f"cond {group_name}", f"{group_name}: condition number {cond:.1e}; consider a larger regularization")
        g = self._groups()[group_name]
        S = self.spec.n_species
        self.blocks["e0"] = theta[:S].copy()
        off = S
        for b in g.blocks:
            self.blocks[b.name] = theta[off:off + b.size].reshape(b.shape)
            off += b.size
        loss = (yty - 2 * theta @ Xty + theta @ XtX @ theta) / len(self.train)
        return float(max(loss, 0.0))

    def polish(self, steps: int, on_step=None) -> None:
        """Levenberg–Marquardt steps on all parameters at once (after the sweeps).

        ALS converges linearly; near the optimum a joint Gauss–Newton step converges much faster.
        The Jacobian is the design rows of every group side by side. The gauge freedom of the
        network (an invertible matrix on a bond) makes it singular, which the damping absorbs.
        """
        names = [g for g in self._groups() if g != "e0"]
        S = self.spec.n_species
        lam = 1e-8
        for it in range(steps):
            XtX, Xty, yty = self._system(names, self.train, residual=True)
            current = yty / len(self.train)
            while True:
                if self.reference == "fit":
                    delta, _ = solve_normal(XtX, Xty, lam)
                else:
                    delta = np.concatenate([np.zeros(S), solve_normal(XtX[S:, S:], Xty[S:], lam)[0]])
                # backtrack along the step before damping more: in a weakly determined direction the
                # whole step can overshoot where a shorter one along it still descends
                for scale in (1.0, 0.5, 0.25, 0.125):
                    trial = self._moved(names, scale * delta)
                    new = self.loss(self.train, Potential(self.spec, from_blocks(self.spec, trial),
                                                          backend=self.settings.backend))
                    if new < current:
                        break
                if new < current:
                    self.blocks = trial
                    lam = max(lam / 10, 1e-15)
                    break
                lam *= 10
                if lam > 1e2:
                    return
            if on_step:
                on_step(it + 1, new)
            if new < 1e-30:
                return

    def _moved(self, names, delta) -> dict:
        """The blocks moved by ``delta`` (e0 first, then the groups ``names`` in order)."""
        trial = {k: v.copy() for k, v in self.blocks.items()}
        S = self.spec.n_species
        trial["e0"] = trial["e0"] + delta[:S]
        off = S
        for name in names:
            for b in self._groups()[name].blocks:
                trial[b.name] = trial[b.name] + delta[off:off + b.size].reshape(b.shape)
                off += b.size
        return trial

    # -- losses -------------------------------------------------------------------------------------
    def loss(self, frames, pot: Potential | None = None) -> float:
        """The fit's loss (without the ridge term) per configuration, evaluated with ``pot``; each frame's
        terms are multiplied by its ``weight``."""
        s = self.settings
        pot = pot or self.potential()
        total, n = 0.0, len(frames)
        for f in self.comm.share(frames):
            r = pot.evaluate(f.atoms, forces=f.forces is not None, stress=f.stress is not None and f.atoms.cell.rank == 3)
            N, w = f.n_atoms, f.weight
            if f.energy is not None:
                total += w * s.energy_weight * ((r["energy"] - f.energy) / N) ** 2
            if f.forces is not None:
                total += w * s.force_weight * float(np.sum((r["forces"] - f.forces) ** 2)) / N
            if "stress" in r and f.stress is not None:
                total += w * s.stress_weight * float(np.sum(((r["stress"] - f.stress) * f.atoms.get_volume() / N) ** 2))
        return self.comm.sum(total) / max(n, 1)

    # -- sweeps -------------------------------------------------------------------------------------
    def _fit_e0(self):
        """Reference energies e0 (eV per atom of each species), before any core is fitted.

        ``reference_energies``: ``"fit"`` (the default) — least squares on the composition, then solved
        again with every group; ``"unary"`` — each element's lowest energy per atom among the training
        configurations of that element alone (its ground state in the data); ``"isolated"`` — the
        energies of single-atom configurations; or a table {element: eV}. All but ``"fit"`` stay fixed,
        so the ridge pulls the model towards the sum of these references where the data say nothing.
        """
        S, ref = self.spec.n_species, self.settings.reference_energies
        species = self.spec.species
        if isinstance(ref, dict):
            missing = [s for s in species if s not in ref]
            if missing:
                raise FitError(f"reference_energies lacks {', '.join(missing)}; give an energy (eV) for every "
                               f"species of the spec ({', '.join(species)})")
            self.blocks["e0"] = np.array([float(ref[s]) for s in species])
            return
        counts, E, lonely = [], [], []
        from ..io.neighbors import species_indices

        for f in self.train:  # compositions from the symbols: no neighbour list for all configurations
            if f.energy is None:
                continue
            counts.append(np.bincount(species_indices(f.atoms, species), minlength=S))
            E.append(f.energy)
            if f.n_atoms == 1:
                pr = self._pairs(f)
                lonely.append(not np.any(np.sum(pr.r ** 2, axis=1) < self.spec.r_cut ** 2))
            else:
                lonely.append(False)
        if not E:
            raise FitError("no training configuration has an energy")
        C, E, lonely = np.array(counts, dtype=float), np.array(E), np.array(lonely)
        if ref == "fit":
            self.blocks["e0"], *_ = np.linalg.lstsq(C, E, rcond=None)
            present = C.sum(axis=0) > 0
            if np.linalg.matrix_rank(C[:, present]) < present.sum():
                self._warn("e0", f"the training compositions do not determine the reference energies of "
                                 f"{', '.join(s for s, p in zip(species, present) if p)} one by one (e.g. data of "
                                 f"one fixed composition): energies of other compositions, isolated atoms included, "
                                 f"will be wrong; set reference_energies to 'isolated' (with single-atom "
                                 f"configurations in the data) or to a table of element = eV")
            return
        e0 = np.full(S, np.nan)
        for t in range(S):
            alone = (C[:, t] == C.sum(axis=1)) & (lonely if ref == "isolated" else C[:, t] > 0)
            if alone.any():
                e0[t] = np.min(E[alone] / C[alone, t])
        if np.isnan(e0).any():
            what = "single-atom configurations" if ref == "isolated" else "configurations of the element alone"
            raise FitError(f"reference_energies = {ref!r}: the training data have no {what} of "
                           f"{', '.join(s for s, v in zip(species, e0) if np.isnan(v))}; give the energies as a "
                           f"table (e.g. reference_energies = {{ {species[0]} = -3.1 }}) or use 'fit'")
        self.blocks["e0"] = e0

    def _check_data(self):
        """Warn when the data cannot determine the model: duplicate configurations, and fewer labels
        than parameters (the ridge then decides the rest, silently)."""
        from ..io.dataset import identity

        seen, dup, n_labels = set(), 0, 0
        for f in self.train:
            k = identity(f.atoms)
            if k in seen:
                dup += 1
                continue
            seen.add(k)
            n_labels += (f.energy is not None) + (3 * f.n_atoms if f.forces is not None else 0) + \
                (6 if f.stress is not None else 0)
        if dup:
            self._warn("duplicates", f"{dup} of the {len(self.train)} training configurations repeat another one "
                                     f"(same atoms, positions and cell): they add no information")
        n_params = cached_schedule(self.spec).n_params
        if n_labels < n_params:
            self._warn("underdetermined", f"the distinct training configurations hold {n_labels} labels (energies, "
                                          f"force and stress components) for {n_params} parameters: the fit is underdetermined and "
                                          f"the ridge decides the rest; add data or use a smaller spec")

    def _check_r_min(self):
        """Warn when training pairs lie below r_min, where the Chebyshev basis is extrapolated (it grows
        fast outside [r_min, r_cut]); MTP practice is r_min at about the shortest training distance."""
        d2 = [float(np.min(np.sum(p.r ** 2, axis=1))) for p in map(self._pairs, self.comm.share(self.train))
              if len(p.r)]
        d2 = self.comm.min(min(d2, default=math.inf))
        if d2 < self.spec.r_min ** 2:
            short = math.sqrt(d2)
            self._warn("r_min", f"training pairs come as close as {short:.3f} Å, below the spec's r_min "
                                f"({self.spec.r_min:g} Å), where the radial basis is extrapolated; "
                                f"set r_min at or below {math.floor(100 * short) / 100:g} Å")

    def _sweep(self, direction: str) -> list[int]:
        """The cores one sweep solves: the tour without its last core (the next sweep, going back,
        starts there)."""
        t = tour(self.spec)
        t = t if direction == "right" else t[::-1]
        return t[:-1] or t

    def _steps(self, direction: str):
        steps = []
        for k in self._sweep(direction):
            if cached_schedule(self.spec).core(k).K:
                steps.append(f"core{k}.U")
            steps.append(f"core{k}")
        return steps

    def _move_gauge(self, a: int, b: int) -> None:
        """Orthogonalise the cores on the way from core a to core b, each toward the next: the gauge
        (where a solve changes the model without touching the orthonormal rest) ends at core b."""
        s = self.settings
        way = path_between(self.spec, a, b)
        for x, y in zip(way, way[1:]):
            if y in self.spec.graph[x - 1]:  # down: y's output is x's input
                orthogonalize_input(self.spec, self.blocks, x, y)
            else:  # up: x's output is y's input (ranks may be truncated here)
                self.spec = orthogonalize_output(self.spec, self.blocks, x, s.rank_tol, s.max_rank)

    def run(self, on_sweep=None, on_polish=None) -> Potential:
        """Fit; stops after ``sweeps`` or when the validation loss stopped improving, then ``polish``
        Levenberg–Marquardt steps. Ctrl-C keeps the best model so far."""
        s = self.settings
        if s.threads:
            set_threads(s.threads)  # the kernels' OpenMP threads and BLAS (etn.backends.resolver)
        self._fit_e0()
        self._check_r_min()
        self._check_data()
        self._gauge_to_start()
        check = self.valid or self.train
        stale = 0
        try:
            for sweep in range(1, s.sweeps + 1):
                val = self._one_sweep(sweep, check)
                if self.best is None or val < self.best[0] * (1 - s.tolerance):
                    stale = 0
                else:
                    stale += 1
                if self.best is None or val < self.best[0]:
                    self.best = (val, self._last)
                if on_sweep:
                    on_sweep(self.history[-1])
                if stale >= s.patience:
                    self.stop_reason = (f"the validation loss improved by less than tolerance = {s.tolerance:g} for "
                                        f"patience = {s.patience} sweeps")
                    break
            else:
                self.stop_reason = f"reached sweeps = {s.sweeps}"
        except KeyboardInterrupt:
            self.interrupted = True
            self.stop_reason = "interrupted (Ctrl-C)"
            if self.best is None:
                raise
        else:
            self.interrupted = False
        if s.polish and not self.interrupted:
            self._polish_best(check, on_polish)
        return self._result()

    def _gauge_to_start(self) -> None:
        """Every core orthonormal toward the first one a sweep solves, the farthest first."""
        start = tour(self.spec)[0]
        far = sorted(range(1, self.spec.cores + 1), key=lambda k: -len(path_between(self.spec, start, k)))
        for k in far:
            if k != start:
                y = path_between(self.spec, k, start)[1]
                if y in self.spec.graph[k - 1]:
                    orthogonalize_input(self.spec, self.blocks, k, y)
                else:
                    orthogonalize_output(self.spec, self.blocks, k)

    def _one_sweep(self, sweep: int, check) -> float:
        """Solve each group of one sweep in turn, moving the gauge on after each core; record the sweep in
        ``history`` and return the validation (or training) loss."""
        from tqdm.auto import tqdm

        s = self.settings
        direction = "right" if sweep % 2 == 1 else "left"
        steps = self._steps(direction)
        order = self._sweep(direction) + [self._sweep("left" if direction == "right" else "right")[0]]
        # a bar updated by hand: it stays open for the validation loss after the last step
        bar = tqdm(total=len(steps), desc=f"sweep {sweep}/{s.sweeps} ({direction})", disable=not self.progress,
                   leave=True, unit="step")
        train_loss = None
        for step in steps:
            bar.set_postfix_str(step + ("" if train_loss is None else f" | train loss {train_loss:.4g}"))
            bar.update(0)
            train_loss = self.solve(step)
            group = self._groups()[step]
            k = group.core
            if group.U:
                orthogonalize_U(self.spec, self.blocks, k)
            elif self.spec.cores > 1:  # on to the next core solved (in this sweep or the next)
                self._move_gauge(k, order[order.index(k) + 1])
            if self.comm.size > 1:  # rank 0's orthogonalised blocks everywhere: no drift between ranks
                self.spec, self.blocks = self.comm.bcast((self.spec, self.blocks))
            bar.update(1)
        self._last = pot = self.potential()
        val = self.loss(check, pot)
        bar.set_postfix_str(f"train loss {train_loss:.4g} | {'validation' if self.valid else 'training'} "
                            f"loss {val:.4g}", refresh=True)
        bar.close()
        if self.history and train_loss > self.history[-1]["train_loss"] * (1 + 1e-6):
            self._warn(f"rise{sweep}", f"the training loss rose in sweep {sweep} ({self.history[-1]['train_loss']:.4g} "
                                       f"-> {train_loss:.4g}): a weakly determined system; a larger regularization "
                                       f"or fewer parameters may help")
        self.history.append(dict(sweep=sweep, direction=direction, train_loss=train_loss, valid_loss=val,
                                 n_params=cached_schedule(self.spec).n_params, bonds=[str(b) for b in self.spec.inner_bonds],
                                 seconds=time.perf_counter() - self._t0))
        return val

    def _polish_best(self, check, on_polish) -> None:
        """Levenberg–Marquardt from the best sweep; kept if it lowers the validation loss."""
        self.spec, self.blocks = self.best[1].spec, to_blocks(self.best[1])
        try:
            self.polish(self.settings.polish, on_step=on_polish)
        except KeyboardInterrupt:
            self.interrupted = True
        cand = self.potential()
        val = self.loss(check, cand)
        if val < self.best[0]:
            self.best = (val, cand)

    def _result(self) -> Potential:
        """The best model, with how the fit went in its metadata."""
        pot = self.best[1]
        self.best_sweep = next((h["sweep"] for h in self.history if h["valid_loss"] == self.best[0]), None)
        pot.metadata.update({"fit": asdict(self.settings), "reference_energies": self.reference,
                             "fit_sweeps": len(self.history), "best_sweep": self.best_sweep,
                             "stop_reason": self.stop_reason, "fit_seconds": round(time.perf_counter() - self._t0, 2),
                             "valid_loss": self.best[0]})
        return pot
