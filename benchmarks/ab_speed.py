"""Side-by-side speed of two commits: C evaluation (energy + forces, 1 thread) of `default` and `deep` on
a 2000-atom random Nb-Mo-Ta-W bcc cell, and the C design rows of `default` (all groups, 1 thread) on 20
MoNbTaW-v1 AIMD configurations; each the fastest of several calls, the two commits alternated.

Each commit is unpacked (git archive) into a package tree of its own and run with PYTHONPATH, so the
installed checkout is not touched. The ratios (new / old) are what to read: these machines are noisy.

    python3 benchmarks/ab_speed.py OLD_COMMIT NEW_COMMIT --rounds 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "raw" / "MoNbTaW_Li2020" / "extxyz"

MEASURE = r'''
import glob, json, sys, time
import numpy as np
import etn
try:  # the package in rooms, or the flat layout of older commits
    from etn.io.neighbors import pairs
    from etn.backends.cdesign import CDesign
    from etn.backends.design import groups
    from etn.io import dataset
except ImportError:
    from etn.neighbors import pairs
    from etn.cdesign import CDesign
    from etn.design import groups
    from etn import dataset
from ase.build import bulk


def fastest(f, n):
    f()
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


atoms = bulk("W", "bcc", a=3.2, cubic=True).repeat((10, 10, 10))
atoms.symbols = np.random.default_rng(0).choice(["Nb", "Mo", "Ta", "W"], len(atoms))
atoms.rattle(0.05, seed=0)
out = {}
for name in ("default", "deep"):
    pot = etn.Potential.random(etn.catalogue.load(name), seed=1, scale=0.3)
    be = pot._get_backend("c")
    be.set_num_threads(1)
    pr = pairs(atoms, pot.spec)
    out[name] = 1e6 * fastest(lambda: be.compute(pot.params, pr), 5) / len(atoms)
spec = etn.catalogue.load("default")
pot = etn.Potential.random(spec, seed=1, scale=0.3)
frames = dataset.read(sorted(glob.glob(sys.argv[1] + "/*_AIMD.xyz")), spec.species)[:20]
prs = [pairs(f.atoms, spec) for f in frames]
d = CDesign(pot.schedule)
d.set_num_threads(1)
out["design_default"] = 1e6 * sum(fastest(lambda: d.batch(pot.params, prs, g), 3)
                                  for g in groups(pot.schedule) if g != "e0") / sum(len(f.atoms) for f in frames)
print(json.dumps(out))
'''


def package(commit: str, root: Path) -> Path:
    """The etn package of ``commit`` as an importable tree under ``root``."""
    src, pkg = root / f"src-{commit}", root / f"pkg-{commit}"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    shutil.copytree(src / "runtime", pkg / "etn")
    for sub in ("generator", "templates", "generated"):
        shutil.copytree(src / sub, pkg / "etn" / sub)
    return pkg


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        pkgs = {c: package(c, Path(d)) for c in (args.old, args.new)}
        results = {c: [] for c in pkgs}
        for r in range(args.rounds):
            for c in (pkgs if r % 2 == 0 else list(pkgs)[::-1]):
                p = subprocess.run([sys.executable, "-c", MEASURE, args.data], capture_output=True, text=True,
                                   env={"PYTHONPATH": str(pkgs[c]), "PATH": "/usr/bin:/bin", "HOME": d,
                                        "ETN_CACHE_DIR": str(Path(d) / f"cache-{c}")}, check=True)
                results[c].append(json.loads(p.stdout.strip().splitlines()[-1]))
                print(c, results[c][-1], flush=True)
    print(f"\n{'':16} {'old ' + args.old[:10]:>16} {'new ' + args.new[:10]:>16} {'new/old':>8}   (medians; µs/atom)")
    for key in ("default", "deep", "design_default"):
        o = statistics.median(x[key] for x in results[args.old])
        n = statistics.median(x[key] for x in results[args.new])
        print(f"{key:16} {o:16.3f} {n:16.3f} {n / o:8.3f}")


if __name__ == "__main__":
    main()
