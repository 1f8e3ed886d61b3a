"""Generated C design-matrix rows (templates/design.c.j2) against the numpy reference and the model."""

import numpy as np
import pytest
from ase import Atoms

import etn
import etn.fitting.fit as fit_module
from etn.backends.cdesign import CDesign
from etn.backends.design import DesignReference
from etn.fitting.fit import FitSettings, Fitter
from etn.io.neighbors import Pairs, pairs

from .conftest import random_cluster, random_crystal

ROW_SPECS = ["tiny", "binary", "compressed", "small", "default"]


def _configs(species):
    lonely = Atoms([species[0], species[-1]], positions=[[0, 0, 0], [9, 0, 0]])  # no neighbours
    return [random_crystal(species, seed=5), random_crystal(species, seed=6, triclinic=True, reps=(1, 2, 1)),
            random_cluster(species, n=6, seed=2), lonely]


@pytest.mark.parametrize("name", ROW_SPECS)
def test_c_rows_match_the_numpy_reference(name):
    spec = etn.catalogue.load(name)
    pot = etn.Potential.random(spec, seed=3)
    prs = [pairs(a, spec) for a in _configs(spec.species)]
    ref, c = DesignReference(pot.schedule), CDesign(pot.schedule)
    assert set(c.group_ids) == set(ref.groups) - {"e0"}
    for g in c.group_ids:
        want = ref.batch(pot.params, prs, g)
        got = c.batch(pot.params, prs, g)
        for what, a, b in zip("EFW", want, got):
            assert a.shape == b.shape
            scale = np.abs(a).max()
            assert scale > 0, (g, what)
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * scale, err_msg=f"{name} {g} {what}")
        E_only = c.batch(pot.params, prs, g, gradients=False)
        np.testing.assert_array_equal(E_only[0], got[0])
        assert not E_only[2].any()


def test_c_rows_reproduce_the_c_model():
    """rows · θ = energies, forces and virial of the C evaluation kernels, for every group."""
    spec = etn.catalogue.load("compressed")
    pot = etn.Potential.random(spec, seed=4)
    configs = _configs(spec.species)
    prs = [pairs(a, spec) for a in configs]
    c = CDesign(pot.schedule)
    want = [pot.evaluate(a, stress=a.cell.rank == 3) for a in configs]
    e0 = np.array([pot.block("e0")[p.species].sum() for p in prs])
    groups = DesignReference(pot.schedule).groups
    for g in c.group_ids:
        E, F, W = c.batch(pot.params, prs, g)
        th = pot.params[groups[g].cols]
        np.testing.assert_allclose(E @ th + e0, [w["energy"] for w in want], rtol=1e-12)
        np.testing.assert_allclose(F @ th, np.concatenate([w["forces"] for w in want]), atol=1e-11)
        for k, w in enumerate(want):
            if "stress" in w:
                np.testing.assert_allclose(-(W[k] @ th), w["virial"], atol=1e-11)


def test_c_rows_reject_a_species_index_out_of_range():
    spec = etn.catalogue.load("tiny")
    pot = etn.Potential.random(spec, seed=0)
    good = pairs(random_cluster(spec.species, n=4, seed=1), spec)
    bad = Pairs(good.n_atoms, np.full(good.n_atoms, 5), good.i, good.j, good.r)
    with pytest.raises(ValueError, match="species index"):
        CDesign(pot.schedule).batch(pot.params, [bad], "core1")


def test_fit_builds_the_same_normal_equations_from_c_and_numpy_rows(monkeypatch):
    """The fitter's weighted system (energies, forces, stress; batches of configurations, some without
    forces, energy or stress) is the same whichever rows it uses, for one group and for all groups at
    once (Levenberg-Marquardt), and in batches as in one piece."""
    from etn.io.dataset import Frame

    spec = etn.catalogue.load("compressed")
    teacher = etn.Potential.random(spec, seed=5)
    frames = []
    for k, atoms in enumerate(_configs(spec.species)):
        r = teacher.evaluate(atoms, stress=atoms.cell.rank == 3)
        frames.append(Frame(atoms, r["energy"] + 0.1, r["forces"] + 0.01, r.get("stress"), "t", f"c{k}"))
    frames[0].forces = None  # a configuration without forces, one without energy: rows are picked per configuration
    frames[1].energy = None
    init = etn.Potential.random(spec, seed=6)
    fits = [Fitter(spec, frames, None, FitSettings(backend=b), progress=False, init=init) for b in ("c", "numpy")]
    names = [g for g in DesignReference(init.schedule).groups if g != "e0"]
    for group, residual in (("core2", False), (names, True)):
        (A, a, ya), (B, b, yb) = (f._system(group, frames, residual=residual) for f in fits)
        np.testing.assert_allclose(A, B, rtol=1e-12, atol=1e-12 * np.abs(B).max())
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
        assert ya == pytest.approx(yb, rel=1e-12)
    whole = fits[0]._system("core2", frames)
    monkeypatch.setattr(fit_module, "BATCH_BYTES", 1)  # one configuration per batch
    pieces = fits[0]._system("core2", frames)
    for a, b in zip(pieces, whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


def test_fit_objective_is_the_documented_loss():
    """The weighted least-squares residual of the fitter is Σ_c w_E (ΔE/N)² + w_F |ΔF|²/N +
    w_S |Δσ V/N|² (forces per atom, as MLIP and motep), written out here from the model's own
    predictions, for configurations of different sizes."""
    from etn.io.dataset import Frame

    spec = etn.catalogue.load("compressed")
    teacher, model = etn.Potential.random(spec, seed=5), etn.Potential.random(spec, seed=6)
    rng = np.random.default_rng(0)
    frames = []
    for k, atoms in enumerate(_configs(spec.species)[:3]):          # 32, 16 and 6 atoms
        r = teacher.evaluate(atoms, stress=atoms.cell.rank == 3)
        frames.append(Frame(atoms, r["energy"] + 0.3, r["forces"] + rng.normal(0, 0.1, r["forces"].shape),
                            r.get("stress"), "t", f"c{k}"))
    assert len({f.n_atoms for f in frames}) == 3
    w = FitSettings(energy_weight=1.0, force_weight=0.01, stress_weight=0.001)
    fitter = Fitter(spec, frames, None, w, progress=False, init=model)
    want = 0.0
    pot = fitter.potential()
    for f in frames:
        r = pot.evaluate(f.atoms, stress=f.stress is not None)
        N = f.n_atoms
        want += w.energy_weight * ((r["energy"] - f.energy) / N) ** 2
        want += w.force_weight * np.sum((r["forces"] - f.forces) ** 2) / N
        if f.stress is not None:
            want += w.stress_weight * np.sum(((r["stress"] - f.stress) * f.atoms.get_volume() / N) ** 2)
    names = [g for g in DesignReference(model.schedule).groups if g != "e0"]
    _, _, yty = fitter._system(names, frames, residual=True)
    assert yty == pytest.approx(want, rel=1e-10)
    assert fitter.loss(frames) * len(frames) == pytest.approx(want, rel=1e-10)
