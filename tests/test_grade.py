"""Extrapolation grades: MaxVol maths, the rows they read, a model fitted on EMT unaries and binaries
graded on what it has and has not seen, the active-set file, the ASE calculator and the commands."""

import itertools

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from etn.fitting import grade
from etn.cli import main
from etn.backends import design as design_mod
from etn.backends.design import groups
from etn.fitting.fit import FitSettings, Fitter
from etn.generator import Spec
from etn.io.neighbors import pairs
from etn.potential import Potential

from .test_transfer import ELEMENTS, emt_frame, lattice_constant

THRESHOLD = 2.0  # the grade above which etn grade flags a configuration, as MTP's lower threshold


def test_maxvol_bounds_every_row_and_is_locally_maximal():
    """Every row of Z is a combination of the chosen rows with |c| ≤ 1, so no single swap of a chosen
    row for another row increases |det| (swapping row j for row i multiplies it by |c_ij|); on a small
    matrix the result is compared with the largest |det| over all subsets."""
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 7)) * np.array([1, 10, 0.1, 1, 3, 1, 0.01])
    idx = grade.maxvol(Z)
    assert len(set(idx.tolist())) == 7
    C = np.linalg.solve(Z[idx].T, Z.T).T
    assert np.abs(C).max() <= 1 + 1e-9
    assert np.allclose(C[idx], np.eye(7), atol=1e-12)
    small = rng.normal(size=(9, 3))
    best = max(abs(np.linalg.det(small[list(s)])) for s in itertools.combinations(range(9), 3))
    got = abs(np.linalg.det(small[grade.maxvol(small)]))
    assert got >= 0.5 * best  # a local maximum of volume is within a factor r^(r/2) of the global one; here close
    assert np.abs(np.linalg.solve(small[grade.maxvol(small)].T, small.T)).max() <= 1 + 1e-9


def test_site_rows_are_the_site_energies_and_agree_between_c_and_numpy(potential, spec):
    """Per-atom rows of every group: C equals the numpy reference, and rows · θ_group (+ e0) is the
    backend's own site energy (the model is linear in each group); the fused rows of core 1 from the
    evaluation kernels (float64 and float32, folded cores or not, chain or tree) equal them too."""
    from etn.backends.cdesign import CDesign
    from etn.backends.design import DesignReference

    from .conftest import random_crystal

    atoms = random_crystal(spec.species, seed=3)
    pr = pairs(atoms, spec)
    sched = potential.schedule
    e = potential.evaluate(atoms, forces=False)["energies"]
    c, ref = CDesign(sched), DesignReference(sched)
    for name, g in groups(sched).items():
        if name == "e0":
            continue
        Xc = c.site_rows(potential.params, [pr, pr], name)
        Xn = ref.site_rows(potential.params, [pr], name)
        assert Xc.shape == (2 * len(atoms), g.size)
        assert np.allclose(Xc[:len(atoms)], Xn, rtol=1e-10, atol=1e-12) and np.allclose(Xc[len(atoms):], Xn)
        assert np.allclose(Xn @ potential.params[g.cols] + potential.block("e0")[pr.species], e, atol=1e-10)
    # the evaluation kernels write the species-specific core's rows (core 1 of a chain, the root of a tree)
    # for each atom's species in the same pass as the forces
    from etn.backends.cbackend import CBackend

    graded = design_mod.default_group(sched)
    assert graded == ("core1" if spec.topology == "tensor_train" else f"core{spec.cores}")  # else: the root
    cols = design_mod.species_columns(sched, graded)
    X = ref.site_rows(potential.params, [pr], graded)
    want = np.stack([X[i, cols[s]] for i, s in enumerate(pr.species)])
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-4)):
        e2, g2, R, _ = CBackend(sched, dtype).compute_graded(potential.params, pr)
        np.testing.assert_allclose(R, want, rtol=0, atol=tol * np.abs(want).max())
        e1, g1 = CBackend(sched, dtype).compute(potential.params, pr)
        assert np.array_equal(e1, e2) and np.array_equal(g1, g2)  # the grade rows change nothing else


def binaries(per_system, seed):
    rng = np.random.default_rng(seed)
    systems = [[a] for a in ELEMENTS] + [list(p) for p in itertools.combinations(ELEMENTS, 2)]
    return [emt_frame(s, rng) for s in systems for _ in range(per_system)]


