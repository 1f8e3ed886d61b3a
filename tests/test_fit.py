"""Fitting: design rows, orthogonalisation, rank truncation, teacher–student and EMT fits, CLI, bad input."""

import json
import warnings

import numpy as np
import pytest
from ase.io import write

import etn
import etn.cli
import etn.io.metrics
from etn.io.dataset import DataError, Frame, read, read_cfg
from etn.backends.design import DesignReference
from etn.fitting.fit import (FitError, FitSettings, Fitter, from_blocks, orthogonalize_input, orthogonalize_output,
                     orthogonalize_U, to_blocks)
from etn.generator import Spec
from etn.io.neighbors import pairs

from .conftest import random_cluster, random_crystal


def _predict(pot, atoms):
    return pot.evaluate(atoms, backend="numpy")


@pytest.mark.parametrize("cell", ["crystal", "triclinic", "cluster"])
def test_rows_reproduce_the_model(potential, cell):
    """rows · θ = the model's energies, forces and virial, for every group."""
    spec = potential.spec
    atoms = {"crystal": lambda: random_crystal(spec.species, seed=5),
             "triclinic": lambda: random_crystal(spec.species, seed=6, triclinic=True),
             "cluster": lambda: random_cluster(spec.species, n=7, seed=2)}[cell]()
    ref = _predict(potential, atoms)
    pr = pairs(atoms, spec)
    D = DesignReference(potential.schedule)
    e0 = potential.block("e0")[pr.species]
    scale = np.abs(ref["forces"]).max()
    assert scale > 0
    for name, g in D.groups.items():
        E, F, W = D.rows(potential.params, pr, g)
        th = potential.params[g.cols]
        if name == "e0":
            np.testing.assert_allclose(E @ th, e0, atol=1e-14)
            assert not F.any() and not W.any()
            continue
        np.testing.assert_allclose(E @ th + e0, ref["energies"], rtol=1e-12, atol=1e-12 * scale)
        np.testing.assert_allclose(F @ th, ref["forces"], rtol=1e-10, atol=1e-12 * scale)
        np.testing.assert_allclose(-(W @ th), ref["virial"], rtol=1e-10, atol=1e-12 * scale)


def test_force_rows_match_finite_differences():
    """Each force row is minus the derivative of its energy row (one random combination of columns)."""
    spec = etn.catalogue.load("compressed")
    pot = etn.Potential.random(spec, seed=2)
    atoms = random_crystal(spec.species, seed=3, reps=(1, 1, 2))
    D = DesignReference(pot.schedule)
    rng = np.random.default_rng(0)
    for name in ("core1.U", "core2"):
        g = D.groups[name]
        v = rng.normal(size=g.size)
        F = D.rows(pot.params, pairs(atoms, spec), g)[1] @ v
        h = 1e-5
        for a, c in [(0, 0), (3, 2), (5, 1)]:
            e = []
            for s in (h, -h):
                at = atoms.copy()
                at.positions[a, c] += s
                e.append(D.rows(pot.params, pairs(at, spec), g, forces=False)[0].sum(axis=0) @ v)
            assert abs(-(e[0] - e[1]) / (2 * h) - F[a, c]) < 1e-7 * max(1, abs(F[a, c]))


