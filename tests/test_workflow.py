"""The fitting workflow around the fit: data keys, groups, weights, splits, restarts, predictions."""

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.io import read, write

import etn
from etn.io import dataset
from etn.cli import main
from etn.fitting.fit import FitSettings, Fitter

from .conftest import random_cluster, random_crystal


def labelled(n, seed0=0, group="bulk", **info):
    out = []
    for seed in range(seed0, seed0 + n):
        a = random_crystal(["Cu", "Ni"], seed=seed, reps=(1, 1, 1), a=3.6, rattle=0.1)
        a.calc = EMT()
        a.get_potential_energy()
        a.info.update(config_type=group, **info)
        out.append(a)
    return out


def test_label_keys_virial_and_groups(tmp_path):
    a = labelled(1)[0]
    e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
    b = a.copy()
    b.info.update(REF_energy=e, virial=-s[[0, 5, 4, 5, 1, 3, 4, 3, 2]].reshape(3, 3) * a.get_volume(), kind="hot")
    b.arrays["REF_forces"] = f
    write(tmp_path / "d.xyz", [b])
    fr = dataset.read(tmp_path / "d.xyz", ["Cu", "Ni"],
                      keys={"energy": "REF_energy", "forces": "REF_forces", "group": "kind"})[0]
    assert fr.energy == pytest.approx(e, abs=1e-9) and np.allclose(fr.forces, f, atol=1e-9)
    assert np.allclose(fr.stress, s, atol=1e-12)  # from the virial: stress = -virial / volume
    assert fr.config_type == "hot"
    with pytest.raises(dataset.DataError, match="no info key 'colour'"):
        dataset.read(tmp_path / "d.xyz", ["Cu", "Ni"], need=(), keys={"group": "colour"})
    c = a.copy()
    c.info["REF_energy"] = e * 1e6  # meV, say, or a unit slip
    c.arrays["REF_forces"] = f
    write(tmp_path / "big.xyz", [c])
    with pytest.warns(UserWarning, match="energy above 10000 eV/atom .*check the units"):
        dataset.read(tmp_path / "big.xyz", ["Cu", "Ni"], keys={"energy": "REF_energy", "forces": "REF_forces"})


def test_a_weight_of_two_is_the_configuration_twice():
    """The normal equations of a frame with weight 2 are those of the frame given twice: the same model."""
    spec = etn.catalogue.load("binary")
    frames = [dataset._from_atoms(a, "x", k) for k, a in enumerate(labelled(6))]
    twice = frames + [dataset._from_atoms(frames[0].atoms, "x", 99)]
    weighted = [dataset._from_atoms(a.atoms, "x", k) for k, a in enumerate(frames)]
    weighted[0].weight = 2.0
    s = FitSettings(sweeps=1)
    p1 = Fitter(spec, twice, None, s, progress=False).run().params
    p2 = Fitter(spec, weighted, None, s, progress=False).run().params
    np.testing.assert_allclose(p2, p1, rtol=1e-7, atol=1e-10)
    p3 = Fitter(spec, frames, None, s, progress=False).run().params
    assert np.abs(p3 - p1).max() > 1e-6  # the weight mattered


def test_split_keeps_single_atoms_and_train_only_groups_out_of_validation_and_stratifies():
    frames = [dataset._from_atoms(a, "x", k) for k, a in enumerate(labelled(40, group="bulk") + labelled(10, 50, "surf"))]
    single = random_cluster(["Cu"], n=1)
    single.calc = EMT()
    single.get_potential_energy()
    single.info["config_type"] = "isolated"
    frames += [dataset._from_atoms(single, "x", 99)]
    tr, va = dataset.split(frames, 0.2, 0)
    assert all(f.n_atoms > 1 for f in va) and len(tr) + len(va) == len(frames)
    tr, va = dataset.split(frames, 0.2, 0, train_only=["surf"])
    assert {f.config_type for f in va} == {"bulk"}
    tr, va = dataset.split(frames, 0.2, 0, stratify=True)
    counts = {g: sum(f.config_type == g for f in va) for g in ("bulk", "surf", "isolated")}
    assert counts == {"bulk": 8, "surf": 2, "isolated": 0}


