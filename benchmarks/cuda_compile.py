"""nvcc time of the generated CUDA sources: the evaluation (float64) and design-row kernels of `default`
and `deep`, built as etn builds them (-O3, one GPU generation), with nvcc's own phase timings.

    python3 benchmarks/cuda_compile.py [--arch 90] [--timeout 900] [--cases default:evaluate deep:design ...]

Needs nvcc, not a GPU. For a side by side with an older commit, run the same script from a snapshot of
that commit's package (PYTHONPATH) right after this one: the machine's load moves both alike.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CASES = ["default:evaluate", "default:design", "deep:evaluate", "deep:design"]


def phases(csv_path: Path) -> dict[str, float]:
    """Seconds per nvcc phase (cicc: the device front end and optimiser, ptxas: the assembler)."""
    out: dict[str, float] = {}
    if not csv_path.exists():
        return out
    with open(csv_path) as fh:
        for row in csv.reader(fh):
            if len(row) > 6 and row[1].strip() in ("cicc", "ptxas"):
                out[row[1].strip()] = out.get(row[1].strip(), 0.0) + float(row[6]) / 1000
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="90")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per build before it is given up")
    ap.add_argument("--cases", nargs="+", default=CASES)
    a = ap.parse_args(argv)

    import etn
    from etn.backends.codegen import render_cuda, render_design_cuda
    from etn.backends.cuda import NVCC_FLAGS, gencode, nvcc

    print(f"etn from {Path(etn.__file__).parent}; nvcc {' '.join(NVCC_FLAGS)} sm_{a.arch}")
    print(f"{'spec':8s} {'kernel':9s} {'lines':>7s} {'wall s':>8s} {'cicc s':>8s} {'ptxas s':>8s} {'.so MB':>7s}")
    for case in a.cases:
        name, kernel = case.split(":")
        sched = etn.schedule(etn.catalogue.load(name))
        src = render_cuda(sched, "float64") if kernel == "evaluate" else render_design_cuda(sched)
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            (d / "etn_cuda.h").write_text(src.header_file())
            (d / "k.cu").write_text(src.kernels)
            cmd = [*nvcc(), *NVCC_FLAGS, *gencode([a.arch]), "--time", str(d / "t.csv"), str(d / "k.cu"),
                   "-o", str(d / "k.so")]
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                ok = proc.wait(timeout=a.timeout) == 0
            except subprocess.TimeoutExpired:  # nvcc's children (cicc, ptxas) too, not only nvcc
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                ok = False
            wall = time.perf_counter() - t
            p = phases(d / "t.csv")
            size = (d / "k.so").stat().st_size / 1e6 if ok else float("nan")
            note = "" if ok else ("  (gave up)" if wall >= a.timeout else "  (failed)")
            print(f"{name:8s} {kernel:9s} {src.kernels.count(chr(10)):7d} {wall:8.1f} {p.get('cicc', float('nan')):8.1f} "
                  f"{p.get('ptxas', float('nan')):8.1f} {size:7.1f}{note}", flush=True)


if __name__ == "__main__":
    main()
