"""Extrapolation grades: MaxVol active sets over the rows of one linear parameter group.

With every other parameter group fixed, a site energy is linear in the parameters θ of one group
(:mod:`etn.backends.design`): ``V_i = x_i · θ``. The *rows* ``x_i`` of the training atoms span what the fit
has seen. An **active set** is the r of them (r = the rank of all training rows) whose matrix A has
the largest |det| (MaxVol, Goreinov–Tyrtyshnikov); the **grade** of any row x is

    γ(x) = max_j |c_j|,   c = x A⁻¹   (x written as a combination of the active rows)

so γ ≤ 1 for every training row (that is what maximal volume means) and γ > 1 says the atom's
environment lies outside what the training data span: the model extrapolates (MTP, ACE practice:
γ ≤ 2 reliable, γ > 10 unreliable).

Which rows, and why:

- **Atoms**: rows of the species-specific core (``core1`` of a tensor train, the root of a tree): it is
  the core that sees every atom's own element, so its rows split into one block per element and
  each element gets its own active set (as pacemaker does). ``x_i`` contracts the core's inputs with
  its right environment, so it depends on the full many-body environment.
- **Configurations**: the same rows summed over atoms and divided by the atom count (the row of the
  energy per atom), in one active set over all configurations.
- Rows are expressed in an orthonormal basis V of the directions the training rows span
  (eigenvalues of Σ xᵀx above ``RANK_TOL`` of the largest). Directions no training row excites are
  left out: the ridge of the fit keeps the parameters there at zero, so no energy depends on them.
  γ does not depend on V (any basis of the same span gives the same c). An element with no
  training atoms has an empty active set and its atoms get γ = inf.

An active set is tied to one model by a fingerprint of its spec and parameters and stored beside
the model file (``model.etn`` → ``model.aset``), in a checksummed text format like the model's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends.design import default_group, species_columns
from ..generator.errors import EtnError

FORMAT_VERSION = 1
MAGIC = "etn-activeset"
#: Directions whose eigenvalue of Σ xᵀx is below RANK_TOL × the largest count as not seen.
RANK_TOL = 1e-10
#: MaxVol stops when no |c| exceeds 1 + MAXVOL_TOL.
MAXVOL_TOL = 1e-10


class ActiveSetError(EtnError, ValueError):
    """An active set that cannot be used (missing, corrupt, or of another model)."""


def fingerprint(pot) -> str:
    """SHA-256 of the spec hash and the parameters (float64, little endian): ties an active set to a model."""
    h = hashlib.sha256(pot.spec.hash.encode())
    h.update(np.ascontiguousarray(pot.params, dtype="<f8").tobytes())
    return h.hexdigest()


def sidecar(model_path) -> Path:
    """Where the active set of a model file lives: ``model.etn`` → ``model.aset``."""
    return Path(model_path).with_suffix(".aset")


# -- MaxVol -----------------------------------------------------------------------------------------
def maxvol(Z: np.ndarray, tol: float = MAXVOL_TOL, max_swaps: int | None = None) -> np.ndarray:
    """Indices of r rows of ``Z`` (m × r, rank r) whose submatrix has (locally) maximal |det|:
    afterwards every row of Z is a combination of them with coefficients of modulus ≤ 1 + tol."""
    m, r = Z.shape
    if r == 0:
        return np.zeros(0, dtype=np.int64)
    if m < r:
        raise ValueError(f"maxvol needs at least as many rows ({m}) as columns ({r})")
    # start: greedy pivoted Gram–Schmidt on the rows (each step takes the row farthest from the span so far)
    R = Z.copy()
    norms = np.einsum("ij,ij->i", R, R)
    idx = []
    for _ in range(r):
        i = int(np.argmax(norms))
        idx.append(i)
        q = R[i] / np.sqrt(norms[i])
        R -= np.outer(R @ q, q)
        norms = np.einsum("ij,ij->i", R, R)
        norms[idx] = -1.0
    idx = np.array(idx, dtype=np.int64)
    max_swaps = max_swaps or 100 * r + 100
    for _ in range(3):  # a fresh solve after the rank-1 updates guards against drift
        C = np.linalg.solve(Z[idx].T, Z.T).T  # m × r: Z = C Z[idx]
        for _ in range(max_swaps):
            i, j = np.unravel_index(np.argmax(np.abs(C)), C.shape)
            cij = C[i, j]
            if abs(cij) <= 1 + tol:
                break
            u = C[i].copy()
            u[j] -= 1.0
            C -= np.outer(C[:, j], u / cij)  # Sherman–Morrison: row j of the active set becomes row i
            idx[j] = i
        C = np.linalg.solve(Z[idx].T, Z.T).T
        if np.abs(C).max() <= 1 + tol:
            break
    return idx


# -- active sets ------------------------------------------------------------------------------------
@dataclass
class Block:
    """One active set: rows of ``cols`` of the group for atoms of ``species`` (-1: all, configurations)."""

    kind: str          # "atoms" or "configs"
    species: int       # species index, or -1 for every species
    cols: np.ndarray   # columns of the group that this block reads
    V: np.ndarray      # (len(cols), r): orthonormal basis of the span of the training rows
    A: np.ndarray      # (r, r): the active rows in that basis
    origin: np.ndarray  # (r, 2): (configuration, atom) of each active row in the selection data (atom -1: a configuration row)

    def __post_init__(self):
        self._M = None

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    @property
    def M(self) -> np.ndarray:
        """V A⁻¹: γ(x) = max |x[cols] M|."""
        if self._M is None:
            self._M = np.linalg.solve(self.A.T, self.V.T).T if self.rank else self.V
        return self._M

    def grade(self, X: np.ndarray) -> np.ndarray:
        """γ of rows ``X`` (k × n of the whole group)."""
        if self.rank == 0:
            return np.full(len(X), np.inf)
        return np.abs(X[:, self.cols] @ self.M).max(axis=1) if len(X) else np.zeros(0)

    @classmethod
    def select(cls, kind, species, cols, X, origin) -> Block:
        """MaxVol over training rows ``X`` (m × n of the whole group) restricted to ``cols``."""
        Y = X[:, cols]
        if len(Y) == 0:
            return cls(kind, species, cols, np.zeros((len(cols), 0)), np.zeros((0, 0)), np.zeros((0, 2), np.int64))
        scale = np.abs(Y).max() or 1.0
        w, U = np.linalg.eigh((Y / scale).T @ (Y / scale))
        keep = w > RANK_TOL * max(w.max(), 0)
        V = U[:, keep][:, ::-1]
        Z = Y @ V
        idx = maxvol(Z)
        return cls(kind, species, cols, V, Z[idx], origin[idx])


class ActiveSet:
    """Per-species atom active sets and one configuration active set of a model's ``group``."""

    def __init__(self, fingerprint: str, group: str, blocks: list[Block], info: dict | None = None):
        self.fingerprint, self.group, self.blocks, self.info = fingerprint, group, blocks, dict(info or {})
        self.atom_blocks = {b.species: b for b in blocks if b.kind == "atoms"}
        self.config_block = next((b for b in blocks if b.kind == "configs"), None)
        self._kernel = None

    # -- grades ------------------------------------------------------------------------------------
    def grade_atoms(self, X: np.ndarray, species: np.ndarray) -> np.ndarray:
        """γ per atom from its row (N × n) and species index (N,)."""
        gamma = np.zeros(len(X))
        if -1 in self.atom_blocks:
            return self.atom_blocks[-1].grade(X)
        for s in np.unique(species):
            sel = species == s
            b = self.atom_blocks.get(int(s))
            gamma[sel] = np.inf if b is None else b.grade(X[sel])
        return gamma

    def grade_species_rows(self, R: np.ndarray, species: np.ndarray) -> np.ndarray:
        """γ per atom from rows already restricted to the columns of each atom's species (N × n_s: what
        etn_compute_graded writes; per-species active sets only)."""
        if -1 in self.atom_blocks:
            raise ActiveSetError("this active set is not per species; grade full rows (grade_atoms)")
        gamma = np.zeros(len(R))
        for s in np.unique(species):
            sel = species == s
            b = self.atom_blocks.get(int(s))
            gamma[sel] = np.inf if b is None or b.rank == 0 else np.abs(R[sel] @ b.M).max(axis=1)
        return gamma

    def kernel_blocks(self):
        """(M, rank) as etn_compute_graded takes them: the species' M = V A⁻¹ row-major one after the
        other, and each species' rank (0: no training atoms)."""
        if -1 in self.atom_blocks:
            raise ActiveSetError("this active set is not per species; the kernels grade per-species sets only")
        if self._kernel is None:
            S = max(self.atom_blocks) + 1
            rank = np.array([self.atom_blocks[s].rank if s in self.atom_blocks else 0 for s in range(S)], np.int32)
            M = [self.atom_blocks[s].M.reshape(-1) for s in range(S) if s in self.atom_blocks and rank[s]]
            self._kernel = (np.concatenate(M) if M else np.zeros(1), rank)
        return self._kernel

    def unseen(self, species) -> bool:
        """Whether any of these species indices has no training atoms (its atoms grade inf)."""
        if -1 in self.atom_blocks:
            return self.atom_blocks[-1].rank == 0
        return any(int(s) not in self.atom_blocks or self.atom_blocks[int(s)].rank == 0 for s in np.unique(species))

    def grade_config(self, X: np.ndarray) -> float:
        """γ of a configuration from its atoms' rows (N × n): of the row of its energy per atom."""
        return float(self.config_block.grade(X.mean(axis=0, keepdims=True))[0])

    # -- file ----------------------------------------------------------------------------------------
    def save(self, path) -> None:
        import json

        from ..io.modelfile import write_checksummed

        lines = [f"{MAGIC} {FORMAT_VERSION}", f"model {self.fingerprint}", f"group {self.group}",
                 f"info {json.dumps(self.info, sort_keys=True)}", f"blocks {len(self.blocks)}"]
        for b in self.blocks:
            lines.append(f"block {b.kind} {b.species} {len(b.cols)} {b.rank}")
            lines.append("cols " + " ".join(str(int(c)) for c in b.cols))
            lines.append("origin " + " ".join(f"{int(c)}:{int(a)}" for c, a in b.origin))
            lines += [" ".join(repr(float(v)) for v in row) for row in b.V]
            lines += [" ".join(repr(float(v)) for v in row) for row in b.A]
        write_checksummed(path, lines)

    @classmethod
    def load(cls, path, pot=None) -> ActiveSet:
        """Read an active set; with ``pot``, check that it belongs to that model."""
        import json

        path = Path(path)
        if not path.is_file():
            raise ActiveSetError(f"no active set {path}; make one with `etn activeset MODEL TRAINING_FILES...`")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ActiveSetError(f"{path} is not an etn active set (not text)") from None
        from ..io.modelfile import checksummed_body

        if not text.startswith(MAGIC + " "):
            raise ActiveSetError(f"{path} is not an etn active set (it does not start with '{MAGIC}')")
        body = checksummed_body(text)
        if body is None:
            raise ActiveSetError(f"{path} is truncated or corrupt (checksum); make it again with `etn activeset`")
        lines = body.split("\n")
        try:
            version = int(lines[0].split()[1])
            if version > FORMAT_VERSION:
                raise ActiveSetError(f"{path} has active-set format {version}, newer than this etn reads; upgrade etn")
            fp, group = lines[1].split()[1], lines[2].split()[1]
            info = json.loads(lines[3].partition(" ")[2])
            nb, k, blocks = int(lines[4].split()[1]), 5, []
            for _ in range(nb):
                _, kind, species, ncols, rank = lines[k].split()
                ncols, rank = int(ncols), int(rank)
                cols = np.array(lines[k + 1].split()[1:], dtype=np.int64)
                origin = np.array([o.split(":") for o in lines[k + 2].split()[1:]], dtype=np.int64).reshape(-1, 2)
                k += 3
                V = np.array([ln.split() for ln in lines[k:k + ncols]], dtype=np.float64).reshape(ncols, rank)
                A = np.array([ln.split() for ln in lines[k + ncols:k + ncols + rank]],
                             dtype=np.float64).reshape(rank, rank)
                k += ncols + rank
                blocks.append(Block(kind, int(species), cols, V, A, origin))
        except (IndexError, ValueError) as e:
            raise ActiveSetError(f"{path}: malformed content ({e}); make it again with `etn activeset`") from None
        aset = cls(fp, group, blocks, info)
        if pot is not None and fp != fingerprint(pot):
            raise ActiveSetError(f"{path} belongs to another model (fingerprint {fp[:12]}, the model's "
                                 f"{fingerprint(pot)[:12]}); make it again with `etn activeset MODEL TRAINING_FILES...`")
        return aset


