"""Spec parsing, validation messages, canonical hash."""

import pytest

import etn
from etn import Spec, SpecError

BASE = dict(species=["Nb", "Mo"], r_min=1.5, r_cut=5.0, n_radial=4, l_max=2, cores=3,
            bonds=["2x0 + 1x1 + 1x2", "2x0 + 1x1"])


def make(**kw):
    d = dict(BASE)
    d.update(kw)
    return Spec.from_dict({k: v for k, v in d.items() if v is not ...})


def test_toml_round_trip_and_hash():
    s = make()
    t = Spec.from_toml(s.to_toml())
    assert t == s and t.hash == s.hash and len(s.hash) == 64
    assert eval(repr(s), {"Spec": Spec}) == s  # repr round-trips
    # the same model written differently has the same canonical hash
    assert make(bonds=["1x2 + 2x0 + 1x1", "1x1+2x0"]).hash == s.hash
    assert make(r_cut=5.5).hash != s.hash
    assert Spec.from_toml("[model]\n" + s.to_toml()) == s


@pytest.mark.parametrize("kw,match", [
    (dict(n_radial=0), "n_radial must be between 1 and 32"),
    (dict(n_radial=-2), "n_radial must be between 1 and 32"),
    (dict(cores=0), "cores must be between 1 and 8"),
    (dict(l_max=-1), "l_max must be between 0 and 8"),
    (dict(r_cut=0.0), "r_cut must be > 0 and <= 15"),
    (dict(r_min=5.0), "r_min must satisfy"),
    (dict(r_min=6.0), "r_min must satisfy"),
    (dict(topology="mesh"), "topology 'mesh' is unknown"),
    (dict(dtype="float16"), "dtype 'float16' is unknown"),
    (dict(species=["Nb", "Nb"]), "Nb listed more than once"),
    (dict(species=["Nb", "Xx"]), "'Xx' is not an element symbol"),
    (dict(species=["nb"]), "'nb' is not an element symbol"),
    (dict(species=[]), "non-empty list"),
    (dict(bonds=["2x0"]), "3 cores has 2 inner bonds"),
    (dict(bonds=["2x0 + 1x1 + 1x7", "2x0"]), r"L=\[7\] cannot be coupled from the input"),
    (dict(bonds=["2x0 + 1x1", "1x1"], l_max=0), r"cannot be coupled"),
    (dict(bonds=["2x0 + 1x1", "1x3"]), r"L=\[3\] cannot be coupled to the scalar output"),
    (dict(bonds=["2x0 + 0x1", "2x0"]), "rank of L=1 must be between 1 and 64"),
    (dict(bonds=["2x0 + 1x0", "2x0"]), "L=0 appears twice"),
    (dict(bonds=["two", "2x0"]), "cannot read 'two'"),
    (dict(compression=[4, 4]), "one K per core"),
    (dict(compression=100), "K must be between 1 and"),
    (dict(n_radial="four"), "n_radial: expected an integer"),
    (dict(r_cut="5"), "r_cut: expected a finite number"),
    (dict(r_min=float("nan")), "r_min: expected a finite number"),
    (dict(r_cut=float("inf")), "r_cut: expected a finite number"),
    (dict(r_cut=1000.0), "r_cut must be > 0 and <= 15"),
    (dict(l_max=30), "l_max must be between 0 and 8"),
    (dict(n_radial=10 ** 6), "n_radial must be between 1 and 32"),
    (dict(cores=50), "cores must be between 1 and 8"),
    (dict(bonds=["100000x0", "2x0"]), "rank of L=0 must be between 1 and 64"),
    (dict(colour="red"), "unknown key.*colour"),
    (dict(topology="tree", cores=4, bonds=["2x0"] * 3), "a tree over d feature leaves has 2d - 1 cores"),
    (dict(topology="tree", cores=5, bonds=["2x0 + 1x1"] * 4, compression=[0, 0, 0, 3, 0]), "core 4 has no feature input"),
    (dict(topology="network", network=[["A", "A"], ["A", "A"], [1, 2]], bonds=["2x0 + 1x1"] * 2,
          compression=[3, 0, 0]), r"core 1 couples the features with themselves \(A, A\)"),
    (dict(topology="tree", cores=5, bonds=["2x0 + 1x1"] * 3), "a tree of 5 cores has 4 inner bonds"),
    (dict(topology="network", network=[["A", "A"], ["A", "A"], [1, 2]], bonds=["2x0 + 1x1 + 1x2", "2x0 + 1x1"]),
     r"L=\[2\] cannot be coupled to the scalar output"),
    (dict(topology="network"), "give one \\[first, second\\] input pair per core"),
    (dict(topology="network", network=[[0, "A"], [1, "A"], [1, "A"]]), "bond 1 feeds cores 2 and 3"),
    (dict(topology="network", network=[[0, "A"], [3, "A"], [2, "A"]]), "the bond of an earlier core"),
    (dict(topology="network", network=[[0, "A"], [0, "A"], [2, "A"]]), r"bond\(s\) \[1\] feed no core"),
    (dict(topology="network", network=[["A", 0], [1, "A"], [2, "A"]]), "the constant goes first"),
    (dict(topology="network", network=[[0, "A", 1], [1, "A"], [2, "A"]]), "a core has two inputs"),
    (dict(network=[[0, "A"], [1, "A"], [2, "A"]]), "only for topology = 'network'"),
    (dict(output="2x1"), "one irrep of rank 1"),
    (dict(output="1x0 + 1x1"), "one irrep of rank 1"),
    (dict(output="1x5"), "cannot be coupled to the output '1x5'"),
    (dict(r_cut=...), "missing required key.*r_cut"),
])
def test_bad_fields_have_clear_errors(kw, match):
    with pytest.raises(SpecError, match=match):
        make(**kw)


