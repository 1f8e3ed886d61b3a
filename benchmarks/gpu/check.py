"""The GPU check in one command (device tool): correctness of the CUDA backend against carried C
results, then a fit and its speed. Prepared by ``benchmarks/gpu/prepare.py``; rehearsed without a GPU
by ``--rehearse`` (the CUDA sources run on the host through tests/cuda_emulation, the fit uses C on a
subset, the speed benchmark runs one small cell on the host), so that the device run cannot fail on a
typo.

    bash benchmarks/gpu/run.sh          (on the device: carry .whl .gpu_cache .gpu_ref; writes under $OUT)
    python3 benchmarks/gpu/check.py --rehearse --out /tmp/gpu_rehearsal

Writes ``check.txt`` / ``check.json`` (per spec, precision and cell: the largest relative differences of
energy, per-atom energies, forces and stress, of the fused rows and grades of extrapolation, and of
every design-row group), ``fit.txt`` (`default` fitted to MoNbTaW-v1 with the design rows on the GPU,
at most 150 s), ``speed.txt`` (the CUDA speed benchmark beside the C backend, sizes limited to the
time left) and ``env.txt`` (GPU, driver, nvcc, cupy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Agreement required: float64 to round-off, float32 to its precision (relative to each quantity's scale).
TOL = {"float64": 1e-10, "float32": 2e-4}


def install_wheels(site: Path, only_etn: bool = False) -> None:
    """Make etn and what the image lacks importable, here and in the fit's and the speed benchmark's
    processes (PYTHONPATH): the carried wheels, unpacked into ``site``. ``only_etn`` (the rehearsal,
    whose Python cannot load the cp312 wheels): etn's wheel alone, so that the rehearsal runs the wheel."""
    if not only_etn:
        try:
            import etn  # noqa: F401
            import ase  # noqa: F401
            import cffi  # noqa: F401
            return
        except ImportError:
            pass
    whl = sorted(str(p) for p in (ROOT / ".whl").glob("etn-*.whl" if only_etn else "*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target", str(site), *whl],
                   check=True, capture_output=True)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


def etn_in_subprocesses() -> str:
    """Where a child Python (the fit, the speed benchmark) finds etn."""
    r = subprocess.run([sys.executable, "-c", "import etn; print(etn.__file__)"], capture_output=True, text=True)
    return r.stdout.strip() or f"nowhere ({r.stderr.strip().splitlines()[-1:]})"


def rel(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) if b.size else 0.0


