"""Cost of one least-squares solve's design rows: generated C kernels vs the numpy reference.

For each parameter group of a spec, on MoNbTaW-v1 AIMD configurations: µs per atom for the energy,
force and virial rows (C on 1 and all threads, fastest of ``--repeat`` runs; numpy on a subset),
and for accumulating XᵀX with BLAS. A solve of a group over a training set costs about (rows + XᵀX) × atoms.

    python3 benchmarks/design_rows.py --spec default --configs 60
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import time
from pathlib import Path


import etn
from etn.io import dataset
from etn.backends.cdesign import CDesign
from etn.catalogue import resolve as _spec
from etn.backends.design import DesignReference
from etn.io.neighbors import pairs

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "raw" / "MoNbTaW_Li2020" / "extxyz"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="default")
    ap.add_argument("--configs", type=int, default=60)
    ap.add_argument("--numpy-configs", type=int, default=4, help="configurations timed with the numpy rows")
    ap.add_argument("--repeat", type=int, default=3, help="C timings are the fastest of this many runs "
                    "(a shared machine's run-to-run spread is 20-30%%)")
    args = ap.parse_args(argv)

    spec = _spec(args.spec)
    frames = dataset.read(sorted(glob.glob(str(DATA / "*_AIMD.xyz"))), spec.species)[:args.configs]
    prs = [pairs(f.atoms, spec) for f in frames]
    N = sum(p.n_atoms for p in prs)
    nb = sum(len(p.i) for p in prs) / N
    sched = etn.schedule(spec)
    params = etn.Potential.random(spec, seed=0).params
    c, ref = CDesign(sched), DesignReference(sched)
    threads = os.cpu_count()
    print(f"etn {etn.__version__} design rows; {platform.machine()}, {threads} cores")
    print(f"spec {args.spec}: {sched.n_params} parameters; {len(prs)} MoNbTaW-v1 AIMD configurations, {N} atoms, "
          f"{nb:.1f} neighbours per atom")
    print(f"{'group':10s} {'columns':>7s} {'C 1 thr':>9s} {f'C {threads} thr':>9s} {'numpy':>9s} {'speed-up':>8s} "
          f"{'XtX':>7s}   (µs per atom)")
    sub = prs[:args.numpy_configs]
    n_sub = sum(p.n_atoms for p in sub)
    for g in c.group_ids:
        times = []
        for t in (1, threads):
            c.set_num_threads(t)
            c.batch(params, prs[:2], g)
            best = float("inf")
            for _ in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                E, F, W = c.batch(params, prs, g)
                best = min(best, time.perf_counter() - t0)
            times.append(best / N * 1e6)
        X = F.reshape(-1, F.shape[-1])
        t0 = time.perf_counter()
        X.T @ X
        xtx = (time.perf_counter() - t0) / N * 1e6
        t0 = time.perf_counter()
        ref.batch(params, sub, g)
        tn = (time.perf_counter() - t0) / n_sub * 1e6
        print(f"{g:10s} {F.shape[-1]:7d} {times[0]:9.1f} {times[1]:9.1f} {tn:9.0f} {tn / times[0]:7.0f}x {xtx:7.1f}")


if __name__ == "__main__":
    main()
