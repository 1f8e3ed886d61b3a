"""Active learning: fit, run MD with extrapolation grades, select, label, refit, until MD stays inside the data.

    pot, history = etn.workflows.learn.learn(spec, initial, targets, label=EMT())

One iteration:

1. fit ``spec`` on the labelled configurations so far (:class:`etn.fitting.fit.Fitter`, ``settings``);
2. select the active set on them (:func:`etn.fitting.grade.build`);
3. run Langevin MD (ASE) from every target structure with per-atom grades on; every ``sample``
   steps a snapshot whose largest γ exceeds ``threshold`` becomes a candidate, and a run stops
   early once γ exceeds ``break_threshold`` (what follows would be the model's fiction);
4. if no snapshot exceeded ``threshold`` the loop has converged; else pick at most ``per_iteration``
   candidates with :func:`etn.fitting.grade.select`, label them with ``label`` (any ASE calculator: DFT in
   practice, EMT in the example) and add them to the training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.dataset import Frame
from ..fitting.fit import FitSettings, Fitter
from ..fitting.grade import build, select


@dataclass
class Iteration:
    """What one iteration did: training size, the MD's largest γ, steps run, candidates and picks."""

    n_train: int
    gamma_max: float
    md_steps: int
    candidates: int
    picked: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def labelled(atoms, calculator, config_type: str = "learned", source: str = "") -> Frame:
    """A training frame of ``atoms`` labelled by an ASE calculator (energy, forces, and stress for a cell)."""
    atoms = atoms.copy()
    atoms.calc = calculator
    stress = atoms.get_stress() if atoms.cell.rank == 3 and all(atoms.pbc) else None
    frame = Frame(atoms, float(atoms.get_potential_energy()), atoms.get_forces().copy(),
                  None if stress is None else np.asarray(stress, dtype=np.float64), config_type, source)
    atoms.calc = None
    return frame


def explore(pot, aset, targets, temperature: float, steps: int, sample: int, threshold: float,
            break_threshold: float, seed: int = 0, timestep_fs: float = 2.0):
    """MD from each target with grades; returns (candidates, largest γ, steps run)."""
    from ase import units
    from ase.md.langevin import Langevin

    from ..hosts.calculator import Calculator

    cands, gmax, done = [], 0.0, 0
    for t, start in enumerate(targets):
        atoms = start.copy()
        atoms.calc = Calculator(pot, active_set=aset)
        rng = np.random.default_rng(seed + t)
        m = atoms.get_masses()[:, None]  # Maxwell–Boltzmann momenta at the temperature
        atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(m * units.kB * temperature))
        dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=0.02 / units.fs, rng=rng,
                       fixcm=False)
        for _ in range(0, steps, sample):
            dyn.run(sample)
            done += sample
            g = float(atoms.calc.get_property("gamma", atoms).max())
            gmax = max(gmax, g)
            if g > threshold:
                snap = atoms.copy()
                snap.calc = None
                snap.info["etn_gamma"] = g
                cands.append(snap)
            if g > break_threshold:
                break
    return cands, gmax, done


def learn(spec, initial, targets, label, settings: FitSettings | None = None, temperature: float = 800.0,
          steps: int = 200, sample: int = 10, threshold: float = 2.0, break_threshold: float = 10.0,
          per_iteration: int = 4, max_iterations: int = 8, seed: int = 0, on_iteration=None, log=print):
    """Run the loop from the labelled frames ``initial`` on the ASE ``targets``; returns (potential, history).

    ``on_iteration(iteration, pot, frames)`` is called after every iteration (e.g. to measure errors).
    """
    frames = list(initial)
    settings = settings or FitSettings(sweeps=4)
    history = []
    for it in range(max_iterations + 1):
        pot = Fitter(spec, frames, None, settings, progress=False).run()
        aset = build(pot, [f.atoms for f in frames])
        cands, gmax, done = explore(pot, aset, targets, temperature, steps, sample, threshold, break_threshold,
                                    seed=seed + 1000 * it)
        rec = Iteration(len(frames), gmax, done, len(cands))
        history.append(rec)
        if not cands or it == max_iterations:
            if on_iteration:
                on_iteration(rec, pot, frames)
            log(f"iteration {it}: {len(frames)} training configurations, MD {done} steps, largest γ {gmax:.3g}"
                + (" — stayed below the threshold: done" if not cands else " — iteration limit reached"))
            return pot, history
        picks = select(pot, aset, cands, per_iteration)
        rec.picked = [g for _, g in picks]
        frames += [labelled(cands[c], label, "learned", f"iteration {it}") for c, _ in picks]
        if on_iteration:
            on_iteration(rec, pot, frames)
        log(f"iteration {it}: {rec.n_train} training configurations, MD {done} steps, largest γ {gmax:.3g}, "
            f"{len(cands)} candidates, labelled {len(picks)}")
    return pot, history