def random_alloy(symbols, seed, reps=2):
    atoms = bulk("Cu", "fcc", a=lattice_constant(symbols), cubic=True).repeat(reps)
    atoms.symbols = np.resize(np.array(symbols), len(atoms))[np.random.default_rng(seed).permutation(len(atoms))]
    atoms.positions += 0.05 * np.random.default_rng(seed + 1).normal(size=atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted on 16-atom EMT unaries and binaries of Cu Ni Pd Ag Au, its file and active set."""
    spec = Spec.from_dict({"species": ELEMENTS, "r_min": 1.8, "r_cut": 5.0, "n_radial": 4, "l_max": 2, "cores": 2,
                           "bonds": ["3x0 + 2x1 + 2x2"], "compression": 5, "repulsion": "zbl"})
    train = binaries(4, 0)
    pot = Fitter(spec, train, binaries(1, 1), FitSettings(sweeps=3), progress=False).run()
    d = tmp_path_factory.mktemp("grade")
    pot.save(d / "model.etn")
    write(d / "train.xyz", [f.atoms for f in train])
    aset = grade.build(pot, [f.atoms for f in train])
    aset.save(d / "model.aset")
    return pot, aset, [f.atoms for f in train], d


def test_training_atoms_and_configurations_grade_at_most_one(fitted):
    pot, aset, train, _ = fitted
    res = grade.Grader(pot, aset).configs(train)
    assert max(g.max() for g, _ in res) <= 1 + 1e-9
    assert max(c for _, c in res) <= 1 + 1e-9
    # the active rows are training rows: each grades exactly 1 against itself
    assert sum(b.rank for b in aset.atom_blocks.values()) > 0
    assert all(b.rank > 0 for b in aset.atom_blocks.values())  # every element has training atoms


def test_unseen_quinary_extrapolates_and_a_new_binary_does_not(fitted):
    """Fitted on unaries and binaries (60 cells of 16 atoms): random 5-component cells grade above the
    threshold; fresh cells drawn like the training binaries mostly below it, and every one below every
    quinary. Measured: quinaries 3.1-5.3, fresh binaries 0.81-2.05 (median 1.2)."""
    pot, aset, _, _ = fitted
    g = grade.Grader(pot, aset)
    quinaries = [g.atoms(random_alloy(ELEMENTS, seed)).max() for seed in range(3)]
    fresh = np.array([g.atoms(f.atoms).max() for f in binaries(1, 11)])  # new draws of the training distribution
    assert min(quinaries) > THRESHOLD
    assert np.mean(fresh < THRESHOLD) >= 0.9
    assert fresh.max() < min(quinaries)


def test_grades_are_invariant_under_rotation_reflection_translation_and_permutation(fitted):
    pot, aset, _, _ = fitted
    g = grade.Grader(pot, aset)
    atoms = random_alloy(ELEMENTS[:3], 3)
    ref = g.atoms(atoms)
    rng = np.random.default_rng(4)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    Q[:, 0] *= -1 if np.linalg.det(Q) > 0 else 1  # a reflection as well as a rotation
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ Q.T, scale_atoms=False)
    moved.positions = atoms.positions @ Q.T + rng.normal(size=3)
    assert np.allclose(g.atoms(moved), ref, rtol=1e-8)
    perm = rng.permutation(len(atoms))
    assert np.allclose(g.atoms(atoms[perm]), ref[perm], rtol=1e-8)


def test_calculator_returns_gamma(fitted):
    from etn.hosts.calculator import Calculator

    pot, aset, _, d = fitted
    atoms = random_alloy(ELEMENTS, 8)
    atoms.calc = Calculator(d / "model.etn", gamma=True)
    gam = atoms.calc.get_property("gamma", atoms)
    assert np.allclose(gam, grade.Grader(pot, aset).atoms(atoms), rtol=1e-12)
    # the kernels' grades (same pass as the forces) against the design rows' (an independent path)
    pr = pairs(atoms, pot.spec)
    X = grade.Grader(pot, aset).rows([pr])
    np.testing.assert_allclose(gam, aset.grade_atoms(X, pr.species), rtol=1e-10)
    # float32 kernels: the same grades to float32 precision
    f32 = grade.Grader(Potential(pot.spec, pot.params, backend="c-float32"), aset).atoms(atoms)
    np.testing.assert_allclose(f32, gam, rtol=1e-4)
    assert atoms.calc.gamma_max == pytest.approx(gam.max())
    atoms.calc = Calculator(d / "model.etn")
    from ase.calculators.calculator import PropertyNotImplementedError

    with pytest.raises(PropertyNotImplementedError, match="gamma=True"):
        atoms.calc.get_property("gamma", atoms)


def test_active_set_file_round_trip_and_bad_files(fitted, tmp_path):
    pot, aset, train, d = fitted
    loaded = grade.ActiveSet.load(d / "model.aset", pot)
    atoms = random_alloy(ELEMENTS, 9)
    assert np.array_equal(grade.Grader(pot, loaded).atoms(atoms), grade.Grader(pot, aset).atoms(atoms))
    text = (d / "model.aset").read_text()
    bad = tmp_path / "bad.aset"
    bad.write_text(text.replace("block atoms 0", "block atoms 1", 1))
    with pytest.raises(grade.ActiveSetError, match="corrupt"):
        grade.ActiveSet.load(bad, pot)
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(grade.ActiveSetError, match="truncated"):
        grade.ActiveSet.load(bad, pot)
    bad.write_text("hello\n")
    with pytest.raises(grade.ActiveSetError, match="not an etn active set"):
        grade.ActiveSet.load(bad, pot)
    other = Potential(pot.spec, pot.params * 1.001)
    with pytest.raises(grade.ActiveSetError, match="another model"):
        grade.ActiveSet.load(d / "model.aset", other)
    with pytest.raises(grade.ActiveSetError, match="etn activeset"):
        grade.ActiveSet.load(tmp_path / "none.aset", pot)


def test_select_picks_what_extends_the_active_set_once(fitted):
    """Candidates: a training configuration (γ ≤ 1: never picked), a random quinary twice (a duplicate:
    picked once) and a quaternary. The quinary comes first (the largest γ)."""
    pot, aset, train, _ = fitted
    quinary = random_alloy(ELEMENTS, 12)
    cands = [train[0], quinary, quinary.copy(), random_alloy(ELEMENTS[:4], 13)]
    picked = grade.select(pot, aset, cands, n=4)
    idx = [c for c, _ in picked]
    assert 0 not in idx and not (1 in idx and 2 in idx)
    assert idx[0] in (1, 2, 3) and picked[0][1] > THRESHOLD
    assert [g for _, g in picked] == sorted([g for _, g in picked], reverse=True) or len(picked) <= 2
    assert grade.select(pot, aset, cands, n=1) == picked[:1]


def test_commands(fitted, tmp_path, capsys):
    import json

    pot, aset, train, d = fitted
    write(tmp_path / "cands.xyz", [random_alloy(ELEMENTS, 20), train[1], random_alloy(ELEMENTS[:3], 21)])
    assert main(["activeset", str(d / "model.etn"), str(d / "train.xyz"), "-o", str(tmp_path / "m.aset"), "-q"]) == 0
    assert "configurations" in capsys.readouterr().out
    assert main(["grade", str(d / "model.etn"), str(tmp_path / "cands.xyz"), "--active-set", str(tmp_path / "m.aset"),
                 "--json", str(tmp_path / "g.json"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "extrapolating" in out
    rep = json.loads((tmp_path / "g.json").read_text())["configurations"]
    assert len(rep) == 3 and rep[1]["gamma_atoms_max"] <= 1 + 1e-9 and rep[0]["gamma_atoms_max"] > THRESHOLD
    assert main(["select", str(d / "model.etn"), str(tmp_path / "cands.xyz"), "-n", "1", "-o",
                 str(tmp_path / "sel.xyz"), "-q"]) == 0
    from ase.io import read

    sel = read(tmp_path / "sel.xyz", ":")
    top = int(np.argmax([r["gamma_atoms_max"] for r in rep]))  # select's first pick is grade's worst
    assert len(sel) == 1 and sel[0].info["etn_candidate"] == top
    assert sel[0].info["etn_gamma"] == pytest.approx(rep[top]["gamma_atoms_max"], rel=1e-6)  # extxyz: 8 digits
    assert main(["grade", str(tmp_path / "cands.xyz"), str(tmp_path / "cands.xyz")]) == 2  # not a model
    (tmp_path / "lonely.etn").write_bytes((d / "model.etn").read_bytes())
    assert main(["grade", str(tmp_path / "lonely.etn"), str(tmp_path / "cands.xyz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "etn activeset" in err[-1]


def test_learning_loop_labels_what_md_extrapolates_to():
    """Two iterations of etn.workflows.learn from 10 EMT configurations on a random quinary: the first MD
    extrapolates (γ above the threshold), the picked snapshots are labelled by the calculator and join
    the training data, and the refitted model's active set covers them (γ ≤ 1)."""
    from ase.calculators.emt import EMT

    from etn.workflows.learn import learn

    rng = np.random.default_rng(0)
    systems = [[e] for e in ELEMENTS] + [list(p) for p in itertools.combinations(ELEMENTS, 2)][:5]
    initial = [emt_frame(s, rng) for s in systems]
    spec = Spec.from_dict({"species": ELEMENTS, "r_min": 1.8, "r_cut": 5.0, "n_radial": 4, "l_max": 2, "cores": 2,
                           "bonds": ["3x0 + 2x1 + 2x2"], "compression": 5, "repulsion": "zbl"})
    seen = []
    pot, history = learn(spec, initial, [random_alloy(ELEMENTS, 1)], EMT(), FitSettings(sweeps=2), steps=20,
                         sample=10, per_iteration=2, max_iterations=1,
                         on_iteration=lambda it, p, frames: seen.append(list(frames)), log=lambda *_: None)
    assert len(history) == 2 and history[0].gamma_max > THRESHOLD and 1 <= len(history[0].picked) <= 2
    added = seen[0][len(initial):]
    assert history[1].n_train == len(initial) + len(added)
    for f in added:  # labelled by EMT, not by the model
        a = f.atoms.copy()
        a.calc = EMT()
        assert f.energy == pytest.approx(a.get_potential_energy(), abs=1e-10)
    aset = grade.build(pot, [f.atoms for f in seen[-1]])
    assert max(grade.Grader(pot, aset).atoms(f.atoms).max() for f in added) <= 1 + 1e-9
