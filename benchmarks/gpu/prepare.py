"""Prepare, on a machine without a GPU, everything the one-command GPU check needs (benchmarks/gpu/check.py).

    python3 benchmarks/gpu/prepare.py [--specs tiny binary compressed small default deep tree network] [--skip-wheels]

writes three git-ignored folders, which the device tool carries (``carry=[".whl", ".gpu_cache", ".gpu_ref"]``):

- ``.whl/``: cp312 manylinux wheels of what the GPU image lacks (ase, vesin, cffi, pycparser,
  platformdirs, tqdm) and a wheel of etn itself, installed there with ``pip --no-index --no-deps``;
- ``.gpu_cache/``: etn's kernel cache with the CUDA libraries of every spec, float64 and float32, and
  their design-row libraries, built here by nvcc for sm_90 (the H200), keyed as etn keys them, so that
  the device finds them instead of compiling (it compiles only what is missing or stale);
- ``.gpu_ref/ref.npz``: the C backend's results (energies, per-atom energies, forces, stress) on
  periodic and cluster cells, a cell with an atom that has no neighbours and a dense cell with about
  80 neighbours per atom, per spec and precision, and the C design rows (energy, force, virial rows)
  of every parameter group of each spec on two configurations, as their products with PROBES random
  vectors (also carried), and the fused rows (times the same kind of vectors) and grades of extrapolation
  on the periodic cell with a random active set: what the CUDA results must equal; and ``.gpu_ref/monbtaw/``, MoNbTaW-v1's
  extxyz files gzipped, for the fit of `default` with the design rows on the GPU.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ["ase", "vesin", "cffi", "pycparser", "platformdirs", "tqdm"]
#: random directions the design rows are carried along (the rows themselves would not fit the carry)
PROBES = 4
SPECS = ["tiny", "binary", "compressed", "small", "default", "deep", "tree", "network"]
ARCH = "90"


def wheels(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)  # no wheel of an older release beside the new one: pip refuses both
    out.mkdir()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
           "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "any",
           "-d", str(out), *WHEELS]
    subprocess.run(cmd, check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(ROOT)], check=True,
                   capture_output=True)


def cells(species, seed: int):
    """The configurations the GPU results are compared on, named."""
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    out = {}
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    crystal.set_cell(crystal.cell.array @ (np.eye(3) + 0.03 * rng.normal(size=(3, 3))), scale_atoms=True)
    crystal.symbols = rng.choice(list(species), len(crystal))
    crystal.positions += 0.1 * rng.normal(size=crystal.positions.shape)
    out["periodic"] = crystal
    cluster = Atoms(rng.choice(list(species), 9), positions=rng.uniform(0, 5, (9, 3)))
    keep = [0]
    for k in range(1, len(cluster)):  # no two atoms closer than 1.7 Å
        if min(np.linalg.norm(cluster.positions[k] - cluster.positions[j]) for j in keep) > 1.7:
            keep.append(k)
    out["cluster"] = cluster[keep]
    lone = out["cluster"].copy()
    lone += Atoms(species[0], positions=[[40.0, 40.0, 40.0]])  # an atom without neighbours
    out["lone_atom"] = lone
    dense = bulk("Cu", "fcc", a=3.0, cubic=True).repeat((3, 3, 3))  # ~80 neighbours within 5 Å
    dense.symbols = rng.choice(list(species), len(dense))
    dense.positions += 0.05 * rng.normal(size=dense.positions.shape)
    out["dense"] = dense
    return out


def references(specs, out: Path) -> None:
    import etn
    from etn.backends.cbackend import CBackend
    from etn.backends.resolver import design as _design
    from etn.io.neighbors import pairs

    data = {}
    for name in specs:
        spec = etn.catalogue.load(name)
        pot = etn.Potential.random(spec, seed=5, scale=0.5)
        pot.block("e0")[:] = -3.0
        data[f"{name}/params"] = pot.params
        for dtype in ("float64", "float32"):
            for cname, atoms in cells(spec.species, seed=len(name)).items():
                r = pot.evaluate(atoms, backend=f"c-{dtype}", stress=atoms.cell.rank == 3)
                key = f"{name}/{dtype}/{cname}"
                data[f"{key}/numbers"] = atoms.numbers
                data[f"{key}/positions"] = atoms.positions
                data[f"{key}/cell"] = atoms.cell.array
                data[f"{key}/pbc"] = atoms.pbc
                for q in ("energy", "energies", "forces", "stress"):
                    if q in r:
                        data[f"{key}/{q}"] = np.asarray(r[q])
        # the fused rows and grades of extrapolation (etn_compute_graded) on the periodic cell, float64: an
        # active set of random M, one species of rank 0 (γ = inf) when there are several
        cb = CBackend(pot.schedule, "float64")
        size = cb.lib.etn_grade_row_size()
        rank = np.array([(3, 0, 2)[s % 3] for s in range(spec.n_species)], dtype=np.int32)
        M = np.random.default_rng(3).normal(size=size * rank.sum())
        pr = pairs(cells(spec.species, seed=len(name))["periodic"], spec)
        _, _, R, gamma = cb.compute_graded(pot.params, pr, True, (M, rank))
        V = np.random.default_rng(4).normal(size=(size, PROBES))
        data.update({f"{name}/graded/M": M, f"{name}/graded/rank": rank, f"{name}/graded/V": V,
                     f"{name}/graded/RV": R @ V, f"{name}/graded/gamma": gamma})
        rows = _design(pot.schedule, "c")
        two = cells(spec.species, seed=1)
        prs = [pairs(two["periodic"], spec), pairs(two["cluster"], spec)]
        rng = np.random.default_rng(7)
        for g in rows.group_ids:
            E, F, W = rows.batch(pot.params, prs, g)
            V = rng.normal(size=(E.shape[-1], PROBES))  # rows x V: any wrong entry shows (deep's rows are 20 MiB)
            data[f"{name}/design/{g}/V"] = V
            for q, v in (("E", E), ("F", F), ("W", W)):
                data[f"{name}/design/{g}/{q}V"] = v @ V
        print(f"  references of {name}: {len(rows.group_ids)} design groups", flush=True)
    out.mkdir(exist_ok=True)
    np.savez_compressed(out / "ref.npz", **data)


def monbtaw_data(out: Path) -> None:
    """MoNbTaW-v1's extxyz files (../shared, 14 MB), gzipped into ``out`` (3 MB): the GPU fit's data."""
    src = ROOT.parent / "shared" / "data" / "raw" / "MoNbTaW_Li2020" / "extxyz"
    files = sorted(src.glob("*.xyz"))
    if not files:
        raise SystemExit(f"prepare.py: no MoNbTaW-v1 data in {src}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for f in files:
        with open(f, "rb") as a, gzip.open(out / (f.name + ".gz"), "wb", compresslevel=9) as b:
            shutil.copyfileobj(a, b)


def cuda_libraries(specs, cache: Path) -> None:
    """Build (or keep) the CUDA libraries of ``specs`` in ``cache`` and remove every other entry there: a
    library of an older rendering would only take room from the 64 MiB the device tool carries."""
    os.environ["ETN_CACHE_DIR"] = str(cache)
    import etn
    from etn.backends.codegen import render_cuda, render_design_cuda
    from etn.backends.cuda import build

    keep = set()
    for name in specs:
        sched = etn.schedule(etn.catalogue.load(name))
        for label, src in (("float64", render_cuda(sched, "float64")), ("float32", render_cuda(sched, "float32")),
                           ("design rows", render_design_cuda(sched))):
            t = time.perf_counter()
            keep.add(build(src, ARCH).parent.resolve())
            print(f"  nvcc sm_{ARCH}: {name} {label} in {time.perf_counter() - t:.0f} s", flush=True)
    for entry in cache.iterdir():
        if entry.is_dir() and entry.resolve() not in keep:
            shutil.rmtree(entry)
            print(f"  removed the stale {entry.name}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="+", default=SPECS)
    ap.add_argument("--skip-wheels", action="store_true")
    ap.add_argument("--skip-cuda", action="store_true", help="no nvcc builds (the device builds what is missing)")
    a = ap.parse_args(argv)
    if not a.skip_wheels:
        print("wheels for the GPU image (cp312) -> .whl/", flush=True)
        wheels(ROOT / ".whl")
    print("C reference results -> .gpu_ref/ref.npz", flush=True)
    references(a.specs, ROOT / ".gpu_ref")
    print("MoNbTaW-v1 data, gzipped -> .gpu_ref/monbtaw/", flush=True)
    monbtaw_data(ROOT / ".gpu_ref" / "monbtaw")
    if not a.skip_cuda:
        print(f"CUDA libraries for sm_{ARCH} -> .gpu_cache/", flush=True)
        cuda_libraries(a.specs, ROOT / ".gpu_cache")
    sizes = {d: sum(f.stat().st_size for f in (ROOT / d).rglob("*") if f.is_file()) / 2 ** 20
             for d in (".whl", ".gpu_cache", ".gpu_ref") if (ROOT / d).exists()}
    print("carry: " + ", ".join(f"{d} {mb:.1f} MiB" for d, mb in sizes.items()) + " (limit 64 MiB in all)")


if __name__ == "__main__":
    main()
