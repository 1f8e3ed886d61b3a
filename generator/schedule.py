"""Contraction schedule: everything a backend needs to evaluate one spec, derived exactly.

``schedule(spec)`` is pure and deterministic. The result is JSON-serialisable
(``Schedule.to_json()``) and holds

* ``sh``: per ``(l, m)`` the exact monomials of the real solid harmonic ``R_lm`` and of its
  gradient (see :mod:`etn.generator.sph`);
* ``features``: the layout of ``A_i[c, l, m]`` (channels per ``l``, offsets);
* ``cores``: per core ``k`` its two ``inputs`` (``"A"`` = the features, or a bond index: see
  :attr:`Spec.graph`) and its admissible paths ``(L_in, l, L_out)``: irrep ``L_in`` of the first
  input (``h_in``) times irrep ``l`` of the second (``B``: the features, compressed or not, or a
  bond) into irrep ``L_out`` of bond k; each path with its non-zero real CG entries
  ``(M_in, m, M_out, exact, float)``, the parameter block, the FLOPs of the three contraction orders
  and the one chosen. A core with two feature inputs keeps the paths with ``L_in <= l`` only (A ⊗ A
  is symmetric);
* ``params``: the flat parameter vector's blocks (name, shape, offset, the core they belong to and
  the ``group`` a least-squares step solves them in: ``e0``, ``core{k}``, ``core{k}.U``);
* ``flops``: forward and backward FLOPs per atom as ``per_atom + per_pair * n_neighbours``.

Contraction orders of one path (``n_c`` = channels, ``r_in``/``r_out`` = ranks, ``nnz`` = CG non-zeros)::

    "hA": T[a_in, c, M_out] = Σ C h[a_in, M_in] A[c, m];   h_out += Σ_{a_in, c} g T
          2 nnz r_in n_c + 2 r_in n_c r_out (2 L_out + 1)
    "gh": W[c, a_out, M_in] = Σ_{a_in} g h;                 h_out += Σ_c Σ C W A
          2 r_in n_c r_out (2 L_in + 1) + 2 nnz n_c r_out
    "gA": X[a_in, a_out, m] = Σ_c g A;                      h_out += Σ_{a_in} Σ C h X
          2 r_in n_c r_out (2 l + 1) + 2 nnz r_in r_out

Their adjoints (the backward pass, ``bwd_flops``) as the C evaluation computes them, which keeps the gA
paths' X (cores k > 1) and the gh paths' W from the forward pass; core 1 has no ρ_in to form::

    "hA": dT = Σ_b g ρ;  dB, ρ_in from Σ C      2 r_in n_c r_out (2 L_out + 1) + (2 | 4) nnz r_in n_c
    "gh": dB, dW from Σ C;  ρ_in = Σ g dW       (2 | 4) nnz n_c r_out + (0 | 2 r_in n_c r_out (2 L_in + 1))
    "gA": dX, ρ_in from Σ C;  dB = Σ g dX       2 r_in n_c r_out (2 l + 1) + (2 | 4) nnz r_in r_out

A path's order is the one with the fewest forward + backward FLOPs (energies and forces), ties broken by
the forward FLOPs.

Folding. A compressing core contracts B_k = U_k^T A; since the model is linear in U_k, the same core
with n_c = C channels and blocks g'[a, c, b] = Σ_K U_k[l, c, K] g[a, K, b] gives the same site energies.
The compression costs 2 C K (2l + 1) per l and atom each way, which a core with few or small paths
(the chain's ends, r_in or r_out = 1) does not earn back. ``Core.fold`` says that the C evaluation runs
the core folded, with ``Core.folded``: its paths with n_c = C and orders chosen for that; the evaluation
forms g' once per call. The parameters, the design-row kernels and the CUDA kernels keep the compressed
form; ``flops`` counts the C evaluation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from .cg import admissible, real_cg
from .sph import monomials, solid_harmonic, solid_harmonic_grad
from .spec import FEATURES, Spec

ORDERS = ("hA", "gh", "gA")
SCHEDULE_VERSION = 4


@dataclass(frozen=True)
class CGEntry:
    M_in: int
    m: int
    M_out: int
    exact: str
    value: float


@dataclass(frozen=True)
class Path:
    L_in: int
    l: int
    L_out: int
    r_in: int
    n_c: int
    r_out: int
    cg: tuple[CGEntry, ...]
    param: str
    flops: dict  # forward FLOPs per order
    bwd_flops: dict  # backward FLOPs per order
    order: str

    @property
    def nnz(self) -> int:
        return len(self.cg)


@dataclass(frozen=True)
class Core:
    k: int
    species_specific: bool
    K: int
    compress: tuple[str, ...]
    paths: tuple[Path, ...]
    fold: bool = False  # the C evaluation multiplies U_k into the path blocks (see the module notes)
    folded: tuple[Path, ...] = ()  # the paths as the folded evaluation runs them: n_c = C channels
    inputs: tuple = ()  # (first, second): "A" or a bond index (Spec.graph); the output is bond k

    @property
    def constant_input(self) -> bool:
        """The first input is the constant scalar (bond 0): there is no ρ_in to form."""
        return self.inputs[0] == 0


@dataclass(frozen=True)
class Term:
    """One irrep of a bond: L, its rank, and its offset in the bond's state (rank × (2L + 1) numbers)."""

    L: int
    rank: int
    offset: int


