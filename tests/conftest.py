"""Shared fixtures: catalogue specs, random multicomponent configurations."""

import numpy as np
import pytest
from ase import Atoms

import etn

#: catalogue specs cheap enough for numerical tests on every run
NUMERIC_SPECS = ["tiny", "binary", "compressed", "tree", "network"]


def random_cluster(species, n=8, seed=0, box=6.0, min_dist=1.6):
    """A non-periodic cluster of ``n`` atoms, at least ``min_dist`` Å apart, random species."""
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, box, 3)
        if all(np.linalg.norm(p - q) > min_dist for q in pos):
            pos.append(p)
    return Atoms(rng.choice(species, n), positions=pos)


def random_crystal(species, seed=0, reps=(2, 2, 2), a=3.6, rattle=0.15, triclinic=False):
    """A rattled fcc supercell with random species; optionally sheared into a triclinic cell."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(reps)
    atoms.symbols = rng.choice(species, len(atoms))
    if triclinic:
        cell = atoms.cell.array.copy()
        cell[1] += 0.3 * cell[0] / np.linalg.norm(cell[0])
        cell[2] += 0.2 * cell[1] / np.linalg.norm(cell[1])
        atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory):
    """Compiled kernels are cached for the test session only, so every run exercises the build."""
    import os

    old = os.environ.get("ETN_CACHE_DIR")
    os.environ["ETN_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernels"))
    yield os.environ["ETN_CACHE_DIR"]
    if old is None:
        os.environ.pop("ETN_CACHE_DIR")
    else:
        os.environ["ETN_CACHE_DIR"] = old


@pytest.fixture(params=NUMERIC_SPECS)
def spec(request):
    return etn.catalogue.load(request.param)


@pytest.fixture
def potential(spec):
    pot = etn.Potential.random(spec, seed=3, backend="numpy")
    pot.block("e0")[:] = np.arange(1, spec.n_species + 1) * -0.5
    return pot