def test_bad_toml():
    with pytest.raises(SpecError, match="not valid TOML"):
        Spec.from_toml("species = [")


def test_scalar_compression_and_channels():
    s = make(compression=3)
    assert s.compression == (3, 3, 3) and s.K(2) == 3
    assert s.n_channels == 8 and s.channels(0) == 9 and s.channels(1) == 8
    assert make(compression=0).compression == ()


def test_topologies_are_graphs():
    """Each builder's graph: every core has two inputs, every inner bond is taken by exactly one later core,
    the degree counts the feature inputs, and old chain specs keep their hash (no new keys written)."""
    chain = make()
    assert chain.graph == ((0, "A"), (1, "A"), (2, "A")) and chain.degree == 3 and chain.species_core == 1
    assert "output" not in chain.to_dict() and "network" not in chain.to_dict()
    leaf = (0, "A")
    for n, graph, degree in [(1, (leaf,), 1), (3, (leaf, leaf, (1, 2)), 2), (5, (leaf,) * 3 + ((1, 2), (4, 3)), 3),
                             (7, (leaf,) * 4 + ((1, 2), (3, 4), (5, 6)), 4)]:
        t = etn.generator.spec.tree(n)
        assert t == graph and sum(x == "A" for ins in t for x in ins) == degree
        taken = [v for ins in t for v in ins if v not in ("A", 0)]
        assert sorted(taken) == list(range(1, n)) and all(v < k for k, ins in enumerate(t, 1) for v in ins if v != "A")
    tree = make(topology="tree", cores=3, bonds=["2x0 + 1x1", "2x0 + 1x1"])
    assert tree.species_core == 3 and tree.degree == 2 and tree.hash != make(bonds=["2x0 + 1x1", "2x0 + 1x1"]).hash
    # the way from a core to the output, and the path between two cores (the fit's gauge moves along it)
    from etn.fitting.fit import path_between

    big = make(topology="tree", cores=7, bonds=["2x0 + 1x1"] * 6)
    assert big.way(1) == [1, 5, 7] and big.way(4) == [4, 6, 7] and big.way(7) == [7] and big.consumer(7) is None
    assert path_between(big, 1, 4) == [1, 5, 7, 6, 4] and path_between(big, 5, 1) == [5, 1]
    assert path_between(big, 2, 2) == [2] and chain.way(1) == [1, 2, 3] and path_between(chain, 3, 1) == [3, 2, 1]
    assert Spec.from_toml(tree.to_toml()) == tree
    net = make(topology="network", network=[["A", "A"], ["A", "A"], [1, 2]], bonds=["2x0 + 1x1"] * 2)
    assert net.graph == (("A", "A"), ("A", "A"), (1, 2)) and net.degree == 4
    assert Spec.from_toml(net.to_toml()) == net and Spec.from_toml(net.to_toml()).hash == net.hash
    # the features and a bond couple the same either way round: written [A, j], stored [j, A]
    swapped = make(topology="network", network=[[0, "A"], ["A", 1], ["A", 2]], bonds=["2x0 + 1x1"] * 2)
    assert swapped.graph == ((0, "A"), (1, "A"), (2, "A")) and swapped.to_dict()["network"][1] == [1, "A"]
    vec = make(output="1x1", bonds=["2x0 + 1x1 + 1x2", "2x0 + 1x1"])
    assert not vec.is_energy and str(vec.bond(3)) == "1x1" and Spec.from_toml(vec.to_toml()) == vec
    # bonds are numbered 0 … n alike in the spec and the schedule; the file's "bonds" are the inner ones
    assert [str(b) for b in vec.bonds] == ["1x0", "2x0 + 1x1 + 1x2", "2x0 + 1x1", "1x1"]
    assert vec.inner_bonds == vec.bonds[1:-1] and vec.to_dict()["bonds"] == ["2x0 + 1x1 + 1x2", "2x0 + 1x1"]
    assert [b.terms for b in vec.bonds] == [tuple((t.L, t.rank) for t in b.terms) for b in etn.schedule(vec).bonds]


@pytest.mark.parametrize("name", etn.catalogue.names())
def test_catalogue_specs_load(name):
    spec = etn.catalogue.load(name)
    assert spec.hash == Spec.from_toml(spec.to_toml()).hash
