"""motep's MTP as a peer in the benchmarks: an untrained level-16 MTP, its training, its errors.

The untrained potential comes from `mtp_basis.py` (derived here; motep ships none of level 16).
Training uses motep's own `Trainer` (C engine): a linear least-squares step for the moment and
species coefficients, then L-BFGS-B over all parameters, with the same loss weights as the ETN
fit (energy per atom 1, forces 0.01, stress 0.001, MTP practice). `MTPModel` gives a trained
potential the `evaluate` / `schedule.n_params` face that `etn.io.metrics` reads, so both models'
errors come from the same code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time

from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers

from mtp_basis import write_mtp


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("motep") is not None


def untrained(species, r_min: float, r_cut: float, level: int = 16):
    from motep.io.mlip.mtp import read_mtp

    with tempfile.TemporaryDirectory() as tmp:
        write_mtp(f"{tmp}/{level}.mtp", level, len(species), r_min=r_min, r_cut=r_cut)
        data = read_mtp(f"{tmp}/{level}.mtp")
    data.species = [atomic_numbers[s] for s in species]
    return data


def n_params(data) -> int:
    return int(data.species_count + data.alpha_scalar_moments
               + data.species_count ** 2 * data.radial_funcs_count * data.radial_basis.size)


def _images(frames):
    out = []
    for f in frames:
        a = f.atoms.copy()
        a.calc = SinglePointCalculator(a, energy=f.energy, forces=f.forces,
                                       stress=f.stress if f.stress is not None and a.cell.rank == 3 else None)
        out.append(a)
    return out


def train(data, frames, maxiter: int = 1000, seed: int = 0):
    """Train `data` in place on `frames`; returns the wall time in seconds."""
    from motep.train.trainer import Trainer

    lbfgs = {"method": "L-BFGS-B", "options": {"maxiter": maxiter, "maxfun": 2 * maxiter}}
    steps = [{"method": "LLS"}, {"method": "minimize", "kwargs": lbfgs}, {"method": "LLS"}]
    loss = {"energy_weight": 1.0, "forces_weight": 0.01, "stress_weight": 0.001}
    logging.getLogger("motep").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):   # motep writes intermediate_*.mtp here
        Trainer(data, seed=seed + 1, engine="cext", loss=loss, steps=steps).train(_images(frames))
    return time.perf_counter() - t0


class MTPModel:
    """A trained MTP with the face of `etn.Potential` that `etn.io.metrics` uses."""

    class _Sched:
        def __init__(self, n):
            self.n_params = n

    def __init__(self, data):
        self.data = data
        self.schedule = self._Sched(int(n_params(data)))

    def evaluate(self, atoms, forces=True, stress=True, backend=None):
        from motep.calculator import MTP

        a = atoms.copy()
        a.calc = MTP(self.data, engine="cext")      # one per structure: motep's neighbour list is per size
        out = {"energy": a.get_potential_energy()}
        if forces:
            out["forces"] = a.get_forces()
        if stress:
            out["stress"] = a.get_stress()
        return out


if __name__ == "__main__":       # a smoke run on a few MoNbTaW configurations
    import glob
    import sys

    from etn.io import dataset, metrics

    data_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                                 "data", "raw", "MoNbTaW_Li2020", "extxyz")
    frames = dataset.read(sorted(glob.glob(f"{data_dir}/*_AIMD.xyz")), ["Nb", "Mo", "Ta", "W"])[::40]
    d = untrained(["Nb", "Mo", "Ta", "W"], 1.8, 5.0)
    print(len(frames), "configurations,", n_params(d), "parameters, trained in",
          f"{train(d, frames, maxiter=50):.0f} s")
    print(metrics.table(metrics.errors(MTPModel(d), frames), "training errors:"))
