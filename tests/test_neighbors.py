"""Neighbour pairs (vesin) against ASE's neighbour list, the reference."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

import etn
from etn.io.neighbors import NeighborCache, neighbor_list, pairs


def geometries():
    rng = np.random.default_rng(0)
    big = bulk("Mo", "bcc", a=3.2, cubic=True).repeat((4, 4, 4))
    big.rattle(0.05, rng=rng)
    unwrapped = big.copy()
    unwrapped.positions[::3] += 2 * unwrapped.cell[0] - unwrapped.cell[2]  # MD leaves atoms outside the cell
    prim = bulk("Cu", "fcc", a=3.6)  # one atom: the cutoff spans many images
    skew = bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))
    skew.cell[1] += 0.3 * skew.cell[0]
    skew.rattle(0.05, rng=rng)
    slab = fcc111("Cu", (3, 3, 4), vacuum=6.0)  # periodic in x and y only
    wire = Atoms("Cu6", positions=rng.uniform(0, 4, (6, 3)), cell=[[0, 0, 0], [0, 0, 0], [0, 0, 5.0]],
                 pbc=(False, False, True))
    return {"bulk": big, "unwrapped": unwrapped, "primitive": prim, "triclinic": skew, "slab": slab, "wire": wire,
            "molecule": molecule("C6H6")}


@pytest.mark.parametrize("name", list(geometries()))
@pytest.mark.parametrize("cutoff", [3.0, 5.5])
def test_same_pairs_as_ase(name, cutoff):
    atoms = geometries()[name]
    i, j, D = ase_neighbor_list("ijD", atoms, cutoff)
    want = sorted(zip(i.tolist(), j.tolist(), np.round(D, 9).tolist()))
    vi, vj, vS, vd = neighbor_list("ijSd", atoms, cutoff)
    assert vi.dtype == vj.dtype == np.int64
    r = atoms.positions[vj] - atoms.positions[vi] + vS @ atoms.cell.array
    assert sorted(zip(vi.tolist(), vj.tolist(), np.round(r, 9).tolist())) == want
    np.testing.assert_allclose(vd, np.linalg.norm(r, axis=1), rtol=1e-12)


def test_pairs_are_grouped_by_centre_and_reused():
    """The cache hands the kernels pairs grouped by centre atom, and between rebuilds the same pairs
    as a fresh build."""
    spec = etn.catalogue.load("binary")
    atoms = geometries()["bulk"]
    atoms.symbols[::2] = spec.species[0]
    atoms.symbols[1::2] = spec.species[1]
    cache = NeighborCache(spec, skin=0.5)
    first = cache.pairs(atoms)
    assert np.all(np.diff(first.i) >= 0)
    atoms.positions += np.random.default_rng(1).normal(0, 0.05, atoms.positions.shape)  # < skin / 2
    moved, fresh = cache.pairs(atoms), pairs(atoms, spec)
    assert cache.rebuilds == 1
    key = lambda p: sorted(zip(p.i.tolist(), p.j.tolist(), np.round(p.r, 9).tolist()))  # noqa: E731
    assert key(moved) == key(fresh)