# -- rows and selection ------------------------------------------------------------------------------
class Grader:
    """Rows and grades of one model: ``Grader(pot, aset).atoms(atoms)`` → γ per atom."""

    def __init__(self, pot, aset: ActiveSet | None = None, group: str | None = None, backend: str = "c"):
        self.pot = pot
        self.aset = aset
        self.group = aset.group if aset is not None else (group or default_group(pot.schedule))
        self.backend = "numpy" if backend == "numpy" else "c"
        self.cols = species_columns(pot.schedule, self.group)
        # the evaluation kernels write the rows of the default group in the same pass (etn_compute_graded)
        self.fused = self.group == default_group(pot.schedule) and self.cols is not None

    @property
    def rows_of(self):
        """The design-row kernels (built on first use: grading through the fused pass needs none)."""
        from ..backends.resolver import design

        return design(self.pot.schedule, self.backend)

    def rows(self, pairs_list) -> np.ndarray:
        """Per-atom rows (ΣN × n) of the group for a list of :class:`~etn.io.neighbors.Pairs`."""
        return self.rows_of.site_rows(self.pot.params, pairs_list, self.group)

    def _full_rows(self, atoms):
        """(full rows N × n, species) of one configuration, through the fused pass where it applies."""
        if not self.fused:
            from ..io.neighbors import pairs as make_pairs

            pr = make_pairs(atoms, self.pot.spec)
            return self.rows([pr]), pr.species
        from ..backends.design import groups

        res = self.pot.evaluate(atoms, forces=False, stress=False, grade_rows=True,
                                backend="numpy" if self.backend == "numpy" else None)
        R, species = res["grade_rows"], res["pairs"].species
        X = np.zeros((len(R), groups(self.pot.schedule)[self.group].size))
        for s, cs in enumerate(self.cols):
            sel = species == s
            X[np.ix_(sel, cs)] = R[sel]
        return X, species

    def atoms(self, atoms) -> np.ndarray:
        """γ per atom of an ASE ``Atoms``."""
        if self.fused:
            return self.pot.evaluate(atoms, forces=False, stress=False, active_set=self.aset,
                                     backend="numpy" if self.backend == "numpy" else None)["gamma"]
        X, species = self._full_rows(atoms)
        return self.aset.grade_atoms(X, species)

    def configs(self, atoms_list, progress: bool = False):
        """Per configuration: (γ per atom, configuration γ)."""
        out = []
        for atoms in _bar(atoms_list, progress, "grading"):
            X, species = self._full_rows(atoms)
            out.append((self.aset.grade_atoms(X, species), self.aset.grade_config(X)))
        return out


