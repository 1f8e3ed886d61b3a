"""Active learning with extrapolation grades, EMT standing in for DFT.

Start from 10 labelled configurations (5 unaries, 5 binaries of Cu Ni Pd Ag Au), and learn what a
random 5-component alloy at 800 K needs: fit, run MD on the quinary with grades on, pick the
snapshots that extend the active set most, label them with EMT, refit, until an MD run stays
below γ = 2. Prints the force error on fresh quinary snapshots after every iteration.

    python3 examples/active_learning.py          (a few seconds on two cores)
"""

import itertools

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from etn.fitting.fit import FitSettings
from etn.generator import Spec
from etn.workflows.learn import labelled, learn

ELEMENTS = ["Cu", "Ni", "Pd", "Ag", "Au"]
A = {"Cu": 3.61, "Ni": 3.52, "Pd": 3.89, "Ag": 4.09, "Au": 4.08}  # fcc lattice constants, Å


def alloy(symbols, rng, reps=2, rattle=0.05):
    """A random fcc cell of ``symbols`` at Vegard's lattice constant, rattled."""
    atoms = bulk("Cu", "fcc", a=float(np.mean([A[s] for s in symbols])), cubic=True).repeat(reps)
    atoms.symbols = np.resize(np.array(symbols), len(atoms))[rng.permutation(len(atoms))]
    atoms.positions += rattle * rng.normal(size=atoms.positions.shape)
    return atoms


def main():
    rng = np.random.default_rng(0)
    systems = [[e] for e in ELEMENTS] + [list(p) for p in itertools.combinations(ELEMENTS, 2)][:5]
    initial = [labelled(alloy(s, rng, reps=2, rattle=0.1), EMT(), "start") for s in systems]
    targets = [alloy(ELEMENTS, rng, reps=2)]
    check = [labelled(alloy(ELEMENTS, rng, rattle=0.15), EMT()) for _ in range(8)]  # never trained on
    spec = Spec.from_dict({"species": ELEMENTS, "r_min": 1.8, "r_cut": 5.0, "n_radial": 4, "l_max": 2, "cores": 2,
                           "bonds": ["3x0 + 2x1 + 2x2"], "compression": 5, "repulsion": "zbl"})

    def report(it, pot, frames):
        err = np.concatenate([(pot.evaluate(f.atoms)["forces"] - f.forces).ravel() for f in check])
        print(f"    {it.n_train:3d} configurations: force RMSE on fresh quinaries {np.sqrt(np.mean(err ** 2)):.3f} eV/Å, "
              f"largest γ in MD {it.gamma_max:.3g}")

    learn(spec, initial, targets, EMT(), FitSettings(sweeps=4), temperature=800.0, steps=200, sample=10,
          threshold=2.0, break_threshold=10.0, per_iteration=4, max_iterations=8, on_iteration=report)


if __name__ == "__main__":
    main()