def check(ref, backend_of, design_of, log, deadline: float = float("inf")) -> list[dict]:
    """Every carried reference case against ``backend_of(dtype)`` and ``design_of`` results; design rows
    are skipped (and said so) once less than 150 s are left before ``deadline`` (a missing build of
    `default`'s design rows takes minutes in nvcc)."""
    import numpy as np
    from ase import Atoms

    import etn
    from etn.io.neighbors import pairs

    from prepare import cells  # noqa: E402  (the same configurations)

    rows = []
    names = sorted({k.split("/")[0] for k in ref.files})
    for name in names:
        spec = etn.catalogue.load(name)
        params = ref[f"{name}/params"]
        for dtype in ("float64", "float32"):
            pot = etn.Potential(spec, params, backend=backend_of(dtype))
            for cname in ("periodic", "cluster", "lone_atom", "dense"):
                key = f"{name}/{dtype}/{cname}"
                atoms = Atoms(ref[f"{key}/numbers"], positions=ref[f"{key}/positions"], cell=ref[f"{key}/cell"],
                              pbc=ref[f"{key}/pbc"])
                r = pot.evaluate(atoms, stress=atoms.cell.rank == 3)
                errs = {q: rel(r[q], ref[f"{key}/{q}"]) for q in ("energy", "energies", "forces", "stress")
                        if f"{key}/{q}" in ref.files}
                ok = all(e <= TOL[dtype] for e in errs.values())
                rows.append(dict(spec=name, dtype=dtype, cell=cname, atoms=len(atoms), ok=ok, **errs))
                log(f"{name:10s} {dtype:7s} {cname:9s} {len(atoms):4d} atoms  " +
                    "  ".join(f"{q} {e:.1e}" for q, e in errs.items()) + ("" if ok else "  FAIL"))
        if f"{name}/graded/gamma" in ref.files:  # the fused rows and grades of extrapolation, float64
            key, g = f"{name}/float64/periodic", f"{name}/graded"
            atoms = Atoms(ref[f"{key}/numbers"], positions=ref[f"{key}/positions"], cell=ref[f"{key}/cell"],
                          pbc=ref[f"{key}/pbc"])
            be = etn.Potential(spec, params)._get_backend(backend_of("float64"))
            _, _, R, gamma = be.compute_graded(params, pairs(atoms, spec), True, (ref[f"{g}/M"], ref[f"{g}/rank"]))
            finite = np.isfinite(ref[f"{g}/gamma"])
            errs = dict(rows=rel(R @ ref[f"{g}/V"], ref[f"{g}/RV"]), gamma=rel(gamma[finite], ref[f"{g}/gamma"][finite]))
            ok = all(e <= TOL["float64"] for e in errs.values()) and np.array_equal(np.isfinite(gamma), finite)
            rows.append(dict(spec=name, dtype="float64", cell="graded", atoms=len(atoms), ok=ok, **errs))
            log(f"{name:10s} float64 graded    {len(atoms):4d} atoms  " + "  ".join(f"{q} {e:.1e}" for q, e in errs.items())
                + ("" if ok else "  FAIL"))
        if time.perf_counter() > deadline - 150:
            log(f"{name:10s} design rows skipped: too little time left")
            rows.append(dict(spec=name, dtype="float64", cell="design", ok=True, skipped=True))
            continue
        design = design_of(spec)
        if design is not None:
            two = cells(spec.species, seed=1)
            prs = [pairs(two["periodic"], spec), pairs(two["cluster"], spec)]
            for g in sorted({k.split("/")[2] for k in ref.files if k.startswith(f"{name}/design/")}):
                got = design.batch(params, prs, g)
                V = ref[f"{name}/design/{g}/V"]  # the rows are carried as rows x V
                errs = {q: rel(v @ V, ref[f"{name}/design/{g}/{q}V"]) for q, v in zip("EFW", got)}
                ok = all(e <= TOL["float64"] for e in errs.values())
                rows.append(dict(spec=name, dtype="float64", cell=f"design {g}", ok=ok, **errs))
                log(f"{name:10s} design  {g:14s} " + "  ".join(f"{q} {e:.1e}" for q, e in errs.items())
                    + ("" if ok else "  FAIL"))
    return rows


#: the GPU fit: `default` on MoNbTaW-v1, 8 sweeps (the CPU records' settings), design rows on the GPU;
#: issue 23's target is under 120 s. The rehearsal runs the same command on a small subset with C.
FIT = ["--spec", "default", "--sweeps", "8", "--backend", "cuda"]
REHEARSE_FIT = ["--spec", "small", "--sweeps", "1", "--max-train", "40", "--backend", "c"]


