"""MoNbTaW-v1 accuracy benchmark (DESIGN.md, section 4).

train = *_AIMD, *_Elastic, *_Surface, *_SS; test = *_Test (../shared/data/raw/MoNbTaW_Li2020/extxyz).
10% of the training configurations (seeded) are held out for validation. Prints the parameter
count, training wall time, peak memory and the test errors overall and per test file.
With `--mtp N`, motep's MTP level 16 (`mtp_peer.py`) is trained side by side on a seeded random
subset of N configurations of the same training split, with the same loss weights, for at most
`--mtp-iters` L-BFGS-B iterations, and its parameter count, wall time and test errors follow.

    python3 benchmarks/monbtaw.py --spec small --sweeps 6
    python3 benchmarks/monbtaw.py --spec default --max-train 500   # a subset, as the MTP-16 peer figure
    python3 benchmarks/monbtaw.py --spec default --mtp 500 --mtp-iters 100
    python3 benchmarks/monbtaw.py --spec default --sweeps 8 --backend cuda   # design rows on a GPU
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

import etn
from etn.io import dataset, metrics
from etn.catalogue import resolve as _spec
from etn.fitting.fit import Fitter, FitSettings

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "raw" / "MoNbTaW_Li2020" / "extxyz"
PEERS = """peers on MoNbTaW-v1 (DESIGN.md, same split, this machine kind):
  LAMMPS POD (2612 parameters, 24 min on one core): energy RMSE 2.53 meV/atom, force RMSE 0.124 eV/Å
  motep MTP-16 (608 parameters, 500-configuration subset): energy RMSE 7.97 meV/atom, force RMSE 0.220 eV/Å
  zero-force baseline: force RMSE 1.134 eV/Å"""


def stem(path: str) -> str:
    """A data file's name without its suffixes: Mo_AIMD.xyz(.gz) -> Mo_AIMD."""
    return Path(path).name.split(".")[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="small", help="catalogue name or spec file (default: small)")
    ap.add_argument("--sweeps", type=int, default=6)
    ap.add_argument("--polish", type=int, default=0)
    ap.add_argument("--max-train", type=int, default=0, help="random subset of this many training configurations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--regularization", type=float, default=FitSettings.regularization,
                    help=f"ridge λ (default {FitSettings.regularization:g})")
    ap.add_argument("--ridge", choices=("uniform", "scaled"), default=FitSettings.ridge,
                    help="ridge form (default uniform; the records before 2026-11-30 used scaled with λ = 1e-10)")
    ap.add_argument("--data", default=str(DATA), help="folder of the extxyz files (.xyz or .xyz.gz)")
    ap.add_argument("--backend", default="c", help="evaluation and design rows: c (default), cuda, auto, numpy")
    ap.add_argument("--out", default=None, help="also write the report JSON here")
    ap.add_argument("--save", default=None, help="also save the fitted model here (.etn)")
    ap.add_argument("--mtp", type=int, default=0, help="also train motep's MTP-16 on this many training configurations")
    ap.add_argument("--mtp-iters", type=int, default=100, help="L-BFGS-B iterations of the MTP-16 training")
    args = ap.parse_args(argv)

    spec = _spec(args.spec)
    files = sorted(glob.glob(os.path.join(args.data, "*.xyz")) + glob.glob(os.path.join(args.data, "*.xyz.gz")))
    train_files = [f for f in files if stem(f).split("_")[-1] in ("AIMD", "Elastic", "Surface", "SS")]
    test_files = [f for f in files if stem(f).endswith("_Test")]
    if not train_files:
        raise SystemExit(f"no MoNbTaW data in {args.data}")
    frames = dataset.read(train_files, spec.species)
    if args.max_train and args.max_train < len(frames):
        rng = np.random.default_rng(args.seed)
        frames = [frames[k] for k in sorted(rng.choice(len(frames), args.max_train, replace=False))]
    train, valid = dataset.split(frames, 0.1, args.seed)
    test = dataset.read(test_files, spec.species)
    for f in test:
        f.config_type = stem(f.source.split("[")[0])  # report per test file

    print(f"MoNbTaW-v1: spec {args.spec} ({spec.hash[:12]}), {len(train)} training / {len(valid)} validation "
          f"configurations ({sum(f.n_atoms for f in train)} / {sum(f.n_atoms for f in valid)} atoms), "
          f"{len(test)} test configurations")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, etn {etn.__version__}, "
          f"backend {args.backend}")
    t0 = time.perf_counter()
    fitter = Fitter(spec, train, valid, FitSettings(sweeps=args.sweeps, polish=args.polish, seed=args.seed,
                                                    regularization=args.regularization, ridge=args.ridge,
                                                    backend=args.backend))
    pot = fitter.run()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = metrics.predict(pot, test)
    rep = metrics.errors(pot, test, rows=rows)
    print(f"parameters {pot.schedule.n_params}, bonds {', '.join(str(b) for b in pot.spec.inner_bonds)}")
    print(f"training wall time {seconds / 60:.1f} min ({len(fitter.history)} sweeps), peak memory {peak:.0f} MB")
    for h in fitter.history:
        print(f"  sweep {h['sweep']:2d} ({h['direction']:5s}) train loss {h['train_loss']:.5g} "
              f"validation loss {h['valid_loss']:.5g}  at {h['seconds'] / 60:.1f} min")
    print(metrics.table(rep, "test errors:"))
    if args.mtp:
        mtp_side_by_side(train, test, args, spec)
    print(PEERS)
    if args.save:
        pot.save(args.save)
    if args.out:
        rep.update({"spec": args.spec, "fit_seconds": seconds, "peak_memory_mb": peak, "sweeps": fitter.history,
                    "n_train": len(train)})
        metrics.write_json(rep, args.out)


def mtp_side_by_side(train, test, args, spec) -> None:
    import mtp_peer

    if not mtp_peer.available():
        print("motep MTP-16: motep is not installed (pip install motep), not trained")
        return
    rng = np.random.default_rng(args.seed)
    subset = [train[k] for k in sorted(rng.choice(len(train), min(args.mtp, len(train)), replace=False))]
    data = mtp_peer.untrained(spec.species, spec.r_min, spec.r_cut)
    seconds = mtp_peer.train(data, subset, maxiter=args.mtp_iters, seed=args.seed)
    model = mtp_peer.MTPModel(data)
    print(f"\nmotep MTP-16 side by side (derived level-16 basis, {model.schedule.n_params} parameters): trained on "
          f"{len(subset)} of the {len(train)} training configurations, LLS + {args.mtp_iters} L-BFGS-B iterations "
          f"+ LLS, {seconds / 60:.1f} min")
    print(metrics.table(metrics.errors(model, test), "MTP-16 test errors:"))


if __name__ == "__main__":
    main()
