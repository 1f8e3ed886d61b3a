"""The bundled example (``etn example``): fit a small model to bundled MoNbTaW data, report its
test errors, run a short NVE MD with it.
"""

from __future__ import annotations

import time
from importlib import resources

import numpy as np


def run(steps: int = 50, sweeps: int = 4, out: str = "etn-example") -> None:
    from pathlib import Path

    from ase import units
    from ase.md import velocitydistribution
    from ase.md.verlet import VelocityVerlet

    from .. import Calculator, catalogue

    from ..io import dataset, metrics

    from ..fitting import grade
    from ..fitting.fit import Fitter, FitSettings

    spec = catalogue.load("small")
    with resources.as_file(resources.files("etn.data") / "MoNbTaW_train.xyz") as p:
        train, valid = dataset.split(dataset.read(p, spec.species), 0.1, seed=0)
    with resources.as_file(resources.files("etn.data") / "MoNbTaW_test.xyz") as p:
        test = dataset.read(p, spec.species)
    print(f"fitting the catalogue spec 'small' ({spec.cores} cores, l_max {spec.l_max}) to {len(train)} bundled "
          f"MoNbTaW configurations ({sum(f.n_atoms for f in train)} atoms), {len(valid)} held out for validation")
    t0 = time.perf_counter()
    pot = Fitter(spec, train, valid, FitSettings(sweeps=sweeps)).run()
    print(f"fitted {pot.schedule.n_params} parameters in {time.perf_counter() - t0:.0f} s")
    rows = metrics.predict(pot, test)
    print(metrics.table(metrics.errors(pot, test, rows=rows), f"\nerrors on {len(test)} bundled test configurations:"))
    Path(out).mkdir(exist_ok=True)
    pot.save(Path(out) / "model.etn")
    aset = grade.build(pot, [f.atoms for f in train])
    aset.save(Path(out) / "model.aset")
    metrics.parity_plot(rows, Path(out) / "parity_test.png", "bundled MoNbTaW test set")
    print(f"\nsaved {out}/model.etn, its active set {out}/model.aset (extrapolation grades) and {out}/parity_test.png")

    atoms = test[0].atoms.copy()
    atoms.calc = Calculator(pot, active_set=aset)
    # thermalize_momenta since ase 3.29, which deprecates the older name
    thermalize = (getattr(velocitydistribution, "thermalize_momenta", None)
                  or velocitydistribution.MaxwellBoltzmannDistribution)
    thermalize(atoms, temperature_K=300, rng=np.random.default_rng(0))
    md = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    e_start = atoms.get_total_energy()
    t0 = time.perf_counter()
    md.run(steps)
    dt = time.perf_counter() - t0
    drift = (atoms.get_total_energy() - e_start) / len(atoms)
    print(f"NVE MD with the fitted model, {len(atoms)} atoms ({atoms.get_chemical_formula()}), {steps} steps of 1 fs: "
          f"total energy change {1e3 * drift:+.3f} meV/atom, T = {atoms.get_temperature():.0f} K, "
          f"{1e6 * dt / (steps * len(atoms)):.0f} µs/atom/step (ASE, neighbour list and grades included); "
          f"largest extrapolation grade {atoms.calc.gamma_max:.2f} (γ ≤ 1: inside the training data)")