def step(label: str, script: str, args: list[str], out: Path, limit: float, log) -> None:
    """One benchmark script in a child process, its output (after its command line) in ``out``, stopped
    after ``limit`` seconds; how it ended goes to the log."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    t = time.perf_counter()
    with open(out, "w") as fh:
        fh.write(" ".join(cmd[1:]) + "\n")
        fh.flush()
        try:
            done = f"exit {subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=limit).returncode}"
        except subprocess.TimeoutExpired:
            done = f"stopped after {limit:.0f} s"
        fh.write(f"\n{done}, {time.perf_counter() - t:.0f} s\n")
    log(f"{label} ({' '.join(args)}): {done}, {time.perf_counter() - t:.0f} s ({out.name})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    ap.add_argument("--rehearse", action="store_true", help="no GPU: the CUDA sources run on the host")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the whole check (default 420)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.rehearse:  # the carried wheels must install into the GPU image's Python 3.12
        whl = sorted(str(p) for p in (ROOT / ".whl").glob("*.whl"))
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps",
                            "--python-version", "3.12", "--only-binary=:all:", "--target", str(out / "site"), *whl],
                           capture_output=True, text=True)
        print(f"wheels for Python 3.12: {'ok' if r.returncode == 0 else 'FAIL ' + r.stderr[-300:]} ({len(whl)} wheels)")
    import tempfile

    site = Path(tempfile.mkdtemp(prefix="etn-site-"))  # not under $OUT: only results come back
    install_wheels(site, only_etn=a.rehearse)
    # the rehearsal's builds go elsewhere: .gpu_cache carries only what the device needs
    os.environ.setdefault("ETN_CACHE_DIR", tempfile.mkdtemp(prefix="etn-rehearsal-") if a.rehearse
                          else str(ROOT / ".gpu_cache"))
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np

    lines = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    env = {"rehearsal": a.rehearse}
    if not a.rehearse:
        import cupy

        dev = cupy.cuda.Device()
        env.update(gpu=cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode(), cc=dev.compute_capability,
                   driver=cupy.cuda.runtime.driverGetVersion(), runtime=cupy.cuda.runtime.runtimeGetVersion(),
                   cupy=cupy.__version__)
    env["nvcc"] = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1:] \
        if subprocess.run(["which", "nvcc"], capture_output=True).returncode == 0 else None
    (out / "env.txt").write_text(json.dumps(env, indent=1, default=str) + "\n")
    log(f"GPU check ({'rehearsal: the CUDA sources on the host' if a.rehearse else env.get('gpu')}); "
        f"etn cache {os.environ['ETN_CACHE_DIR']}")
    import etn

    child = etn_in_subprocesses()
    log(f"etn here: {etn.__file__}; in child processes: {child}")
    if Path(child).parent.parent != Path(etn.__file__).parent.parent:
        log("WARNING: the fit and the speed benchmark would import another etn (or none)")
    ref = np.load(ROOT / ".gpu_ref" / "ref.npz")
    if a.rehearse:  # the CUDA sources compiled for the host (tests/cuda_emulation), numpy for cupy
        sys.path.insert(0, str(ROOT / "tests"))
        from cuda_emulation.host import emulate

        emulate(Path(tempfile.mkdtemp(prefix="etn-emulated-")))
    from etn.backends.cuda import CudaDesign

    backend_of = lambda dtype: f"cuda-{dtype}"  # noqa: E731
    design_of = lambda spec: CudaDesign(__import__("etn").schedule(spec))  # noqa: E731
    try:
        rows = check(ref, backend_of, design_of, log, deadline=t0 + a.budget - 60)
    except Exception as e:  # record and go on to the speed part: the device time is spent either way
        log(f"check stopped: {type(e).__name__}: {e}")
        rows = []
    bad = [r for r in rows if not r["ok"]]
    log(f"{len(rows) - len(bad)} of {len(rows)} cases agree ({time.perf_counter() - t0:.0f} s)")
    (out / "check.json").write_text(json.dumps(rows, indent=1))
    (out / "check.txt").write_text("\n".join(lines) + "\n")
    left = a.budget - (time.perf_counter() - t0)
    data = ROOT / ".gpu_ref" / "monbtaw"
    if data.exists() and (a.rehearse or left > 300):
        step("fit", "monbtaw.py", ["--data", str(data), *(REHEARSE_FIT if a.rehearse else FIT)], out / "fit.txt",
             300 if a.rehearse else min(150.0, left - 150), log)
        (out / "check.txt").write_text("\n".join(lines) + "\n")
    left = a.budget - (time.perf_counter() - t0)
    if a.rehearse or left > 60:
        speed = (["--rehearse", "--max-atoms", "2000", "--repeat", "1", "--cpu-repeat", "1", "--models", "default"]
                 if a.rehearse else ["--max-atoms", str(1_000_000 if left > 300 else 100_000),
                                     "--models", "default,deep" if left > 300 else "default"])
        step("speed", "cuda_speed.py", speed, out / "speed.txt", 300 if a.rehearse else max(30, left - 30), log)
        (out / "check.txt").write_text("\n".join(lines) + "\n")
    return 0 if rows and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