@dataclass(frozen=True)
class Bond:
    """Bond b_k: the output of core k (b_0 the constant, b_n the network's output)."""

    k: int
    irreps: str
    terms: tuple[Term, ...]
    size: int


@dataclass(frozen=True)
class Cost:
    """FLOPs per atom: per_atom + per_pair × (number of neighbours)."""

    per_atom: int
    per_pair: int


@dataclass(frozen=True)
class Flops:
    forward: Cost  # energies
    backward: Cost  # gradients


@dataclass(frozen=True)
class Buffers:
    """Numbers per atom the C evaluation holds: features, compressed features, bond states, path temporaries."""

    features: int
    compressed_features: int
    h: tuple[int, ...]
    h_total: int
    path_temp: int


@dataclass(frozen=True)
class Block:
    name: str
    shape: tuple[int, ...]
    offset: int
    core: int = 0  # 0: e0
    group: str = "e0"  # the least-squares group (etn.backends.design.groups)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Schedule:
    spec: Spec
    sh: tuple
    features: dict
    bonds: tuple[Bond, ...]
    cores: tuple[Core, ...]
    params: tuple[Block, ...]
    flops: Flops
    buffers: Buffers
    repulsion: dict | None = None
    version: int = SCHEDULE_VERSION
    _blocks: dict = field(default=None, compare=False, repr=False)

    @property
    def n_params(self) -> int:
        return sum(b.size for b in self.params)

    def core(self, k: int) -> Core:
        """Core k (1-based, as in the maths and the block names: ``core{k}``)."""
        if not 1 <= k <= len(self.cores):
            raise IndexError(f"core {k}: this schedule has cores 1 … {len(self.cores)}")
        return self.cores[k - 1]

    def group_blocks(self) -> dict[str, tuple[Block, ...]]:
        """Blocks per least-squares group, in parameter order: ``e0``, then per core ``core{k}.U``
        (compressed cores) and ``core{k}``."""
        out: dict[str, list] = {}
        for b in self.params:
            out.setdefault(b.group, []).append(b)
        return {g: tuple(bs) for g, bs in out.items()}

    def block(self, name: str) -> Block:
        if self._blocks is None:
            object.__setattr__(self, "_blocks", {b.name: b for b in self.params})
        return self._blocks[name]

    def to_dict(self) -> dict:
        d = {
            "version": self.version, "spec": self.spec.to_dict(), "spec_hash": self.spec.hash,
            "sh": list(self.sh), "features": self.features, "bonds": [asdict(b) for b in self.bonds],
            "cores": [asdict(c) for c in self.cores],
            "params": [asdict(b) | {"size": b.size} for b in self.params],
            "n_params": self.n_params, "flops": asdict(self.flops), "buffers": asdict(self.buffers),
        }
        if self.repulsion:
            d["repulsion"] = self.repulsion
        return json.loads(json.dumps(d))  # tuples -> lists, a plain JSON tree

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)