def _bar(items, progress, desc):
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="config", leave=False)


def build(pot, atoms_list, group: str | None = None, backend: str = "c", progress: bool = False,
          info: dict | None = None) -> ActiveSet:
    """The active set of ``pot`` on the configurations ``atoms_list`` (its training data)."""
    from ..io.neighbors import pairs as make_pairs

    g = Grader(pot, group=group, backend=backend)
    rows, species, origin, crow = [], [], [], []
    for c, atoms in enumerate(_bar(atoms_list, progress, "active set: rows")):
        pr = make_pairs(atoms, pot.spec)
        X = g.rows([pr])
        rows.append(X)
        species.append(pr.species)
        origin.append(np.stack([np.full(len(X), c), np.arange(len(X))], axis=1))
        crow.append(X.mean(axis=0))
    X = np.concatenate(rows) if rows else np.zeros((0, 0))
    species = np.concatenate(species)
    origin = np.concatenate(origin)
    n = X.shape[1]
    blocks = []
    cols = species_columns(pot.schedule, g.group)
    if cols is None:
        blocks.append(Block.select("atoms", -1, np.arange(n), X, origin))
    else:
        for s, cs in enumerate(cols):
            sel = species == s
            blocks.append(Block.select("atoms", s, cs, X[sel], origin[sel]))
    C = np.stack(crow)
    blocks.append(Block.select("configs", -1, np.arange(n), C,
                               np.stack([np.arange(len(C)), np.full(len(C), -1)], axis=1)))
    meta = {"configs": len(atoms_list), "atoms": int(len(X)), "rank_tol": RANK_TOL, "maxvol_tol": MAXVOL_TOL}
    meta.update(info or {})
    return ActiveSet(fingerprint(pot), g.group, blocks, meta)


