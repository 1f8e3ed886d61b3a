"""The bundled example (``etn example``): inspect a model, evaluate it on bundled DFT data, run MD.

Until fitting lands, the model is randomly initialised: the errors it prints show the pipeline
working end to end, not a potential.
"""

from __future__ import annotations

import time
from importlib import resources

import numpy as np


def bundled(name: str):
    """Configurations of a bundled data file (``MoNbTaW_train`` or ``MoNbTaW_test``)."""
    from ase.io import read

    with resources.as_file(resources.files("etn.data") / f"{name}.xyz") as p:
        return read(p, ":")


def run(steps: int = 50) -> None:
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from . import Calculator, Potential, catalogue
    from .report import table

    spec = catalogue.load("default")
    pot = Potential.random(spec, seed=0, scale=0.05)
    print(table(pot.schedule))
    print()

    # reference energies e0 by least squares on the training energies (cores stay random)
    train = bundled("MoNbTaW_train")
    counts = np.array([[a.get_chemical_symbols().count(s) for s in spec.species] for a in train], float)
    energies = np.array([a.get_potential_energy() for a in train])
    pot.block("e0")[:] = np.linalg.lstsq(counts, energies, rcond=None)[0]

    test = bundled("MoNbTaW_test")
    n_atoms = sum(len(a) for a in test)
    t0 = time.perf_counter()
    pot.evaluate(test[0])  # the first call renders and compiles the model's C kernels (cached afterwards)
    print(f"C kernels ready in {time.perf_counter() - t0:.1f} s (compiled once, then cached)")
    t0 = time.perf_counter()
    de, df = [], []
    for atoms in test:
        res = pot.evaluate(atoms, stress=False)
        de.append((res["energy"] - atoms.get_potential_energy()) / len(atoms))
        df.append((res["forces"] - atoms.get_forces()).ravel())
    dt = time.perf_counter() - t0
    de, df = np.array(de), np.concatenate(df)
    print(f"randomly initialised model on {len(test)} bundled MoNbTaW test configurations ({n_atoms} atoms):")
    print(f"  energy RMSE {1e3 * np.sqrt(np.mean(de**2)):.1f} meV/atom, force RMSE {np.sqrt(np.mean(df**2)):.3f} eV/Å"
          f"  (e0 fitted, cores random: core fitting is not implemented yet)")
    print(f"  generated C kernels: {1e6 * dt / n_atoms:.0f} µs/atom for energy + forces, neighbour list included")

    atoms = train[0].copy()
    atoms.calc = Calculator(pot)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    md = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    e_start = atoms.get_total_energy()
    t0 = time.perf_counter()
    md.run(steps)
    dt = time.perf_counter() - t0
    drift = (atoms.get_total_energy() - e_start) / len(atoms)
    print(f"NVE MD, {len(atoms)} atoms ({atoms.get_chemical_formula()}), {steps} steps of 1 fs: "
          f"total energy change {1e3 * drift:+.3f} meV/atom, T = {atoms.get_temperature():.0f} K, "
          f"{1e6 * dt / (steps * len(atoms)):.0f} µs/atom/step")