def _mono(poly) -> list:
    return [[str(c), float(c), list(e)] for c, e in monomials(poly)]


def _sh_table(l_max: int) -> tuple:
    rows = []
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            rows.append({"l": l, "m": m, "R": _mono(solid_harmonic(l, m)),
                         "dR": [_mono(p) for p in solid_harmonic_grad(l, m)]})
    return tuple(rows)


def _path_flops(r_in, n_c, r_out, L_in, l, L_out, nnz) -> dict:
    return {
        "hA": 2 * nnz * r_in * n_c + 2 * r_in * n_c * r_out * (2 * L_out + 1),
        "gh": 2 * r_in * n_c * r_out * (2 * L_in + 1) + 2 * nnz * n_c * r_out,
        "gA": 2 * r_in * n_c * r_out * (2 * l + 1) + 2 * nnz * r_in * r_out,
    }


def _path_bwd_flops(r_in, n_c, r_out, L_in, l, L_out, nnz, constant: bool) -> dict:
    cg = 2 if constant else 4  # a constant first input: dB only; otherwise dB and ρ_in from each CG entry
    return {
        "hA": 2 * r_in * n_c * r_out * (2 * L_out + 1) + cg * nnz * r_in * n_c,
        "gh": cg * nnz * n_c * r_out + (0 if constant else 2 * r_in * n_c * r_out * (2 * L_in + 1)),
        "gA": 2 * r_in * n_c * r_out * (2 * l + 1) + cg * nnz * r_in * r_out,
    }


def _path(L_in, l, L_out, r_in, n_c, r_out, cg, name, constant: bool) -> Path:
    fl = _path_flops(r_in, n_c, r_out, L_in, l, L_out, len(cg))
    bw = _path_bwd_flops(r_in, n_c, r_out, L_in, l, L_out, len(cg), constant)
    order = min(ORDERS, key=lambda o_: (fl[o_] + bw[o_], fl[o_], ORDERS.index(o_)))
    return Path(L_in, l, L_out, r_in, n_c, r_out, cg, name, fl, bw, order)


def schedule(spec: Spec) -> Schedule:
    """Derive the contraction schedule of ``spec`` (pure; sympy does the exact work): the feature layout,
    the bonds, per core (in graph order) its paths and parameter blocks, then the FLOPs and buffers."""
    sh = _sh_table(spec.l_max)
    features = _features(spec)
    bonds = _bonds(spec)
    blocks = _Blocks()
    blocks.add("e0", (spec.n_species,))
    cores = tuple(_core(spec, k, blocks) for k in range(1, spec.cores + 1))
    return Schedule(spec, sh, features, bonds, cores, tuple(blocks.list), _flops(spec, sh, cores),
                    _buffers(spec, features, bonds, cores), _repulsion(spec))


def _features(spec: Spec) -> dict:
    """The layout of A_i[c, l, m]: per l its channels (C + 1 for l = 0: the constant) and offset."""
    chan = [spec.channels(l) for l in range(spec.l_max + 1)]
    offs, o = [], 0
    for l in range(spec.l_max + 1):
        offs.append(o)
        o += chan[l] * (2 * l + 1)
    return {"n_sh": (spec.l_max + 1) ** 2, "channels": chan, "offsets": offs, "size": o,
            "constant_channel": spec.n_channels, "channel_of": "c = species_index(neighbour) * n_radial + n"}


