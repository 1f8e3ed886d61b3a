"""Fitting over MPI ranks on MoNbTaW-v1: wall time and memory per rank, communication per sweep, and
what that means at many ranks.

    python3 benchmarks/mpi_fit.py [--spec default] [--sweeps 2] [--ranks 1 2]

runs the fit of ``monbtaw.py`` (same training split) once per rank count under ``mpiexec``, each
rank with cores / ranks OpenMP threads, and prints per run: seconds per sweep, peak memory (max RSS)
per rank, and the bytes each rank contributed to the sums per sweep (the normal matrices of the
solves, n² + n + 1 numbers each, and the losses). From these it estimates the communication share of
a sweep at 64 ranks: a sweep's compute time divided by 64 (the configurations split evenly) against
an allreduce of the measured bytes, 2 × bytes / bandwidth + 2 log2(64) × latency (ring allreduce;
``--bandwidth`` and ``--latency`` default to an EDR InfiniBand link, 10 GB/s and 2 µs).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "raw" / "MoNbTaW_Li2020" / "extxyz"


def worker(spec_name: str, sweeps: int, out: str) -> None:
    """One rank of a run (started by mpiexec): fit and write this rank's figures to ``out``.rank.json."""
    sys.path.insert(0, str(HERE))
    from etn.io import dataset
    from etn.catalogue import resolve as _spec
    from etn.fitting.fit import Fitter, FitSettings
    from etn.fitting.parallel import world

    comm = world()
    spec = _spec(spec_name)
    files = sorted(glob.glob(str(DATA / "*.xyz")))
    train_files = [f for f in files if Path(f).stem.split("_")[-1] in ("AIMD", "Elastic", "Surface", "SS")]
    train, valid = dataset.split(dataset.read(train_files, spec.species), 0.1, 0)
    threads = max(1, (os.cpu_count() or 1) // comm.local_size)
    from etn.workflows.train import set_threads

    set_threads(threads)  # BLAS too: one thread per core in all
    fitter = Fitter(spec, train, valid, FitSettings(sweeps=sweeps, patience=sweeps, threads=threads), progress=False,
                    comm=comm)
    t0 = time.perf_counter()
    fitter.run()
    seconds = time.perf_counter() - t0
    rec = {"rank": comm.rank, "size": comm.size, "threads": threads, "seconds": seconds, "sweeps": len(fitter.history),
           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "sent_bytes": comm.sent,
           "sums": comm.calls,
           "valid_loss": fitter.best[0], "n_params": fitter.potential().schedule.n_params,
           "configs": len(train)}
    Path(f"{out}.{comm.rank}.json").write_text(json.dumps(rec))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="default")
    ap.add_argument("--sweeps", type=int, default=2)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--bandwidth", type=float, default=10e9, help="bytes/s of the interconnect (default 10 GB/s)")
    ap.add_argument("--latency", type=float, default=2e-6, help="seconds per message (default 2 µs)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.spec, a.sweeps, a.worker)
        return
    sys.path.insert(0, str(HERE.parent))
    from etn.hosts.lammps import environment, mpiexec

    print(f"etn MPI fit benchmark: MoNbTaW-v1 training split, spec {a.spec}, {a.sweeps} sweeps; "
          f"{platform.machine()}, {os.cpu_count()} cores")
    print(f"{'ranks':>5s} {'threads':>7s} {'s/sweep':>8s} {'RSS MB/rank':>11s} {'MB sent/sweep':>13s} {'valid loss':>11s}",
          flush=True)
    rows = []
    for n in a.ranks:
        out = f"/tmp/etn_mpi_fit_{os.getpid()}_{n}"
        cmd = [sys.executable, __file__, "--spec", a.spec, "--sweeps", str(a.sweeps), "--worker", out]
        subprocess.run([mpiexec(), "-n", str(n), *cmd], env=environment(), check=True)
        recs = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(n)]
        per_sweep = max(r["seconds"] for r in recs) / recs[0]["sweeps"]
        sent = max(r["sent_bytes"] for r in recs) / recs[0]["sweeps"]
        sums = max(r["sums"] for r in recs) / recs[0]["sweeps"]
        rss = max(r["max_rss_mb"] for r in recs)
        rows.append((n, per_sweep, sent, sums))
        print(f"{n:5d} {recs[0]['threads']:7d} {per_sweep:8.1f} {rss:11.0f} {sent / 1e6:13.1f} {recs[0]['valid_loss']:11.4g}",
              flush=True)
    cores = os.cpu_count() or 1
    t1 = next(r[1] for r in rows if r[0] == min(a.ranks))  # the sweep with all of this machine's cores
    sent, sums = max(r[2] for r in rows), max(r[3] for r in rows)
    p = 64
    t_comm = 2 * sent / a.bandwidth + 2 * math.log2(p) * a.latency * sums
    t_comp = t1 * cores / p  # this machine's core-seconds per sweep, spread over p single-core ranks
    print(f"at {p} ranks, one per core: compute {t_comp:.2f} s per sweep, communication {1e3 * t_comm:.1f} ms "
          f"({sums:.0f} sums of {sent / 1e6:.1f} MB in all per sweep at {a.bandwidth / 1e9:g} GB/s and "
          f"{1e6 * a.latency:g} µs): {100 * t_comm / (t_comp + t_comm):.2f}% of a sweep")


if __name__ == "__main__":
    main()
