"""Speed of energy + forces + stress on a 2000-atom random Nb-Mo-Ta-W bcc cell (a = 3.2 Å).

For each model (catalogue `default` and the largest, `deep`): µs per atom per step of the C
backend with 1 thread and all threads (neighbour list reused, as in MD; its rebuild is timed
separately), the schedule's FLOPs per atom divided by the kernel time as a fraction of one core's
float64 matmul peak (measured here), and the speed-up over the numpy reference. Side by side, in
the same run and on the same cell, motep's MTP level-16 C engine (single-threaded; `pip install
motep`; the untrained level-16 basis is derived by `mtp_basis.py`), timed the same way.
Parameters are random: speed does not depend on their values. Every time is the fastest of
several calls after a warm-up.

    python benchmarks/speed.py            # prints a report; redirect it into benchmarks/results/
"""

import os
import platform
import subprocess
import sys
import time

import numpy as np


def peak_gflops() -> float:
    """Single-thread float64 matmul rate, measured in a child process with BLAS pinned to 1 thread."""
    code = ("import numpy as np, time\nn=1024\na=np.random.rand(n,n); b=np.random.rand(n,n); a@b\n"
            "t=time.perf_counter(); k=5\nfor _ in range(k): a@b\nprint(2*n**3*k/(time.perf_counter()-t)/1e9)")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout)


def cell(seed=0):
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=3.2, cubic=True).repeat((10, 10, 10))
    atoms.symbols = np.random.default_rng(seed).choice(["Nb", "Mo", "Ta", "W"], len(atoms))
    atoms.rattle(0.05, seed=seed)
    return atoms


def timed(fn, repeat):
    """The fastest of ``repeat`` calls after a warm-up (the least disturbed by other work on the machine)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def mtp16(atoms, repeat=5):
    """(parameters, µs/atom/step E+F+S) of motep's MTP-16 C engine on these atoms, or None without motep."""
    import mtp_peer

    if not mtp_peer.available():
        return None
    from motep.calculator import MTP

    data = mtp_peer.untrained(["Nb", "Mo", "Ta", "W"], r_min=1.8, r_cut=5.0)
    data.initialize(np.random.default_rng(0))
    atoms = atoms.copy()
    atoms.calc = calc = MTP(data, engine="cext")
    atoms.get_forces()                          # builds motep's neighbour list once
    return mtp_peer.n_params(data), 1e6 * timed(lambda: calc.engine.calculate(atoms), repeat) / len(atoms)


def main():
    import etn
    from etn.io.neighbors import NeighborCache

    peak = peak_gflops()
    atoms = cell()
    N = len(atoms)
    print(f"etn {etn.__version__} speed benchmark; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"cell: {N} atoms, random Nb-Mo-Ta-W bcc, a = 3.2 Å; one core's float64 matmul peak: {peak:.1f} GFLOP/s\n")
    steps = {}
    for name in ["default", "deep"]:
        pot = etn.Potential.random(etn.catalogue.load(name), seed=0)
        sched = pot.schedule
        nl = NeighborCache(pot.spec)
        t_nl = timed(lambda: nl._build(atoms), 2)
        pr = nl.pairs(atoms)
        n_neigh = len(pr.i) / N
        be = pot._get_backend("c")
        fl = sched.flops
        flops_atom = (fl.forward.per_atom + fl.backward.per_atom
                      + (fl.forward.per_pair + fl.backward.per_pair) * n_neigh)
        print(f"model {name}: {sched.n_params} parameters, {n_neigh:.1f} neighbours per atom, "
              f"{flops_atom / 1e3:.1f} kFLOP per atom (schedule)")
        for threads in (1, os.cpu_count()):
            be.set_num_threads(threads)
            t_kernel = timed(lambda: be.compute(pot.params, pr), 10)
            t_step = timed(lambda: pot.evaluate(atoms, backend="c", neighbors=nl), 10)
            print(f"  C, {threads} thread(s): {1e6 * t_step / N:7.1f} µs/atom/step E+F+S "
                  f"(kernel {1e6 * t_kernel / N:.1f} µs/atom, {flops_atom * N / t_kernel / 1e9:.2f} GFLOP/s, "
                  f"{100 * flops_atom * N / t_kernel / 1e9 / peak / threads:.0f}% of peak per thread)")
        be.set_num_threads(1)
        ref = pot._get_backend("numpy")
        t_np = timed(lambda: ref.compute(pot.params, pr), 2)
        t_c = timed(lambda: be.compute(pot.params, pr), 10)
        print(f"  numpy reference: {1e6 * t_np / N:.0f} µs/atom; the C kernels are {t_np / t_c:.0f}x faster "
              f"(1 thread, same pairs)")
        print(f"  neighbour list rebuild (vesin, r_cut + 0.5 Å skin): {1e6 * t_nl / N:.1f} µs/atom, "
              f"needed every ~10-30 MD steps\n")
        steps[name] = 1e6 * timed(lambda: pot.evaluate(atoms, backend="c", neighbors=nl), 5) / N
    mtp = mtp16(atoms)
    if mtp is None:
        print("motep MTP-16: motep is not installed (pip install motep), not measured")
        return
    n_params, t_mtp = mtp
    print(f"motep MTP-16 C engine (derived level-16 basis, {n_params} parameters), 1 thread: "
          f"{t_mtp:.1f} µs/atom/step E+F+S")
    for name, t in steps.items():
        print(f"  etn {name}, 1 thread: {t:.1f} µs/atom/step; time of MTP-16 / time of etn = {t_mtp / t:.1f}")


if __name__ == "__main__":
    main()
