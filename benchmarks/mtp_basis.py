"""An untrained MTP of a given level, derived here, for the peer runs of the benchmarks.

motep ships no untrained level-16 `.mtp`, so the benchmarks build one. The basis follows the MTP
definition (Shapeev 2016): moment tensors M_{mu,nu} = sum_j f_mu(r_ij) r̂_ij^{⊗nu} of level
2 + 4 mu + nu, and basis functions that are scalar contractions of products of them, with the
level of a product the sum of its factors' levels, up to `level`.

Contractions are built pairwise, each one absorbing the lower-rank operand completely, so every
intermediate is a symmetric tensor again and is stored by its distinct components (x^a y^b z^c),
with the integer multinomial multiplicities that the `.mtp` format's `alpha_index_times` carries.
Scalars that are equal as functions (different contraction orders) are merged by evaluating all
candidates on random environments; what is left is linearly independent (tests/test_mtp_basis.py).

Level 16 gives 4 radial functions and 106 basis functions: 4 + 106 + 16·4·8 = 622 parameters for
four species. The level-16 file distributed with MLIP has 92 (608 parameters); it keeps a subset of
these contractions by a rule that is not stated with it, so this peer is 2% larger than that one.

    python benchmarks/mtp_basis.py 16      # prints counts; write_mtp() writes a file
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np


def _exps(n):
    """Exponents (a, b, c) with a + b + c = n, in a fixed order."""
    return [(a, b, n - a - b) for a in range(n, -1, -1) for b in range(n - a, -1, -1)]


def _multinomial(e):
    return math.factorial(sum(e)) // math.prod(math.factorial(x) for x in e)


@dataclass
class Node:
    level: int
    rank: int
    basic: tuple | None = None          # (mu, nu) for a moment tensor
    parts: tuple = ()                   # (A, B) for a contraction of A with B (B absorbed)
    values: np.ndarray = field(default=None, repr=False)   # components on the probe environments


class Basis:
    """Moment tensors, their contractions and the scalar basis of an MTP of one level."""

    def __init__(self, level: int, n_probe: int = 24, seed: int = 0):
        self.level = level
        self.n_mu = (level - 2) // 4 + 1
        rng = np.random.default_rng(seed)
        # probe environments: random neighbours with random radial values for every mu
        self._probe = [(rng.normal(size=(9, 3)), rng.normal(size=(self.n_mu, 9))) for _ in range(n_probe)]
        self.nodes: list[Node] = []
        for mu in range(self.n_mu):
            for nu in range(0, level - 2 - 4 * mu + 1):
                self._add(Node(2 + 4 * mu + nu, nu, basic=(mu, nu)))
        self.scalars = self._close()

    # ---- numeric values of components on the probes, used to merge equal functions
    def _basic_values(self, mu, nu):
        out = []
        for r, f in self._probe:
            u = r / np.linalg.norm(r, axis=1, keepdims=True)
            out.append([np.sum(f[mu] * u[:, 0] ** a * u[:, 1] ** b * u[:, 2] ** c) for a, b, c in _exps(nu)])
        return np.array(out)

    @staticmethod
    def _contract_values(A, B, p, q):
        """Components of A (rank p) contracted with B (rank q <= p) over all of B's indices."""
        n = p - q
        ia = {e: i for i, e in enumerate(_exps(p))}
        out = np.zeros((A.shape[0], len(_exps(n))))
        for i, e1 in enumerate(_exps(n)):
            for j, f in enumerate(_exps(q)):
                out[:, i] += _multinomial(f) * A[:, ia[tuple(x + y for x, y in zip(e1, f))]] * B[:, j]
        return out

    def _add(self, node):
        if node.basic:
            node.values = self._basic_values(*node.basic)
        else:
            A, B = node.parts
            node.values = self._contract_values(A.values, B.values, A.rank, B.rank)
        self.nodes.append(node)
        return node

    def _close(self):
        """All contractions up to the level, merging equal functions; returns the scalar nodes."""
        L = self.level
        useful = lambda lev, rank: rank == 0 or lev + 2 + rank <= L   # can still reach a scalar
        pool = [n for n in self.nodes if useful(n.level, n.rank)]
        seen = {}
        for n in pool:
            seen.setdefault(self._key(n), n)
        frontier = list(pool)
        while frontier:
            new = []
            for A in list(pool):
                for B in frontier:
                    for X, Y in ((A, B), (B, A)):
                        if X.rank < Y.rank or X.level + Y.level > L:
                            continue
                        if X.rank == Y.rank and X.rank == 0 and X is not Y and id(X) > id(Y):
                            continue
                        lev, rank = X.level + Y.level, X.rank - Y.rank
                        if not useful(lev, rank):
                            continue
                        node = Node(lev, rank, parts=(X, Y))
                        node.values = self._contract_values(X.values, Y.values, X.rank, Y.rank)
                        key = self._key(node)
                        if key in seen:
                            old = seen[key]
                            if node.level < old.level:
                                raise AssertionError("equal functions of different levels")
                            continue
                        seen[key] = node
                        self.nodes.append(node)
                        new.append(node)
            pool += new
            frontier = new
        return [n for n in pool if n.rank == 0 and n.level <= L]

    @staticmethod
    def _key(node):
        v = node.values
        return (node.rank, tuple(np.round(v.ravel() / (np.abs(v).max() + 1e-300), 9)))

    # ---- the .mtp tables
    def tables(self):
        """alpha_index_basic, alpha_index_times, alpha_moment_mapping for the scalar basis."""
        needed = []
        def visit(n):
            if n in needed:
                return
            for p in n.parts:
                visit(p)
            needed.append(n)
        for s in sorted(self.scalars, key=lambda n: (n.level, self.nodes.index(n))):
            visit(s)
        basic = [n for n in needed if n.basic]
        inter = [n for n in needed if not n.basic]
        index, rows_basic, rows_times = {}, [], []
        for n in basic:
            mu, nu = n.basic
            for e in _exps(nu):
                index[id(n), e] = len(rows_basic)
                rows_basic.append((mu, *e))
        k = len(rows_basic)
        for n in inter:
            for e in _exps(n.rank):
                index[id(n), e] = k
                k += 1
        for n in inter:
            A, B = n.parts
            for e1 in _exps(n.rank):
                for f in _exps(B.rank):
                    ea = tuple(x + y for x, y in zip(e1, f))
                    rows_times.append((index[id(A), ea], index[id(B), f], _multinomial(f), index[id(n), e1]))
        mapping = [index[id(s), (0, 0, 0)] for s in sorted(self.scalars, key=lambda n: (n.level, self.nodes.index(n)))]
        return rows_basic, rows_times, mapping, k