def select(pot, aset: ActiveSet, candidates, n: int, threshold: float = 1.0 + 1e-6, backend: str = "c",
           progress: bool = False) -> list[tuple[int, float]]:
    """At most ``n`` candidate configurations that extend the atom active sets most, in the order picked.

    Greedy MaxVol: take the candidate atom of largest γ (above ``threshold``); its configuration is
    picked and all its atoms enter the active set (each swap multiplies |det A| by the |c| it
    replaces), which lowers the grades of similar candidates; repeat. Duplicates (the same
    numbers, positions, cell and pbc to 1e-6 Å) count once. Returns ``[(candidate index, γ at pick)]``.
    """
    from ..io.dataset import identity
    from ..io.neighbors import pairs as make_pairs

    g = Grader(pot, aset, backend=backend)
    blocks = {s: Block(b.kind, b.species, b.cols, b.V, b.A.copy(), b.origin) for s, b in aset.atom_blocks.items()}
    seen, Y, owner, unseen = set(), {s: [] for s in blocks}, {s: [] for s in blocks}, []
    for c, atoms in enumerate(_bar(candidates, progress, "candidates: rows")):
        k = identity(atoms)
        if k in seen:
            continue
        seen.add(k)
        pr = make_pairs(atoms, pot.spec)
        X = g.rows([pr])
        if aset.unseen(pr.species):
            unseen.append(c)
            continue
        for s in blocks:
            sel = slice(None) if s == -1 else pr.species == s
            Y[s].append(X[sel][:, blocks[s].cols] @ blocks[s].V)
            owner[s].append(np.full(len(Y[s][-1]), c))
    Y = {s: np.concatenate(v) if v else np.zeros((0, blocks[s].rank)) for s, v in Y.items()}
    owner = {s: np.concatenate(v) if v else np.zeros(0, np.int64) for s, v in owner.items()}
    picked = [(c, float("inf")) for c in unseen[:n]]
    taken = {c for c, _ in picked}
    C = {s: (Y[s] @ np.linalg.inv(blocks[s].A) if blocks[s].rank else np.zeros((len(Y[s]), 0))) for s in blocks}
    while len(picked) < n:
        best = (threshold, None, None)
        for s, Cs in C.items():
            if Cs.size:
                live = ~np.isin(owner[s], list(taken))
                if live.any():
                    gam = np.where(live, np.abs(Cs).max(axis=1), 0.0)
                    i = int(np.argmax(gam))
                    if gam[i] > best[0]:
                        best = (float(gam[i]), s, i)
        gmax, s, i = best
        if s is None:
            break
        c = int(owner[s][i])
        picked.append((c, gmax))
        taken.add(c)
        for s2 in blocks:  # the picked configuration's atoms enter the active sets (MaxVol swaps)
            mine = np.flatnonzero(owner[s2] == c)
            for _ in range(10 * max(blocks[s2].rank, 1)):
                if not mine.size or not C[s2].size:
                    break
                sub = np.abs(C[s2][mine])
                a, j = np.unravel_index(np.argmax(sub), sub.shape)
                if sub[a, j] <= 1 + MAXVOL_TOL:
                    break
                blocks[s2].A[j] = Y[s2][mine[a]]
                C[s2] = np.linalg.solve(blocks[s2].A.T, Y[s2].T).T
    return picked
