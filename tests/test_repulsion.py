"""The ZBL pair term (spec ``repulsion = "zbl"``): the universal ZBL energy (checked against LAMMPS's
``pair_style zbl``), switched off smoothly at r_min, exact forces in every backend, in the fit's targets,
and old specs unchanged."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

import etn
from etn.io.dataset import Frame
from etn.fitting.fit import FitSettings, Fitter
from etn.generator import Spec
from etn.generator.spec import SpecError
from etn.hosts.lammps import LammpsError, find, run

from .conftest import random_cluster, random_crystal


def zbl_spec(base="binary", **kw):
    d = etn.catalogue.load(base).to_dict()
    d.update(repulsion="zbl", r_min=1.8, **kw)
    return Spec.from_dict(d)


def dimer(a, b, r):
    return Atoms([a, b], positions=[[0, 0, 0], [r, 0, 0]])


def zbl(z1, z2, r):
    """The maths: φ(r) = Z1 Z2 e²/(4π ε0 r) Σ_k c_k exp(-d_k r / a), a = 0.46850 Å / (Z1^0.23 + Z2^0.23)."""
    a = 0.46850 / (z1 ** 0.23 + z2 ** 0.23)
    c = [0.18175, 0.50986, 0.28022, 0.02817]
    d = [3.19980, 0.94229, 0.40290, 0.20162]
    return 14.399645 * z1 * z2 / r * sum(ci * np.exp(-di * r / a) for ci, di in zip(c, d))


def test_spec_key_is_validated_and_old_hashes_stay():
    plain = etn.catalogue.load("binary")
    assert "repulsion" not in plain.to_dict()
    assert Spec.from_dict(dict(plain.to_dict(), repulsion="none")).hash == plain.hash
    spec = zbl_spec()
    assert spec.hash != plain.hash and Spec.from_toml(spec.to_toml()) == spec
    with pytest.raises(SpecError, match="repulsion 'morse' is unknown"):
        Spec.from_dict(dict(plain.to_dict(), repulsion="morse"))
    with pytest.raises(SpecError, match="set r_min"):
        Spec.from_dict(dict(plain.to_dict(), repulsion="zbl", r_min=0.0))


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_dimer_energy_is_zbl_below_the_switch_and_zero_from_r_min(backend):
    """With every ETN weight zero the energy of a dimer is φ(r) where the switch is 1 (r ≤ 0.75 r_min),
    falls smoothly to 0 at r_min and stays 0 beyond."""
    pot = etn.Potential(zbl_spec(), backend=backend)
    for r in (0.4, 0.8, 1.2, 1.35):
        assert pot.evaluate(dimer("Cu", "Ni", r))["energy"] == pytest.approx(zbl(29, 28, r), rel=1e-12)
    assert pot.evaluate(dimer("Ni", "Ni", 1.0))["energy"] == pytest.approx(zbl(28, 28, 1.0), rel=1e-12)
    e = [pot.evaluate(dimer("Cu", "Cu", r))["energy"] for r in (1.5, 1.7, 1.79, 1.8, 2.5)]
    assert zbl(29, 29, 1.5) > e[0] > e[1] > e[2] > 0 and e[3] == 0 and e[4] == 0
    # C² at r_min: the energy vanishes as (r_min - r)³, the force as (r_min - r)²
    near = [pot.evaluate(dimer("Cu", "Cu", 1.8 - h)) for h in (1e-3, 2e-3)]
    assert near[1]["energy"] / near[0]["energy"] == pytest.approx(8, rel=0.02)
    assert near[1]["forces"][0, 0] / near[0]["forces"][0, 0] == pytest.approx(4, rel=0.02)


@pytest.mark.filterwarnings("ignore::etn.ExtrapolationWarning")  # pairs below r_min are the point here
@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_forces_and_stress_are_the_exact_gradient_with_zbl(backend):
    """A random ETN part plus ZBL, pairs from 1.0 Å (ZBL whole), through the switch, to beyond r_min."""
    pot = etn.Potential.random(zbl_spec(), seed=1, scale=0.1, backend=backend)
    atoms = random_cluster(["Cu", "Ni"], n=10, seed=2, box=4.0, min_dist=1.0)
    d = atoms.get_all_distances()[np.triu_indices(10, 1)]
    assert d.min() < 1.35 and ((d > 1.35) & (d < 1.8)).any()
    atoms.calc = etn.Calculator(pot)
    f = atoms.get_forces()
    np.testing.assert_allclose(f, calculate_numerical_forces(atoms, 1e-5), atol=1e-7 * np.abs(f).max())
    crystal = random_crystal(["Cu", "Ni"], seed=3, a=2.9, rattle=0.2)  # nearest neighbours near 2 Å
    crystal.calc = etn.Calculator(pot)
    s = crystal.get_stress()
    np.testing.assert_allclose(s, calculate_numerical_stress(crystal, 1e-6), atol=1e-6 * np.abs(s).max())


def test_c_and_float32_agree_with_numpy():
    pot = etn.Potential.random(zbl_spec("small"), seed=3, scale=0.2)
    atoms = random_crystal(["Nb", "Mo", "Ta", "W"], seed=4, a=2.6, rattle=0.25)  # pairs down to ~1.3 Å
    ref = pot.evaluate(atoms, backend="numpy")
    assert np.abs(ref["energies"]).max() > 1.0  # ZBL is a visible part
    for backend, tol in (("c", 1e-11), ("c-float32", 1e-4)):
        r = pot.evaluate(atoms, backend=backend)
        assert r["energy"] == pytest.approx(ref["energy"], rel=tol)
        np.testing.assert_allclose(r["forces"], ref["forces"], atol=tol * np.abs(ref["forces"]).max())


def test_fit_targets_exclude_the_fixed_pair_term():
    """Labels from a teacher with ZBL and pairs down to 1.15 Å, where ZBL forces reach 209 eV/Å: the same
    spec refits them to 0.12 eV/Å, because the fit subtracts the pair term (it has no parameters) from the
    energies, forces and stresses; fitting the labels as they are leaves errors of 158 eV/Å (checked)."""
    spec = zbl_spec("tiny")
    teacher = etn.Potential.random(spec, seed=7)
    bare = etn.Potential(spec)  # every weight zero: the pair term alone
    frames, zbl_force = [], 0.0
    for c in range(30):
        atoms = random_crystal(spec.species, seed=c, reps=(2, 1, 1), a=3.4, rattle=0.2)
        r = teacher.evaluate(atoms, backend="numpy")
        frames.append(Frame(atoms, r["energy"], r["forces"], r["stress"], "teacher", f"c{c}"))
        zbl_force = max(zbl_force, np.abs(bare.evaluate(atoms, backend="numpy")["forces"]).max())
    assert zbl_force > 100
    pot = Fitter(spec, frames, None, FitSettings(sweeps=4, regularization=1e-14, backend="numpy"),
                 progress=False).run()
    err = max(np.abs(pot.evaluate(f.atoms, backend="numpy")["forces"] - f.forces).max() for f in frames)
    assert err < 2e-3 * zbl_force, (err, zbl_force)


def test_lammps_pair_zbl_gives_the_same_energy_differences(tmp_path):
    """LAMMPS's own ``pair_style zbl`` (inner 3, outer 4 Å: below 3 Å it is φ(r) plus a constant) against
    the model's pair term, as energy differences between dimer lengths."""
    try:
        find()
    except LammpsError as e:
        pytest.skip(f"LAMMPS is not available: {e}")
    rs = [0.5, 0.9, 1.3]
    pot = etn.Potential(zbl_spec("small"))
    for (a, za), (b, zb) in ((("Nb", 41), ("W", 74)), (("Mo", 42), ("Mo", 42))):
        lines = ["units metal", "atom_style atomic", "boundary f f f", "region box block -10 10 -10 10 -10 10",
                 "create_box 2 box", "mass * 1.0", "pair_style zbl 3.0 4.0", f"pair_coeff 1 1 {za} {za}",
                 f"pair_coeff 1 2 {za} {zb}", f"pair_coeff 2 2 {zb} {zb}", "create_atoms 1 single 0 0 0",
                 "create_atoms 2 single 0.5 0 0", "thermo_style custom step pe"]
        for k, r in enumerate(rs):
            lines += [f"set atom 2 x {r}", "run 0", f'print "$(pe:%.17g)" {"append" if k else "file"} pe.txt']
        (tmp_path / "in.zbl").write_text("\n".join(lines) + "\n")
        run("in.zbl", cwd=tmp_path)
        lmp = np.loadtxt(tmp_path / "pe.txt")
        mine = np.array([pot.evaluate(dimer(a, b, r))["energy"] for r in rs])
        np.testing.assert_allclose(mine - mine[-1], lmp - lmp[-1], rtol=1e-6)


