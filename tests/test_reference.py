"""numpy reference backend: against the dense maths, finite differences and the laws of physics."""

import dataclasses

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from scipy.spatial.transform import Rotation

import etn
from etn.generator import ORDERS
from etn.backends.reference import NumpyBackend

from . import dense_reference
from .conftest import random_cluster, random_crystal


def energies(pot, atoms):
    return pot.evaluate(atoms, forces=False, stress=False)["energies"]


@pytest.mark.parametrize("periodic", [False, True])
def test_matches_dense_maths(potential, periodic):
    sp = potential.spec.species
    atoms = random_crystal(sp, seed=4, reps=(1, 1, 2)) if periodic else random_cluster(sp, n=7, seed=5)
    np.testing.assert_allclose(energies(potential, atoms), dense_reference.site_energies(potential, atoms),
                               rtol=1e-11, atol=1e-12)


def test_every_contraction_order_of_the_c_kernels_agrees():
    """The generated C runs each path in the order the schedule chose (hA, gh or gA: README, Inspecting a
    model); forcing each order on every path, the folded ones included, gives the numpy reference's
    energies and gradients ('compressed': a compressed core, two folded ones, a species-specific core)."""
    from etn.backends.cbackend import CBackend

    pot = etn.Potential.random(etn.catalogue.load("compressed"), seed=3, scale=0.5)
    atoms = random_crystal(pot.spec.species, seed=6, reps=(1, 1, 2))
    pr = etn.io.neighbors.pairs(atoms, pot.spec)
    V, g = NumpyBackend(pot.schedule).compute(pot.params, pr)
    sched = pot.schedule
    for order in ORDERS:
        force = lambda ps: tuple(dataclasses.replace(p, order=order) for p in ps)  # noqa: E731
        cores = tuple(dataclasses.replace(c, paths=force(c.paths), folded=force(c.folded)) for c in sched.cores)
        Vc, gc = CBackend(dataclasses.replace(sched, cores=cores), "float64").compute(pot.params, pr)
        np.testing.assert_allclose(Vc, V, rtol=0, atol=1e-12 * np.abs(V).max())
        np.testing.assert_allclose(gc, g, rtol=0, atol=1e-12 * np.abs(g).max())


@pytest.mark.parametrize("triclinic", [False, True])
def test_forces_and_stress_are_gradients(potential, triclinic):
    atoms = random_crystal(potential.spec.species, seed=7, reps=(1, 1, 2), triclinic=triclinic)
    atoms.calc = etn.Calculator(potential)
    f, s = atoms.get_forces(), atoms.get_stress()
    np.testing.assert_allclose(f, calculate_numerical_forces(atoms, 1e-5), atol=1e-8 * max(1, np.abs(f).max()))
    np.testing.assert_allclose(s, calculate_numerical_stress(atoms, 1e-5), atol=1e-8 * max(1, np.abs(s).max()))
    assert np.abs(f).max() > 1e-4 and np.abs(s).max() > 1e-6  # not trivially zero


def test_cluster_forces_are_gradients(potential):
    atoms = random_cluster(potential.spec.species, n=6, seed=8, box=5.0)
    atoms.calc = etn.Calculator(potential)
    f = atoms.get_forces()
    np.testing.assert_allclose(f, calculate_numerical_forces(atoms, 1e-5), atol=1e-8 * max(1, np.abs(f).max()))


def test_invariances(potential):
    sp = potential.spec.species
    atoms = random_cluster(sp, n=9, seed=9, box=5.5)
    ref = potential.evaluate(atoms)
    scale = max(1.0, np.abs(ref["energies"]).max())
    for R in Rotation.random(3, random_state=1).as_matrix():
        for Q in (R, -R):  # proper and improper rotations
            moved = atoms.copy()
            moved.positions = atoms.positions @ Q.T + np.array([0.3, -1.2, 2.0])
            res = potential.evaluate(moved)
            np.testing.assert_allclose(res["energies"], ref["energies"], atol=1e-12 * scale)
            np.testing.assert_allclose(res["forces"], ref["forces"] @ Q.T, atol=1e-11 * scale)
    # permutation of atoms (same-species relabelling included)
    perm = np.random.default_rng(0).permutation(len(atoms))
    res = potential.evaluate(atoms[perm])
    np.testing.assert_allclose(res["energies"], ref["energies"][perm], atol=1e-12 * scale)
    np.testing.assert_allclose(res["forces"], ref["forces"][perm], atol=1e-12 * scale)


def test_periodic_invariances(potential):
    atoms = random_crystal(potential.spec.species, seed=10, reps=(1, 1, 2), triclinic=True)
    ref = potential.evaluate(atoms)
    R = Rotation.random(random_state=3).as_matrix()
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ R.T, scale_atoms=False)
    moved.positions = atoms.positions @ R.T
    res = potential.evaluate(moved)
    np.testing.assert_allclose(res["energy"], ref["energy"], rtol=1e-12)
    shifted = atoms.copy()
    shifted.positions += [1.1, 0.4, -0.7]
    shifted.wrap()
    np.testing.assert_allclose(potential.evaluate(shifted)["energies"], ref["energies"], rtol=1e-11, atol=1e-12)


