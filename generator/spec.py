"""Model specification: what one ETN potential is, before any parameter exists.

A spec is written as TOML (top-level keys, or a ``[model]`` table) or built in Python::

    species     = ["Nb", "Mo", "Ta", "W"]   # element symbols; order = parameter order
    r_min       = 1.8                       # Å, start of the radial basis' interval
    r_cut       = 5.0                       # Å, cutoff radius
    n_radial    = 6                         # N_r, radial functions per neighbour species
    l_max       = 3                         # largest l of the features A[c, l, m]
    topology    = "tensor_train"            # network topology: "tensor_train", "tree" or "network"
    cores       = 3                         # n, number of cores (coupling nodes)
    bonds       = ["4x0 + 2x1 + 2x2", "4x0 + 2x1"]   # the n-1 inner bonds b_1 … b_{n-1}: rank x L
    output      = "1x0"                     # irreps of the last core's output: "1x0" = the site energy
    compression = 0                         # K per core (int or list; 0 = none)
    dtype       = "float64"                 # or "float32"
    repulsion   = "zbl"                     # or "none" (default): a ZBL pair term below r_min

Bonds are numbered k = 0 … n everywhere: b_k is the output of core k, b_0 the constant scalar 1 and b_n
the output (``output``). The file lists the free ones, b_1 … b_{n-1}, under ``bonds``; in Python they
are ``Spec.inner_bonds``, and ``Spec.bonds[k]`` (as ``Schedule.bonds[k]``) is bond k.

:class:`Spec` is frozen and validated on construction; ``Spec.hash`` is a canonical SHA-256 of its
normalised content (the key of generated code and compiled kernels).

Topology is data: :attr:`Spec.graph` gives every core's two inputs, each the features ``A`` of the
centre atom or an earlier core's output bond (``0`` is the constant scalar 1). The ``topology`` key
names the builder of that graph:

* ``tensor_train``: core k couples bond k-1 with ``A`` (core 1: the constant with ``A``); degree n.
* ``tree``: a balanced binary tree (hierarchical Tucker): d = (n + 1) / 2 leaf cores (constant, A)
  map the features into bonds, and n - d inner cores couple two bonds each, paired level by level
  (n = 7: leaves 1-4, core 5 = (bond 1, bond 2), core 6 = (bond 3, bond 4), core 7 = (bond 5,
  bond 6)); degree d.
* ``network``: the graph as written in ``network``: one ``[first, second]`` pair per core, each
  ``"A"`` or a bond index (``[["A", "A"], ["A", "A"], [1, 2]]`` couples the features pairwise in
  cores 1 and 2); every inner bond feeds exactly one later core (a tree).

One core is species-specific (its blocks have a leading species index): core 1 of a tensor train,
the root (core n) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EtnError

TOPOLOGIES = ("tensor_train", "tree", "network")
#: the input of a core that is the centre atom's features A[c, l, m] (other inputs are bond indices)
FEATURES = "A"
DTYPES = ("float64", "float32")
KEYS = ("species", "r_min", "r_cut", "n_radial", "l_max", "topology", "network", "cores", "bonds", "output",
        "compression", "dtype", "repulsion")
SCALAR = "1x0"
REPULSIONS = ("none", "zbl")
#: the ZBL term is switched on over [ZBL_INNER * r_min, r_min]: whole below, none from r_min on
ZBL_INNER = 0.75
REQUIRED = ("species", "r_cut", "n_radial", "l_max", "cores")
#: Bounds on the sizes a spec may ask for: beyond them the exact symbolic layer takes minutes to hours
#: (l_max), per-atom temporaries outgrow a thread's stack (ranks), or the neighbour lists of
#: condensed matter run to thousands of pairs per atom (r_cut).
LIMITS = {"l_max": 8, "n_radial": 32, "cores": 8, "rank": 64, "r_cut": 15.0}


class SpecError(EtnError, ValueError):
    """A model spec is malformed; the message names the field and what to do."""


@dataclass(frozen=True, order=True)
class Irreps:
    """Irreps of one bond: ``((L, rank), …)`` sorted by ``L``; written ``"4x0 + 2x1"``."""

    terms: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str | dict | Irreps, where: str = "bond") -> Irreps:
        if isinstance(text, Irreps):
            return text
        if isinstance(text, dict):
            items = [(_int(L, f"{where}: L"), _int(r, f"{where}: rank of L={L}")) for L, r in text.items()]
        elif isinstance(text, str):
            items = []
            for part in text.split("+"):
                mt = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*(e?)\s*", part)
                if not mt:
                    raise SpecError(f"{where}: cannot read {part.strip()!r} in {text!r}; write 'RANKxL' terms "
                                    f"joined by '+', e.g. '4x0 + 2x1 + 2x2'")
                items.append((int(mt.group(2)), int(mt.group(1))))
        else:
            raise SpecError(f"{where}: expected a string like '4x0 + 2x1', got {text!r}")
        seen = set()
        for L, r in items:
            if L in seen:
                raise SpecError(f"{where}: L={L} appears twice in {text!r}; give each L once with its total rank")
            seen.add(L)
            if r < 1 or r > LIMITS["rank"]:
                raise SpecError(f"{where}: rank of L={L} must be between 1 and {LIMITS['rank']}, got {r}")
            if L < 0 or L > 2 * LIMITS["l_max"]:
                raise SpecError(f"{where}: L must be between 0 and {2 * LIMITS['l_max']}, got {L}")
        if not items:
            raise SpecError(f"{where}: empty irreps {text!r}")
        return cls(tuple(sorted(items)))

    @property
    def Ls(self) -> tuple[int, ...]:
        return tuple(L for L, _ in self.terms)

    def rank(self, L: int) -> int:
        return dict(self.terms)[L]

    @property
    def dim(self) -> int:
        return sum(r * (2 * L + 1) for L, r in self.terms)

    def __str__(self) -> str:
        return " + ".join(f"{r}x{L}" for L, r in self.terms)


def _int(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).lstrip("-").isdigit():
        raise SpecError(f"{where}: expected an integer, got {v!r}")
    return int(v)


def _num(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpecError(f"{where}: expected a finite number, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class Spec:
    """One ETN model (see the module docstring for the fields and their units)."""

    species: tuple[str, ...]
    r_cut: float
    n_radial: int
    l_max: int
    cores: int
    inner_bonds: tuple[Irreps, ...] = ()  # b_1 … b_{n-1}; the spec file's key "bonds"
    r_min: float = 0.0
    topology: str = "tensor_train"
    compression: tuple[int, ...] = ()
    dtype: str = "float64"
    repulsion: str = "none"
    output: Irreps = SCALAR
    network: tuple = ()
    _graph: tuple = field(default=(), compare=False, repr=False)
    _hash: str = field(default="", compare=False, repr=False)

    def __post_init__(self):
        """Validate and normalise every field, in the order the fields depend on each other; each check
        raises a SpecError naming the field and what to do."""
        self._check_species()
        self._check_sizes()
        self._check_choices()
        self._check_network()
        self._check_compression()
        self._check_reachable()
        self._set("_hash", hashlib.sha256(self.canonical_json().encode()).hexdigest())

    def _set(self, name, value):
        object.__setattr__(self, name, value)  # a frozen dataclass normalises its fields once, here

    def _check_species(self):
        if isinstance(self.species, str) or not isinstance(self.species, (list, tuple)) or not self.species:
            raise SpecError(f"species: expected a non-empty list of element symbols, got {self.species!r}")
        from ase.data import chemical_symbols

        species = tuple(self.species)
        for s in species:
            if not isinstance(s, str) or s not in chemical_symbols[1:]:
                raise SpecError(f"species: {s!r} is not an element symbol (write e.g. 'Nb', 'Mo', 'W')")
        dup = sorted({s for s in species if species.count(s) > 1})
        if dup:
            raise SpecError(f"species: {', '.join(dup)} listed more than once; list each element once")
        self._set("species", species)

    def _check_sizes(self):
        """The radial interval, n_radial, cores and l_max within LIMITS."""
        r_cut, r_min = _num(self.r_cut, "r_cut"), _num(self.r_min, "r_min")
        if r_cut <= 0 or r_cut > LIMITS["r_cut"]:
            raise SpecError(f"r_cut must be > 0 and <= {LIMITS['r_cut']:g} Å, got {r_cut}")
        if r_min < 0 or r_min >= r_cut:
            raise SpecError(f"r_min must satisfy 0 <= r_min < r_cut (= {r_cut} Å), got {r_min}")
        self._set("r_cut", r_cut)
        self._set("r_min", r_min)
        for k in ("n_radial", "cores"):
            v = _int(getattr(self, k), k)
            if v < 1 or v > LIMITS[k]:
                raise SpecError(f"{k} must be between 1 and {LIMITS[k]}, got {v}")
            self._set(k, v)
        l_max = _int(self.l_max, "l_max")
        if l_max < 0 or l_max > LIMITS["l_max"]:
            raise SpecError(f"l_max must be between 0 and {LIMITS['l_max']}, got {l_max}")
        self._set("l_max", l_max)

    def _check_choices(self):
        """topology, repulsion and dtype among the known ones."""
        if self.topology not in TOPOLOGIES:
            raise SpecError(f"topology {self.topology!r} is unknown; available: {', '.join(TOPOLOGIES)}")
        if self.repulsion not in REPULSIONS:
            raise SpecError(f"repulsion {self.repulsion!r} is unknown; use one of {', '.join(REPULSIONS)}")
        if self.repulsion == "zbl" and self.r_min <= 0:
            raise SpecError("repulsion = 'zbl' acts below r_min, which is 0 here: set r_min (Å) to the start of "
                            "the fitted range, e.g. the training data's shortest distance")
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype {self.dtype!r} is unknown; use one of {', '.join(DTYPES)}")

    def _check_network(self):
        """The inner bonds, the output and the graph (Spec.graph) of the topology."""
        bonds = self.inner_bonds
        if isinstance(bonds, (str, dict, Irreps)):
            bonds = (bonds,)
        bonds = tuple(Irreps.parse(b, f"bonds[{i}]") for i, b in enumerate(bonds))
        if len(bonds) != self.cores - 1:
            raise SpecError(f"bonds: a {self.topology.replace('_', ' ')} of {self.cores} cores has {self.cores - 1} "
                            f"inner bonds, but {len(bonds)} were given")
        self._set("inner_bonds", bonds)
        output = Irreps.parse(self.output, "output")
        if any(r != 1 for _, r in output.terms) or len(output.terms) != 1:
            raise SpecError(f"output: expected one irrep of rank 1, '1x0' (an energy) or e.g. '1x1' (a vector), "
                            f"got '{output}'")
        self._set("output", output)
        if self.repulsion != "none" and str(output) != SCALAR:
            raise SpecError(f"repulsion = '{self.repulsion}' is a pair energy; this spec's output is '{output}': "
                            f"set repulsion = 'none'")
        self._set("network", _network(self.network, self.topology, self.cores))
        self._set("_graph", self.network if self.topology == "network" else BUILDERS[self.topology](self.cores))

    def _check_compression(self):
        """One K per core (or one for all), within the channel count, on cores with one feature input."""
        comp = self.compression
        if comp is None:
            comp = ()
        if isinstance(comp, int) and not isinstance(comp, bool):
            comp = (comp,) * self.cores if comp else ()
        comp = tuple(_int(K, f"compression[{k}]") for k, K in enumerate(comp))
        if comp and len(comp) != self.cores:
            raise SpecError(f"compression: give one K per core ({self.cores}) or a single integer, got {list(comp)}")
        C = self.n_radial * len(self.species)
        for k, K in enumerate(comp):
            if K < 0 or K > C + 1:
                raise SpecError(f"compression[{k}] = {K}: K must be between 1 and the channel count "
                                f"n_radial * n_species + 1 = {C + 1} (0 = no compression)")
            x, y = self._graph[k]
            if K and (x == FEATURES or y != FEATURES):
                what = "couples the features with themselves (A, A)" if x == FEATURES else "has no feature input"
                raise SpecError(f"compression[{k}] = {K}: core {k + 1} {what}; compression applies to cores with "
                                f"one feature input: set it to 0")
        self._set("compression", () if all(K == 0 for K in comp) else comp)

    # -- derived sizes --------------------------------------------------------------------------
    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def n_channels(self) -> int:
        """C = n_radial * n_species (the constant channel of l = 0 comes on top)."""
        return self.n_radial * self.n_species

    def channels(self, l: int) -> int:
        """Channels of features with angular momentum l: C + 1 for l = 0 (constant), else C."""
        return self.n_channels + (l == 0)

    @property
    def graph(self) -> tuple[tuple, ...]:
        """Per core k = 1 … n (index k - 1) its two inputs: ``"A"`` (features) or a bond index j < k
        (0 = the constant scalar, j > 0 = core j's output). Core k's output is bond k; bond n is the
        network's output."""
        return self._graph

    @property
    def species_core(self) -> int:
        """The core whose blocks have a leading species index: 1 in a tensor train, n (the root) otherwise."""
        return 1 if self.topology == "tensor_train" else self.cores

    @property
    def degree(self) -> int:
        """Polynomial degree in the features: how many inputs of all cores are ``A``."""
        return sum(x == FEATURES for ins in self._graph for x in ins)

    @property
    def is_energy(self) -> bool:
        """The output is one scalar per atom (a site energy), not a tensor."""
        return str(self.output) == SCALAR

    def bond(self, k: int) -> Irreps:
        """Bond ``b_k`` for k = 0 … cores: 0 is the constant scalar, k the output of core k, n the output."""
        if k == 0:
            return Irreps(((0, 1),))
        if k == self.cores:
            return self.output
        return self.inner_bonds[k - 1]

    @property
    def bonds(self) -> tuple[Irreps, ...]:
        """Every bond, b_0 … b_n (``bonds[k]`` is bond k, as in ``Schedule.bonds``)."""
        return tuple(self.bond(k) for k in range(self.cores + 1))

    def consumer(self, j: int) -> int | None:
        """The core that takes bond j as an input (None for the output bond n)."""
        return next((k for k, ins in enumerate(self._graph, 1) if j in ins and j != 0), None)

    def way(self, k: int) -> list[int]:
        """Core k, the core that takes its bond, …, the last core: the way from core k to the output."""
        out = [k]
        while (nxt := self.consumer(out[-1])) is not None:
            out.append(nxt)
        return out

    def K(self, k: int) -> int:
        """Channel compression of core k (1-based); 0 = uncompressed."""
        return self.compression[k - 1] if self.compression else 0

    @property
    def hash(self) -> str:
        return self._hash

    def _check_reachable(self):
        """Every irrep of every bond must be formed from the inputs and feed the output."""
        from .cg import admissible

        n, A = self.cores, tuple(range(self.l_max + 1))
        fwd = {0: {0}}
        for k, (x, y) in enumerate(self._graph, 1):
            Lx, Ly = (A if x == FEATURES else fwd[x]), (A if y == FEATURES else fwd[y])
            fwd[k] = {Lo for Lo in self.bond(k).Ls if any(admissible(a, b, Lo) for a in Lx for b in Ly)}
        bwd = {n: set(self.bond(n).Ls)}
        for k in range(n, 0, -1):
            x, y = self._graph[k - 1]
            for this, other in ((x, y), (y, x)):
                if this == FEATURES or this == 0:
                    continue
                Lo_ = A if other == FEATURES else fwd[other]
                bwd[this] = {L for L in self.bond(this).Ls
                             if any(admissible(L, b, Lo) for b in Lo_ for Lo in bwd.get(k, ()))}
        out = "to the scalar output" if self.is_energy else f"to the output '{self.output}'"
        # unreachable from the input: report the first bond; cannot reach the output: the last
        checks = [(k, set(self.bond(k).Ls) - fwd[k], "from the input") for k in range(1, n)]
        checks += [(k, set(self.bond(k).Ls) - bwd.get(k, set()), out) for k in range(n - 1, 0, -1)]
        for k, dead, side in checks:
            if dead:
                raise SpecError(f"bonds[{k - 1}] = '{self.bond(k)}': L={sorted(dead)} cannot be coupled {side} with "
                                f"l_max={self.l_max} (triangle rule and even L_in + l + L_out); "
                                f"remove them or raise l_max")
        if not fwd[n]:
            raise SpecError(f"the network cannot produce its output '{self.output}': check bonds and l_max")

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {
            "species": list(self.species), "r_min": self.r_min, "r_cut": self.r_cut,
            "n_radial": self.n_radial, "l_max": self.l_max, "topology": self.topology,
            "cores": self.cores, "bonds": [str(b) for b in self.inner_bonds],
            "compression": list(self.compression), "dtype": self.dtype,
        }
        if self.repulsion != "none":  # absent when off, so specs written before it keep their hash
            d["repulsion"] = self.repulsion
        if not self.is_energy:  # likewise
            d["output"] = str(self.output)
        if self.network:
            d["network"] = [list(ins) for ins in self.network]
        return d

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict, where: str = "spec") -> Spec:
        if not isinstance(d, dict):
            raise SpecError(f"{where}: expected a table of model fields, got {type(d).__name__}")
        unknown = sorted(set(d) - set(KEYS))
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}")
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise SpecError(f"{where}: missing required key(s) {', '.join(missing)}")
        kw = dict(d)
        kw["species"] = tuple(kw["species"]) if isinstance(kw["species"], list) else kw["species"]
        if "bonds" in kw:  # the file's name for the inner bonds
            b = kw.pop("bonds")
            kw["inner_bonds"] = tuple(b) if isinstance(b, list) else b
        if isinstance(kw.get("network"), list):
            kw["network"] = tuple(tuple(x) if isinstance(x, list) else x for x in kw["network"])
        if isinstance(kw.get("compression"), list):
            kw["compression"] = tuple(kw["compression"])
        return cls(**kw)

    @classmethod
    def from_toml(cls, text: str, where: str = "spec") -> Spec:
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"{where}: not valid TOML ({e})") from None
        if "model" in d and isinstance(d["model"], dict) and set(d) == {"model"}:
            d = d["model"]
        return cls.from_dict(d, where)

    @classmethod
    def load(cls, path: str | Path) -> Spec:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"spec file {path} does not exist")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise SpecError(f"spec file {path} is not a text (TOML) file") from None
        return cls.from_toml(text, str(path))

    def to_toml(self) -> str:
        d = self.to_dict()
        lines = []
        for k in KEYS:
            if k not in d:
                continue
            v = d[k]
            lines.append(f"{k} = {json.dumps(v)}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"Spec.from_toml({self.to_toml()!r})"


def tensor_train(n: int) -> tuple[tuple, ...]:
    """Core k = (bond k-1, A): a chain; core 1 takes the constant."""
    return tuple((k - 1, FEATURES) for k in range(1, n + 1))


def tree(n: int) -> tuple[tuple, ...]:
    """A balanced binary tree: d = (n + 1) / 2 leaves (constant, A), then the bonds paired level by level
    left to right (an odd one out moves up a level); the last core is the root."""
    if n % 2 == 0:
        raise SpecError(f"cores = {n}: a tree over d feature leaves has 2d - 1 cores (d leaves, d - 1 couplings); "
                        f"use an odd number, e.g. 7 for degree 4")
    d = (n + 1) // 2
    graph = [(0, FEATURES)] * d
    items = list(range(1, d + 1))
    while len(items) > 1:
        nxt = []
        for i in range(0, len(items) - 1, 2):
            graph.append((items[i], items[i + 1]))
            nxt.append(len(graph))
        if len(items) % 2:
            nxt.append(items[-1])
        items = nxt
    return tuple(graph)


def _network(network, topology: str, n: int) -> tuple:
    """The validated ``network`` of a spec: required for topology "network", refused otherwise."""
    if topology != "network":
        if network:
            raise SpecError(f"network: only for topology = 'network' (this spec's is {topology!r}); remove it")
        return ()
    if not isinstance(network, (list, tuple)) or len(network) != n:
        raise SpecError(f"network: give one [first, second] input pair per core ({n}), e.g. "
                        f"[[\"A\", \"A\"], [\"A\", \"A\"], [1, 2]]; got {network!r}")
    graph, taken = [], {}
    for k, ins in enumerate(network, 1):
        if not isinstance(ins, (list, tuple)) or len(ins) != 2:
            raise SpecError(f"network[{k - 1}]: a core has two inputs, [first, second]; got {ins!r}")
        for v in ins:
            if v == FEATURES:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < k:
                raise SpecError(f"network[{k - 1}]: an input is \"A\" (the features), 0 (the constant) or the bond "
                                f"of an earlier core 1 … {k - 1}; got {v!r}")
            if v and v in taken:
                raise SpecError(f"network: bond {v} feeds cores {taken[v]} and {k}; each bond feeds one core (a tree)")
            if v:
                taken[v] = k
        if ins[1] == 0:
            raise SpecError(f"network[{k - 1}]: the constant goes first, [0, \"A\"]; got {list(ins)}")
        x, y = ins
        # a bond and the features couple the same either way round: the bond goes first (as in a chain)
        graph.append((y, x) if x == FEATURES and y != FEATURES else (x, y))
    unused = sorted(set(range(1, n)) - set(taken))
    if unused:
        raise SpecError(f"network: bond(s) {unused} feed no core; every core but the last must feed a later one")
    if not any(FEATURES in ins for ins in graph):
        raise SpecError("network: no core takes the features \"A\"")
    return tuple(graph)


BUILDERS = {"tensor_train": tensor_train, "tree": tree}