@pytest.mark.filterwarnings("ignore::etn.ExtrapolationWarning")
def test_invariant_under_rotations_reflections_translations_and_permutations():
    from scipy.spatial.transform import Rotation

    pot = etn.Potential.random(zbl_spec(), seed=2, scale=0.1)
    atoms = random_cluster(["Cu", "Ni"], n=9, seed=4, box=4.0, min_dist=1.1)
    ref = pot.evaluate(atoms)
    scale = np.abs(ref["forces"]).max()
    for Q in (Rotation.random(random_state=5).as_matrix(), -np.eye(3)):
        moved = atoms.copy()
        moved.positions = atoms.positions @ Q.T + [0.7, -0.3, 1.9]
        res = pot.evaluate(moved)
        np.testing.assert_allclose(res["energies"], ref["energies"], atol=1e-12 * np.abs(ref["energies"]).max())
        np.testing.assert_allclose(res["forces"], ref["forces"] @ Q.T, atol=1e-12 * scale)
    perm = np.random.default_rng(1).permutation(len(atoms))
    res = pot.evaluate(atoms[perm])
    np.testing.assert_allclose(res["forces"], ref["forces"][perm], atol=1e-12 * scale)
    assert np.abs(ref["forces"].sum(axis=0)).max() < 1e-11 * scale  # no net force