def test_sums(potential):
    atoms = random_crystal(potential.spec.species, seed=11, reps=(1, 1, 2))
    res = potential.evaluate(atoms)
    assert res["energy"] == pytest.approx(res["energies"].sum(), rel=1e-14)
    assert np.abs(res["forces"].sum(axis=0)).max() < 1e-12 * max(1, np.abs(res["forces"]).max())


def test_isolated_atoms_and_dimer(potential):
    sp = potential.spec.species
    rc = potential.spec.r_cut
    e0 = potential.block("e0")
    # atoms without neighbours: energy is e0 + V(features = constant channel only)
    lone = Atoms([sp[0], sp[-1]], positions=[[0, 0, 0], [rc + 1.0, 0, 0]])
    res = potential.evaluate(lone)
    np.testing.assert_allclose(res["forces"], 0.0)
    single = [potential.evaluate(Atoms([s]))["energy"] for s in (sp[0], sp[-1])]
    np.testing.assert_allclose(res["energies"], single, rtol=1e-14)
    assert single[0] != pytest.approx(e0[0])  # the constant channel reaches the output
    # a dimer at r >= r_cut does not interact; just inside, it does
    for r, interacts in [(rc, False), (rc + 1e-9, False), (rc - 0.3, True)]:
        d = potential.evaluate(Atoms([sp[0], sp[-1]], positions=[[0, 0, 0], [r, 0, 0]]))
        assert (abs(d["energy"] - sum(single)) > 1e-9) == interacts
        assert (np.abs(d["forces"]).max() > 1e-9) == interacts


def test_bad_configurations(potential):
    sp = potential.spec.species
    with pytest.raises(etn.ConfigurationError, match="Xe, which this model does not know"):
        potential.evaluate(Atoms([sp[0], "Xe"], positions=[[0, 0, 0], [2, 0, 0]]))
    with pytest.raises(etn.ConfigurationError, match="overlapping"):
        potential.evaluate(Atoms([sp[0]] * 2, positions=[[0, 0, 0], [0.01, 0, 0]]))
    with pytest.raises(etn.ConfigurationError, match="NaN"):
        potential.evaluate(Atoms([sp[0]] * 2, positions=[[0, 0, 0], [np.nan, 0, 0]]))


@pytest.mark.parametrize("topology,bonds", [("tensor_train", ["2x0 + 2x1 + 1x2", "1x0 + 2x1 + 1x2"]),
                                            ("network", ["2x0 + 1x1 + 1x2", "1x0 + 2x1 + 1x2"])])
def test_vector_output_is_equivariant(topology, bonds):
    """A network whose output bond is 1x1 gives a vector per atom through the same schedule and
    contraction: rotating (or reflecting) the atoms by Q turns each atom's vector by D¹(Q) = P Q Pᵀ (real
    harmonics of l = 1 are (y, z, x)); permuting atoms permutes the vectors; translations change nothing."""
    spec = etn.Spec(species=("Cu", "Ni"), r_min=1.5, r_cut=4.5, n_radial=3, l_max=2, cores=3, inner_bonds=bonds,
                    topology=topology, output="1x1", network=[["A", "A"], [1, "A"], [2, "A"]] if topology == "network" else ())
    assert not spec.is_energy and spec.to_dict()["output"] == "1x1"
    pot = etn.Potential.random(spec, seed=2, backend="numpy")
    atoms = random_cluster(spec.species, n=9, seed=9, box=5.5)
    ref = pot.output(atoms)
    assert ref.shape == (len(atoms), 3) and np.abs(ref).max() > 1e-3
    for backend, tol in (("c-float64", 1e-12), ("c-float32", 1e-5)):  # the generated C kernels, forward pass only
        np.testing.assert_allclose(pot.output(atoms, backend=backend), ref, rtol=0, atol=tol * np.abs(ref).max())
    with pytest.raises(ValueError, match="invalid argument"):  # no grades of a vector
        pot._get_backend("c-float64").compute_graded(pot.params, etn.io.neighbors.pairs(atoms, spec))
    P = np.eye(3)[[1, 2, 0]]
    for R in Rotation.random(3, random_state=4).as_matrix():
        for Q in (R, -R):
            moved = atoms.copy()
            moved.positions = atoms.positions @ Q.T + np.array([0.7, -0.2, 1.1])
            np.testing.assert_allclose(pot.output(moved), ref @ (P @ Q @ P.T).T, atol=1e-12 * np.abs(ref).max())
    perm = np.random.default_rng(1).permutation(len(atoms))
    np.testing.assert_allclose(pot.output(atoms[perm]), ref[perm], atol=1e-13 * np.abs(ref).max())
    with pytest.raises(etn.SpecError, match="not an energy"):
        pot.evaluate(atoms)
    with pytest.raises(etn.SpecError, match="needs an energy model"):
        etn.backends.codegen.render_cuda(pot.schedule)
    with pytest.raises(etn.fitting.fit.FitError, match="needs an energy model"):
        etn.fitting.fit.Fitter(spec, [object()])