def test_orthogonalisation_keeps_the_model():
    spec = etn.catalogue.load("compressed")
    pot = etn.Potential.random(spec, seed=4, backend="numpy")
    atoms = random_crystal(spec.species, seed=1)
    ref = _predict(pot, atoms)
    blocks = to_blocks(pot)
    orthogonalize_U(spec, blocks, 2)
    assert orthogonalize_output(spec, blocks, 1) == spec
    orthogonalize_input(spec, blocks, 3, 2)
    new = etn.Potential(spec, from_blocks(spec, blocks), backend="numpy")
    out = _predict(new, atoms)
    np.testing.assert_allclose(out["energies"], ref["energies"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(out["forces"], ref["forces"], rtol=1e-10, atol=1e-12)
    assert not np.allclose(new.params, pot.params)
    # the orthogonalised blocks are orthonormal per irrep of the bond
    sched = new.schedule
    U = new.block("core2.U.l1")
    np.testing.assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-12)
    for t in sched.bonds[1].terms:
        M = np.concatenate([new.block(p.param).reshape(-1, t.rank) for p in sched.cores[0].paths
                            if p.L_out == t.L])
        np.testing.assert_allclose(M.T @ M, np.eye(t.rank), atol=1e-12)
    for t in sched.bonds[2].terms:
        M = np.concatenate([new.block(p.param).reshape(t.rank, -1) for p in sched.cores[2].paths
                            if p.L_in == t.L], axis=1)
        np.testing.assert_allclose(M @ M.T, np.eye(t.rank), atol=1e-12)


def test_tree_gauge_moves_across_each_bond_and_keeps_the_model():
    """In a network with core 3 = (bond 1, bond 2), the gauge moves up bond 1 into core 3's first leg, up
    bond 2 into its second, and down either bond into a leaf: the predictions stay, the moved-from core
    is orthonormal per irrep of the bond it left by."""
    spec = etn.catalogue.load("network")
    pot = etn.Potential.random(spec, seed=4, backend="numpy")
    atoms = random_crystal(spec.species, seed=1)
    ref = _predict(pot, atoms)
    sched = pot.schedule
    for move in ("up1", "up2", "down1", "down2"):
        blocks = to_blocks(pot)
        j = int(move[-1])
        if move.startswith("up"):
            assert orthogonalize_output(spec, blocks, j) == spec
            for t in sched.bonds[j].terms:
                M = np.concatenate([blocks[p.param].reshape(-1, t.rank) for p in sched.core(j).paths
                                    if p.L_out == t.L])
                np.testing.assert_allclose(M.T @ M, np.eye(t.rank), atol=1e-12)
        else:
            orthogonalize_input(spec, blocks, 3, j)
            axis = -3 if j == 1 else -2
            for t in sched.bonds[j].terms:
                M = np.concatenate([np.moveaxis(blocks[p.param], axis, 0).reshape(t.rank, -1)
                                    for p in sched.cores[2].paths if (p.L_in if j == 1 else p.l) == t.L], axis=1)
                np.testing.assert_allclose(M @ M.T, np.eye(t.rank), atol=1e-12)
        new = etn.Potential(spec, from_blocks(spec, blocks), backend="numpy")
        assert not np.allclose(new.params, pot.params)
        out = _predict(new, atoms)
        np.testing.assert_allclose(out["energies"], ref["energies"], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(out["forces"], ref["forces"], rtol=1e-10, atol=1e-12)


def test_truncation_drops_redundant_rank_and_keeps_the_model():
    """A bond whose rank-2 irrep block has rank 1 is truncated to rank 1 with the same predictions."""
    spec = etn.catalogue.load("tiny")  # bond 1: 2x0 + 1x1
    pot = etn.Potential.random(spec, seed=5, backend="numpy")
    blocks = to_blocks(pot)
    for p in pot.schedule.cores[0].paths:
        if p.L_out == 0:
            b = blocks[p.param]
            b[..., 1] = 0.5 * b[..., 0]  # second column a multiple of the first
    pot = etn.Potential(spec, from_blocks(spec, blocks), backend="numpy")
    atoms = random_crystal(spec.species, seed=2)
    ref = _predict(pot, atoms)
    new_spec = orthogonalize_output(spec, blocks, 1, rank_tol=1e-10)
    assert str(new_spec.bond(1)) == "1x0 + 1x1"
    small = etn.Potential(new_spec, from_blocks(new_spec, blocks), backend="numpy")
    assert small.schedule.n_params < pot.schedule.n_params
    np.testing.assert_allclose(_predict(small, atoms)["forces"], ref["forces"], rtol=1e-10, atol=1e-13)
    # a cap on the rank truncates even a full-rank block
    blocks = to_blocks(etn.Potential.random(spec, seed=6))
    assert str(orthogonalize_output(spec, blocks, 1, max_rank=1).bond(1)) == "1x0 + 1x1"


# -- teacher–student ----------------------------------------------------------------------------------
def _teacher_frames(teacher, n, seed, reps=(2, 1, 1)):
    out = []
    for c in range(n):
        rng = np.random.default_rng(seed * 1000 + c)
        atoms = random_crystal(teacher.spec.species, seed=seed * 1000 + c, reps=reps, a=3.6 + 0.1 * rng.normal())
        r = teacher.evaluate(atoms, backend="numpy")
        out.append(Frame(atoms, r["energy"], r["forces"], r["stress"], "teacher", f"c{c}"))
    return out


def _max_errors(pot, frames):
    de = max(abs(pot.evaluate(f.atoms, backend="numpy")["energy"] - f.energy) / f.n_atoms for f in frames)
    df = max(np.abs(pot.evaluate(f.atoms, backend="numpy")["forces"] - f.forces).max() for f in frames)
    return de, df


def test_teacher_student_same_spec_reaches_machine_precision():
    spec = etn.catalogue.load("tiny")
    teacher = etn.Potential.random(spec, seed=7)
    teacher.block("e0")[:] = -3.0
    # 60 configurations: with 30, the final Levenberg-Marquardt steps can stall near 1e-9 eV/Å
    train, valid = _teacher_frames(teacher, 60, 1), _teacher_frames(teacher, 10, 2)
    # polish: at most 30 Levenberg-Marquardt steps (it stops at a loss below 1e-30); how many it needs
    # depends on rounding (the pair order, BLAS), 8 to 13 in the runs so far
    s = FitSettings(sweeps=6, polish=30, regularization=1e-14, patience=10)  # C design rows
    pot = Fitter(spec, train, valid, s, progress=False).run()
    de, df = _max_errors(pot, valid)
    assert de < 1e-10 and df < 1e-9, (de, df)


def test_tree_teacher_student_reaches_machine_precision():
    """ALS over the cores of a tree recovers a tree teacher: one solve of a scrambled core (the model is
    linear in it) and, from a start near the teacher, sweeps with the gauge moving along the tree's bonds
    (leaf -> root -> leaf between consecutive cores) and the polish reach machine precision."""
    spec = etn.catalogue.load("tree")
    teacher = etn.Potential.random(spec, seed=7, scale=1.5)
    teacher.block("e0")[:] = -3.0
    train, valid = _teacher_frames(teacher, 40, 1), _teacher_frames(teacher, 10, 2)
    s = FitSettings(sweeps=4, polish=20, regularization=1e-14, patience=10, reference_energies={"Cu": -3.0, "Ni": -3.0})
    rng = np.random.default_rng(0)
    for k in range(1, spec.cores + 1):
        start = etn.Potential(spec, teacher.params.copy())
        for b in start.schedule.params:
            if b.group == f"core{k}":
                start.block(b.name)[...] = rng.normal(size=b.shape)
        f = Fitter(spec, train, valid, s, progress=False, init=start)
        before = f.loss(train, start)
        assert before > 1e-6
        assert f.solve(f"core{k}") < 1e-10 * before, k  # round-off of the normal equations
    near = etn.Potential(spec, teacher.params * (1 + 1e-3 * rng.normal(size=teacher.params.size)))
    pot = Fitter(spec, train, valid, s, progress=False, init=near).run()
    de, df = _max_errors(pot, valid)
    assert de < 1e-10 and df < 1e-9, (de, df)


def test_teacher_student_smaller_spec_documented_error():
    """A 2-species teacher with bond 3x0 + 2x1 + 1x2 fitted by bond 2x0 + 1x1: README states the error."""
    big = Spec.from_dict({"species": ["Cu", "Ni"], "r_min": 1.5, "r_cut": 4.0, "n_radial": 3, "l_max": 2,
                          "cores": 2, "bonds": ["3x0 + 2x1 + 1x2"]})
    small = Spec.from_dict({**big.to_dict(), "bonds": ["2x0 + 1x1"]})
    teacher = etn.Potential.random(big, seed=8)
    train, valid = _teacher_frames(teacher, 30, 3), _teacher_frames(teacher, 10, 4)
    f_rms = np.sqrt(np.mean(np.concatenate([f.forces.ravel() for f in valid]) ** 2))
    s = FitSettings(sweeps=8, polish=4, backend="numpy")
    pot = Fitter(small, train, valid, s, progress=False).run()
    assert pot.schedule.n_params < teacher.schedule.n_params
    df = np.sqrt(np.mean(np.concatenate([(pot.evaluate(f.atoms, backend="numpy")["forces"] - f.forces).ravel()
                                         for f in valid]) ** 2))
    assert df < 0.35 * f_rms, (df, f_rms)


def _emt_frames(n, seed):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    out = []
    for c in range(n):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
        atoms.symbols = rng.choice(["Cu", "Ni", "Pd", "Ag", "Au"], len(atoms))
        strain = np.eye(3) + 0.03 * rng.normal(size=(3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(0.1, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        out.append(Frame(atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(), "emt",
                         f"emt{c}"))
    return out


def test_fits_emt_alloy_to_documented_error():
    """Cu-Ni-Pd-Ag-Au (ASE EMT), rattled and strained 8-atom cells: README states the errors."""
    spec = Spec.from_dict({"species": ["Cu", "Ni", "Pd", "Ag", "Au"], "r_min": 1.8, "r_cut": 4.5, "n_radial": 3,
                           "l_max": 2, "cores": 2, "bonds": ["3x0 + 2x1 + 2x2"], "compression": 5})
    train, valid = _emt_frames(60, 1), _emt_frames(15, 2)
    pot = Fitter(spec, train, valid, FitSettings(sweeps=6, backend="numpy"), progress=False).run()
    rep = etn.io.metrics.errors(pot, valid, backend="numpy")["overall"]
    f_rms = np.sqrt(np.mean(np.concatenate([f.forces.ravel() for f in valid]) ** 2))  # 2.16 eV/Å
    e_std = 1e3 * np.std([f.energy / f.n_atoms for f in valid])  # 251 meV/atom
    assert rep["energy_rmse"] < 0.15 * e_std, (rep, e_std)  # measured 28.8 meV/atom (18.7 with the old ridge)
    assert rep["forces_rmse"] < 0.1 * f_rms, (rep, f_rms)  # measured 0.180 eV/Å (0.175)


def test_same_seed_same_model_and_interrupt_keeps_best(tmp_path):
    spec = etn.catalogue.load("tiny")
    teacher = etn.Potential.random(spec, seed=9)
    train = _teacher_frames(teacher, 8, 5)
    s = FitSettings(sweeps=3, backend="numpy", seed=3)
    a = Fitter(spec, train, None, s, progress=False).run()
    b = Fitter(spec, train, None, s, progress=False).run()
    assert np.array_equal(a.params, b.params)
    c = Fitter(spec, train, None, FitSettings(sweeps=3, backend="numpy", seed=4), progress=False).run()
    assert not np.array_equal(a.params, c.params)

    def stop(row):
        if row["sweep"] == 2:
            raise KeyboardInterrupt

    f = Fitter(spec, train, None, FitSettings(sweeps=5, backend="numpy", patience=9), progress=False)
    pot = f.run(on_sweep=stop)
    assert f.interrupted and len(f.history) == 2
    assert pot.metadata["valid_loss"] == min(h["valid_loss"] for h in f.history)


def test_pairs_below_r_min_are_named():
    """Training pairs closer than r_min (radial basis extrapolated) give a warning with the distance,
    passed on before the first sweep rather than at the end of the fit."""
    spec = etn.catalogue.load("tiny")
    train = _teacher_frames(etn.Potential.random(spec, seed=2), 2, 7)
    short = min(np.sqrt(np.min(np.sum(pairs(f.atoms, spec).r ** 2, axis=1))) for f in train)
    for r_min, warned in ((short - 0.05, False), (short + 0.05, True)):
        narrow = Spec.from_dict(dict(spec.to_dict(), r_min=round(r_min, 3)))
        seen = []
        f = Fitter(narrow, train, None, FitSettings(sweeps=2, backend="numpy"), progress=False,
                   on_warning=lambda msg: seen.append((msg, len(f.history))))
        f.run()
        hits = [w for w in f.warnings if "r_min" in w]
        assert bool(hits) == warned
        assert [msg for msg, _ in seen] == f.warnings
        if warned:
            assert f"{short:.3f} Å" in hits[0]
            assert [n for msg, n in seen if "r_min" in msg] == [0]


def test_singular_system_stays_finite():
    """One configuration, many parameters and no regularisation: a finite (minimum-norm) solution."""
    spec = etn.catalogue.load("binary")
    teacher = etn.Potential.random(spec, seed=1)
    train = _teacher_frames(teacher, 1, 6, reps=(1, 1, 1))
    pot = Fitter(spec, train, None, FitSettings(sweeps=2, regularization=0.0, backend="numpy"), progress=False).run()
    assert np.all(np.isfinite(pot.params))


# -- data and command line ------------------------------------------------------------------------------
def _write_cfg(frames, path, species):
    with open(path, "w") as fh:
        for f in frames:
            a = f.atoms
            fh.write(f"BEGIN_CFG\n Size\n {len(a)}\n Supercell\n")
            for v in a.cell.array:
                fh.write(f" {v[0]:.12f} {v[1]:.12f} {v[2]:.12f}\n")
            fh.write(" AtomData:  id type       cartes_x      cartes_y      cartes_z           fx          fy          fz\n")
            for k, (s, x, F) in enumerate(zip(a.get_chemical_symbols(), a.positions, f.forces)):
                fh.write(f" {k + 1} {species.index(s)} {x[0]:.12f} {x[1]:.12f} {x[2]:.12f} "
                         f"{F[0]:.12f} {F[1]:.12f} {F[2]:.12f}\n")
            ps = -f.stress * a.get_volume()
            fh.write(f" Energy\n {f.energy:.12f}\n PlusStress:  xx          yy          zz          yz          xz          xy\n")
            fh.write(" " + " ".join(f"{x:.12f}" for x in ps) + "\n Feature   config_type  emt\nEND_CFG\n\n")


def test_cfg_reader_matches_extxyz(tmp_path):
    frames = _emt_frames(3, 7)
    species = ["Cu", "Ni", "Pd", "Ag", "Au"]
    _write_cfg(frames, tmp_path / "d.cfg", species)
    back = read_cfg(tmp_path / "d.cfg", species)
    assert len(back) == 3
    for f, g in zip(frames, back):
        assert f.atoms.get_chemical_symbols() == g.atoms.get_chemical_symbols()
        np.testing.assert_allclose(g.atoms.positions, f.atoms.positions, atol=1e-11)
        np.testing.assert_allclose(g.forces, f.forces, atol=1e-11)
        np.testing.assert_allclose(g.stress, f.stress, atol=1e-11)
        assert abs(g.energy - f.energy) < 1e-11 and g.config_type == "emt"
    (tmp_path / "bad.cfg").write_text("BEGIN_CFG\n Size\n 2\n AtomData: id type cartes_x\n 1 0 0.0\n")
    with pytest.raises(DataError, match="bad.cfg"):
        read_cfg(tmp_path / "bad.cfg", species)
    with pytest.raises(DataError, match="type 4 has no element"):
        read_cfg(tmp_path / "d.cfg", species[:2])


def test_bad_data_is_named(tmp_path):
    frames = _emt_frames(3, 8)
    images = [f.atoms for f in frames]
    write(tmp_path / "ok.xyz", images)
    with pytest.raises(DataError, match="Ag|Au|Pd"):
        read(tmp_path / "ok.xyz", ["Cu", "Ni"])
    nan = [a.copy() for a in images]
    for a, f in zip(nan, frames):
        from ase.calculators.singlepoint import SinglePointCalculator
        F = f.forces.copy()
        a.calc = SinglePointCalculator(a, energy=f.energy, forces=F)
    nan[1].calc.results["forces"][0, 0] = np.nan
    write(tmp_path / "nan.xyz", nan)
    with pytest.raises(DataError, match=r"nan.xyz\[1\].*NaN"):
        read(tmp_path / "nan.xyz", ["Cu", "Ni", "Pd", "Ag", "Au"])
    bare = [a.copy() for a in images]  # no labels at all
    write(tmp_path / "bare.xyz", [images[0]] + bare[1:])
    with pytest.raises(DataError, match=r"bare.xyz\[1\]: has no energy"):
        read(tmp_path / "bare.xyz", ["Cu", "Ni", "Pd", "Ag", "Au"])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kept = read(tmp_path / "bare.xyz", ["Cu", "Ni", "Pd", "Ag", "Au"], missing="skip")
    assert len(kept) == 1 and any("skipped 2" in str(x.message) for x in w)
    with pytest.raises(DataError, match="no such data file"):
        read(tmp_path / "none*.xyz", ["Cu"])
    with pytest.raises(FitError, match="force_weight"):
        FitSettings(force_weight=-1)


def test_cli_fit_and_eval(tmp_path, capsys):
    frames = _emt_frames(12, 3)
    write(tmp_path / "train.xyz", [f.atoms for f in frames[:10]])
    write(tmp_path / "test.xyz", [f.atoms for f in frames[10:]])
    (tmp_path / "spec.toml").write_text(
        'species = ["Cu", "Ni", "Pd", "Ag", "Au"]\nr_min = 1.8\nr_cut = 4.0\nn_radial = 2\nl_max = 1\ncores = 2\n'
        'bonds = ["2x0 + 1x1"]\n')
    (tmp_path / "fit.toml").write_text(
        '[model]\nspec = "spec.toml"\n[data]\ntrain = ["train.xyz"]\nvalid_fraction = 0.2\ntest = ["test.xyz"]\n'
        '[fit]\nsweeps = 2\nbackend = "numpy"\n[output]\ndir = "out"\n')
    assert etn.cli.main(["fit", str(tmp_path / "fit.toml"), "-q"]) == 0
    out = tmp_path / "out"
    for name in ("model.etn", "report.txt", "report.json", "parity_train.png", "parity_valid.png",
                 "parity_test.png", "learning_curve.png"):
        assert (out / name).stat().st_size > 0, name
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["sweeps"]) == 2 and rep["train"]["overall"]["configs"] == 8
    capsys.readouterr()
    assert etn.cli.main(["eval", str(out / "model.etn"), str(tmp_path / "test.xyz"), "--backend", "numpy",
                         "--json", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["overall"]["energy_rmse"] == pytest.approx(rep["test"]["overall"]["energy_rmse"], rel=1e-9)
    assert "all" in capsys.readouterr().out
    (tmp_path / "spec.toml").write_text((tmp_path / "spec.toml").read_text().replace("r_min = 1.8", "r_min = 3.0"))
    (tmp_path / "fit.toml").write_text((tmp_path / "fit.toml").read_text().replace("sweeps = 2", "sweeps = 1\npolish = 1"))
    assert etn.cli.main(["fit", str(tmp_path / "fit.toml"), "-q"]) == 0
    log = capsys.readouterr().out
    assert "warning: training pairs come as close as" in log
    assert log.index("warning: training pairs") < log.index("polish step 1")  # when it arises, not after the fit
    assert json.loads((out / "report.json").read_text())["warnings"][0].startswith("training pairs come")
    assert again["below_r_min"] == []  # the r_min 1.8 model: nothing below it
    assert etn.cli.main(["eval", str(out / "model.etn"), str(tmp_path / "test.xyz"), "--backend", "numpy",
                         "--json", str(tmp_path / "e.json")]) == 0
    assert "2 of 2 configurations have atoms closer than the model's r_min (3 Å" in capsys.readouterr().out
    close = json.loads((tmp_path / "e.json").read_text())["below_r_min"]
    assert [c["source"] for c in close] == [f"{tmp_path / 'test.xyz'}[{k}]" for k in (0, 1)]
    assert all(0.1 < c["shortest"] < 3.0 for c in close)
    (tmp_path / "bad.toml").write_text('[model]\nspec = "spec.toml"\n[data]\ntrain = ["train.xyz"]\n[fit]\nsweep = 2\n')
    assert etn.cli.main(["fit", str(tmp_path / "bad.toml")]) == 2
    assert "unknown key(s) sweep" in capsys.readouterr().err