def _bonds(spec: Spec) -> tuple[Bond, ...]:
    """Bonds b_0 (the constant) … b_n (the output): per irrep its rank and offset in the bond's state."""
    bonds = []
    for k in range(spec.cores + 1):
        b, off, terms = spec.bond(k), 0, []
        for L, r in b.terms:
            terms.append(Term(L, r, off))
            off += r * (2 * L + 1)
        bonds.append(Bond(k, str(b), tuple(terms), off))
    return tuple(bonds)


class _Blocks:
    """The flat parameter vector, block by block."""

    def __init__(self):
        self.list, self.off = [], 0

    def add(self, name, shape, core=0, group="e0"):
        self.list.append(Block(name, tuple(shape), self.off, core, group))
        self.off += self.list[-1].size


def _core(spec: Spec, k: int, blocks: _Blocks) -> Core:
    """Core k: its channel factor (if compressed), its admissible paths between its two inputs and its bond
    (with their exact CG entries and blocks), and whether the C evaluation runs it folded."""
    K, (x, y) = spec.K(k), spec.graph[k - 1]
    chan = [spec.channels(l) for l in range(spec.l_max + 1)]
    species_specific, constant = k == spec.species_core, x == 0

    def terms(v, K=0):  # (L, dimension) of one input
        if v == FEATURES:
            return [(l, K or chan[l]) for l in range(spec.l_max + 1)]
        return list(spec.bond(v).terms)

    compress = []
    if K:
        for l in range(spec.l_max + 1):
            blocks.add(f"core{k}.U.l{l}", (chan[l], K), k, f"core{k}.U")
            compress.append(f"core{k}.U.l{l}")
    paths, folded = [], []
    for L_in, r_in in terms(x):
        for l, n_c in terms(y, K):
            for L_out, r_out in spec.bond(k).terms:
                if not admissible(L_in, l, L_out) or (x == y == FEATURES and L_in > l):
                    continue
                cg = tuple(
                    CGEntry(M_in, m, M_out, str(v), float(v))
                    for (M_out, M_in, m), v in sorted(real_cg(L_in, l, L_out).items(), key=lambda t: (t[0][1], t[0][2], t[0][0]))
                )
                name = f"core{k}.path{L_in}_{l}_{L_out}"
                blocks.add(name, ((spec.n_species,) if species_specific else ()) + (r_in, n_c, r_out), k, f"core{k}")
                paths.append(_path(L_in, l, L_out, r_in, n_c, r_out, cg, name, constant))
                if K:
                    folded.append(_path(L_in, l, L_out, r_in, chan[l], r_out, cg, name, constant))
    fold = bool(K) and _cost(folded) < _compress_flops(spec, K) + _cost(paths)
    return Core(k, species_specific, K, tuple(compress), tuple(paths), fold, tuple(folded) if fold else (), (x, y))


def _cost(paths) -> int:
    return sum(p.flops[p.order] + p.bwd_flops[p.order] for p in paths)


def _compress_flops(spec: Spec, K: int) -> int:
    """Forward + backward FLOPs per atom of a channel factor: B = U^T A and dA += U dB."""
    return 2 * sum(2 * spec.channels(l) * K * (2 * l + 1) for l in range(spec.l_max + 1)) if K else 0