def write_mtp(path, level: int, species_count: int, r_min: float, r_cut: float, radial_basis_size: int = 8):
    """Write an untrained `.mtp` of this level (coefficients left for motep to initialise)."""
    b = Basis(level)
    basic, times, mapping, count = b.tables()
    fmt = lambda rows: "{" + ", ".join("{" + ", ".join(str(x) for x in r) + "}" for r in rows) + "}"
    with open(path, "w") as fh:
        fh.write("MTP\nversion = 1.1.0\npotential_name = MTP1m\n")
        fh.write(f"species_count = {species_count}\npotential_tag = \n")
        fh.write(f"radial_basis_type = RBChebyshev\n\tmin_dist = {r_min}\n\tmax_dist = {r_cut}\n")
        fh.write(f"\tradial_basis_size = {radial_basis_size}\n\tradial_funcs_count = {b.n_mu}\n")
        fh.write(f"alpha_moments_count = {count}\n")
        fh.write(f"alpha_index_basic_count = {len(basic)}\nalpha_index_basic = {fmt(basic)}\n")
        fh.write(f"alpha_index_times_count = {len(times)}\nalpha_index_times = {fmt(times)}\n")
        fh.write(f"alpha_scalar_moments = {len(mapping)}\n")
        fh.write("alpha_moment_mapping = {" + ", ".join(str(m) for m in mapping) + "}\n")
    return b


if __name__ == "__main__":
    level = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    b = Basis(level)
    basic, times, mapping, count = b.tables()
    print(f"level {level}: {b.n_mu} radial functions, {len(mapping)} basis functions, {count} moment "
          f"components ({len(basic)} basic), {len(times)} products")