@pytest.mark.filterwarnings("ignore::etn.ExtrapolationWarning")
def test_radial_basis_below_r_min_continues_linearly_and_fades_out():
    """With the pair term, T_n(ξ) continues as T_n(-1) + T_n'(-1)(ξ + 1) below r_min (ξ < -1), and the basis
    is multiplied by s = 1 - S, the complement of the pair term's switch: the numpy reference less the
    pair term equals the dense implementation of the maths; the basis is zero below 0.75 r_min and,
    with six radial functions, at 1.6 Å less than half of what the polynomials T_n(ξ) would give."""
    from .dense_reference import site_energies

    from etn.backends.reference import NumpyBackend, repulsion

    pot = etn.Potential.random(zbl_spec(), seed=5, scale=0.3)
    atoms = random_cluster(["Cu", "Ni"], n=8, seed=8, box=4.0, min_dist=1.0)
    pr = etn.io.neighbors.pairs(atoms, pot.spec)
    d = np.linalg.norm(pr.r, axis=1)
    assert d.min() < 1.35 and ((d > 1.35) & (d < 1.8)).any()
    e = pot.evaluate(atoms, backend="numpy")["energies"] - repulsion(pot.schedule.repulsion, pr)[0]
    np.testing.assert_allclose(e, site_energies(pot, atoms), rtol=1e-10, atol=1e-10)
    spec6 = zbl_spec(n_radial=6)
    Q, dQ = NumpyBackend(etn.schedule(spec6)).radial(np.array([1.2, 1.6]))
    plain = NumpyBackend(etn.schedule(Spec.from_dict(dict(spec6.to_dict(), repulsion="none")))).radial(np.array([1.6]))[0]
    assert not Q[0].any() and not dQ[0].any()
    assert np.abs(Q[1]).max() < 0.5 * np.abs(plain).max()  # measured 3.3 against 8.5 at 1.6 Å