def _flops(spec: Spec, sh, cores) -> Flops:
    """Forward and backward FLOPs per atom as the C evaluation computes them: per_atom + per_pair × n."""
    fwd_atom = bwd_atom = 0
    for c in cores:
        if c.K and not c.fold:
            fwd_atom += _compress_flops(spec, c.K) // 2
            bwd_atom += _compress_flops(spec, c.K) // 2
        run = c.folded if c.fold else c.paths
        fwd_atom += sum(p.flops[p.order] for p in run)
        bwd_atom += sum(p.bwd_flops[p.order] for p in run)
    Nr, n_sh = spec.n_radial, (spec.l_max + 1) ** 2
    sh_terms = sum(len(r["R"]) for r in sh)
    # ∇(Σ_s G_s Y_s) as the kernels form it: P's monomial coefficients Σ_s coef G_s, then e_a c_e u^(e-a)
    monos = {tuple(e) for r in sh if r["l"] for _, _, e in r["R"]}
    grad_terms = sum(1 for e in monos for a in range(3) if e[a])
    # per pair: radial basis (~8 per n), SH monomials, scatter Q_n Y_lm into A
    fwd_pair = 8 * Nr + 2 * sh_terms + 2 * Nr * n_sh
    # backward per atom (above): the paths' adjoints (the CUDA kernels form X and W once more) and, for
    # the cores not folded, the expansion dA += U dB as much as the compression; per pair (the C
    # evaluation keeps Q, Q' and Y from the forward pass, the CUDA kernels form them once more):
    # Σ_n dA Q_n and Σ_n dA Q'_n, Σ_s G_s ∇Y_s by monomials with its l Y u term, Σ_s GD_s Y_s, then the
    # 3-vector assembly
    bwd_pair = 4 * Nr * n_sh + 2 * sh_terms + 2 * grad_terms + 3 * n_sh + 2 * n_sh + 12
    return Flops(Cost(fwd_atom, fwd_pair), Cost(bwd_atom, bwd_pair))


def _buffers(spec: Spec, features, bonds, cores) -> Buffers:
    """Numbers per atom: features, compressed features, bond states, the largest path temporary."""
    tmp = 0
    for c in cores:
        for p in c.paths + c.folded:
            tmp = max(tmp, {"hA": p.r_in * p.n_c * (2 * p.L_out + 1),
                            "gh": p.n_c * p.r_out * (2 * p.L_in + 1),
                            "gA": p.r_in * p.r_out * (2 * p.l + 1)}[p.order])
    comp_size = max((spec.K(k) * features["n_sh"] for k in range(1, spec.cores + 1)), default=0)
    return Buffers(features["size"], comp_size, tuple(b.size for b in bonds), sum(b.size for b in bonds), tmp)


@lru_cache(maxsize=32)
def cached_schedule(spec: Spec) -> Schedule:
    """The schedule of ``spec``, derived once per process."""
    return schedule(spec)


#: Ziegler–Biersack–Littmark universal screening function Φ(x) = Σ_k c_k exp(-d_k x), x = r / a,
#: a = 0.46850 Å / (Z_i^0.23 + Z_j^0.23) (The Stopping and Range of Ions in Solids, 1985)
ZBL_PHI = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))
ZBL_A0 = 0.46850
#: e² / (4π ε0) in eV Å (CODATA 2018: 14.399645 eV Å)
COULOMB = 14.399645


def _repulsion(spec: Spec) -> dict | None:
    """The pair term of the spec: for every pair of species (s, t) the ZBL prefactor Z_s Z_t e²/(4π ε0)
    (eV Å) and inverse screening length 1/a (1/Å), and the switching interval [r_inner, r_outer]
    (r_outer = r_min: the term vanishes, with its first two derivatives, where the fitted range
    starts). E = Σ_{i<j} φ(r_ij) S(r_ij), φ(r) = (Z_i Z_j e²/r) Φ(r/a), S = 1 - x³(10 - 15x + 6x²),
    x = (r - r_inner)/(r_outer - r_inner) clipped to [0, 1]."""
    if spec.repulsion == "none":
        return None
    from ase.data import atomic_numbers

    from .spec import ZBL_INNER

    Z = [atomic_numbers[s] for s in spec.species]
    return {"kind": spec.repulsion, "r_inner": ZBL_INNER * spec.r_min, "r_outer": spec.r_min,
            "phi": [list(t) for t in ZBL_PHI],
            "prefactor": [[COULOMB * zi * zj for zj in Z] for zi in Z],
            "inverse_screening": [[(zi ** 0.23 + zj ** 0.23) / ZBL_A0 for zj in Z] for zi in Z]}