def test_fit_toml_weights_groups_init_and_predictions(tmp_path, capsys):
    write(tmp_path / "train.xyz", labelled(12, group="bulk", stage="a") + labelled(6, 40, "surf", stage="b"))
    base = """
[model]
spec = "binary"
{init}
[data]
train = ["train.xyz"]
group_key = "{key}"
weights = {{ {weights} }}
stratify = true
[fit]
sweeps = 1
[output]
dir = "{out}"
"""
    (tmp_path / "a.toml").write_text(base.format(init="", key="config_type", weights="surf = 3.0", out="a"))
    assert main(["fit", str(tmp_path / "a.toml"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "surf" in out and "config_type" in out
    (tmp_path / "b.toml").write_text(base.format(init='init = "a/model.etn"', key="stage", weights="b = 2.0", out="b"))
    assert main(["fit", str(tmp_path / "b.toml"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "stage" in out.splitlines()[[k for k, ln in enumerate(out.splitlines()) if ln.startswith("train:")][0] + 1]
    (tmp_path / "c.toml").write_text(base.format(init="", key="config_type", weights="slab = 2.0", out="c"))
    assert main(["fit", str(tmp_path / "c.toml"), "-q"]) == 2
    assert "slab" in capsys.readouterr().err
    (tmp_path / "d.toml").write_text(base.format(init='init = "a/model.etn"', key="config_type", weights="",
                                                 out="d").replace('"binary"', '"compressed"'))
    assert main(["fit", str(tmp_path / "d.toml"), "-q"]) == 2
    assert "has spec" in capsys.readouterr().err
    # the restart starts where the model was: before any sweep its loss is the old model's
    from etn.workflows.train import load_config

    cfg = load_config(tmp_path / "b.toml")
    frames = dataset.read(tmp_path / "train.xyz", ["Cu", "Ni"])
    f = Fitter(cfg["spec"], frames, None, cfg["settings"], progress=False, init=cfg["init"])
    np.testing.assert_array_equal(f.params, etn.Potential.load(tmp_path / "a" / "model.etn").params)
    # predictions beside the labels
    assert main(["eval", str(tmp_path / "a" / "model.etn"), str(tmp_path / "train.xyz"),
                 "--predictions", str(tmp_path / "pred.xyz")]) == 0
    pred = read(tmp_path / "pred.xyz", ":")
    pot = etn.Potential.load(tmp_path / "a" / "model.etn")
    ref = read(tmp_path / "train.xyz", ":")
    assert len(pred) == 18
    for p, r in zip(pred[:3], ref[:3]):
        want = pot.evaluate(r)
        assert p.info["etn_energy"] == pytest.approx(want["energy"], rel=1e-12)
        np.testing.assert_allclose(p.arrays["etn_forces"], want["forces"], atol=1e-12)
        np.testing.assert_allclose(p.arrays["etn_energies"], want["energies"], atol=1e-12)
        np.testing.assert_allclose(p.info["etn_stress"], want["stress"], atol=1e-14)
        assert p.get_potential_energy() == pytest.approx(r.get_potential_energy())  # the label, kept


def test_submodules_are_reachable_from_import_etn():
    import subprocess
    import sys

    code = ("import etn; print(etn.fitting.fit.Fitter.__name__, etn.io.dataset.read.__name__, etn.hosts.lammps.run.__name__, "
            "etn.backends.codegen.write_config.__name__, etn.fitting.grade.ActiveSet.__name__, etn.workflows.learn.learn.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.split() == ["Fitter", "read", "run", "write_config", "ActiveSet", "learn"]


def test_fit_says_why_it_stopped_and_plots_survive_odd_group_names(tmp_path):
    from etn.io import metrics

    spec = etn.catalogue.load("binary")
    frames = [dataset._from_atoms(a, "x", k) for k, a in enumerate(labelled(8))]
    f = Fitter(spec, frames[:6], frames[6:], FitSettings(sweeps=2), progress=False)
    pot = f.run()
    assert f.stop_reason == "reached sweeps = 2" and f.best_sweep in (1, 2)
    assert pot.metadata["best_sweep"] == f.best_sweep
    f = Fitter(spec, frames[:6], frames[6:], FitSettings(sweeps=20, patience=1, tolerance=0.9), progress=False)
    f.run()
    assert "patience = 1" in f.stop_reason and len(f.history) < 20
    for fr in frames:
        fr.config_type = "cost $5"  # '$' starts mathtext in matplotlib labels
    rows = metrics.predict(pot, frames)
    metrics.parity_plot(rows, tmp_path / "p.png", "a $title")
    metrics.learning_curve(f.history, tmp_path / "l.png", f.best_sweep)
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "l.png").stat().st_size > 1000


def test_spec_presets_and_cost_estimate(tmp_path, capsys):
    from etn.cost import estimate_us, flops, neighbours

    write(tmp_path / "d.xyz", labelled(3))
    assert main(["spec", "--species", "Cu", "Ni", "--size", "small", "--data", str(tmp_path / "d.xyz")]) == 0
    out = capsys.readouterr().out
    spec = etn.Spec.from_toml("\n".join(ln for ln in out.splitlines() if not ln.startswith("#")))
    shortest, _ = dataset.shortest(dataset.read(tmp_path / "d.xyz", ["Cu", "Ni"]), 5.0)
    assert spec.species == ("Cu", "Ni") and spec.cores == 2 and spec.repulsion == "zbl"
    assert spec.r_min <= shortest < spec.r_min + 0.05
    assert "parameters; estimated" in out and f"{etn.schedule(spec).n_params:,} parameters" in out
    assert main(["spec", "--species", "Cu", "Ni", "--size", "medium", "--topology", "tree"]) == 0
    tree = etn.Spec.from_toml("\n".join(ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")))
    assert tree.topology == "tree" and tree.cores == 5 and tree.degree == 3 and not tree.compression
    # the estimate is the schedule's FLOPs over a measured rate: bigger specs cost more
    small, medium = (etn.schedule(etn.catalogue.load(n)) for n in ("small", "default"))
    assert flops(medium) > 3 * flops(small)
    assert neighbours(5.0) == pytest.approx(4 / 3 * np.pi * 125 * 0.07)
    assert estimate_us(medium) / estimate_us(small) == pytest.approx(flops(medium) / flops(small), rel=1e-12)
