"""Cost of an ASE MD step with an etn calculator, neighbour-list rebuilds included.

NVE (velocity Verlet, 2 fs) of a bcc cell of one element from a fitted model, started at a given
temperature; prints µs per atom per step and the number of neighbour-list rebuilds, once with
etn's neighbour lists (vesin) and once with ASE's ``neighbor_list`` in their place, for comparison.

    python3 -m etn example                      # fits etn-example/model.etn (Nb-Mo-Ta-W, `small`)
    python3 benchmarks/md_step.py etn-example/model.etn --element Mo --a 3.16 --temperature 1500
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def run(model: str, element: str, a: float, reps: int, temperature: float, steps: int, threads: int,
        neighbor_list) -> tuple[float, int, float]:
    from ase import units
    from ase.build import bulk
    from ase.md import velocitydistribution
    from ase.md.verlet import VelocityVerlet

    import etn
    import etn.io.neighbors

    etn.io.neighbors.neighbor_list = neighbor_list
    atoms = bulk(element, "bcc", a=a, cubic=True).repeat((reps, reps, reps))
    pot = etn.Potential.load(model)
    pot._get_backend("c").set_num_threads(threads)
    atoms.calc = etn.Calculator(pot)
    thermalize = (getattr(velocitydistribution, "thermalize_momenta", None)
                  or velocitydistribution.MaxwellBoltzmannDistribution)
    thermalize(atoms, temperature_K=temperature, rng=np.random.default_rng(0))
    md = VelocityVerlet(atoms, timestep=2 * units.fs)
    md.run(1)
    t0 = time.perf_counter()
    md.run(steps)
    seconds = time.perf_counter() - t0
    return 1e6 * seconds / steps / len(atoms), atoms.calc.neighbors.rebuilds, atoms.get_temperature()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--element", default="Mo")
    ap.add_argument("--a", type=float, default=3.16, help="bcc lattice constant (Å)")
    ap.add_argument("--reps", type=int, default=10, help="cubic cells per direction (2 reps³ atoms)")
    ap.add_argument("--temperature", type=float, default=1500.0, help="initial temperature (K)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from ase.neighborlist import neighbor_list as ase_neighbor_list

    import etn
    from etn.io.neighbors import neighbor_list

    print(f"etn {etn.__version__} ASE MD step; {platform.machine()}, {os.cpu_count()} cores, {args.threads} "
          f"kernel thread(s); {args.model}; {2 * args.reps ** 3} {args.element} atoms (bcc, a = {args.a} Å), "
          f"NVE from {args.temperature:g} K, {args.steps} steps of 2 fs")
    for name, nl in (("vesin (etn)", neighbor_list),
                     ("ASE neighbor_list", lambda q, atoms, cutoff: list(ase_neighbor_list(q, atoms, cutoff)))):
        us, rebuilds, T = run(args.model, args.element, args.a, args.reps, args.temperature, args.steps,
                              args.threads, nl)
        print(f"  {name:18s} {us:6.1f} µs/atom/step, {rebuilds} neighbour-list builds, final T {T:.0f} K")


if __name__ == "__main__":
    main()
