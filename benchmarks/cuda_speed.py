"""Speed of the CUDA backend: atoms x steps per second for energy + forces on random Nb-Mo-Ta-W bcc cells.

For `default` and `deep`, float64 and float32, on cells of about 10^3 to 10^6 atoms (a = 3.2 Å,
rattled): the time of one call of the generated launcher `etn_cuda_compute` (energies and per-pair
gradients; inputs already on the GPU, the launcher synchronises), as atoms x steps per second, beside
the C backend's time on the same pairs with every CPU core (``--cpu-repeat 0``: without it); the
schedule's FLOPs per atom of the evaluation as the CUDA kernels run it (folded cores as in C, no
cache of forward temporaries) divided by the time, as a fraction of the GPU's matmul peak in that
precision (cuBLAS via cupy, measured here); and the bytes the kernel must move at least (positions,
neighbour species and gradients of every pair, energies) divided by the time, as a fraction of the
bandwidth of a device-to-device copy (measured here). Needs an NVIDIA GPU, cupy and nvcc.

    python benchmarks/cuda_speed.py                      # all sizes; redirect into benchmarks/results/
    python benchmarks/cuda_speed.py --max-atoms 200000   # fewer (the 10^6-atom neighbour list takes minutes)
    python benchmarks/cuda_speed.py --rehearse --max-atoms 2000 --repeat 1 --models default   # no GPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from speed import timed  # (benchmarks/speed.py: the fastest of several calls after a warm-up)


def cell(reps: int, seed: int = 0):
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=3.2, cubic=True).repeat((reps, reps, reps))
    atoms.symbols = np.random.default_rng(seed).choice(["Nb", "Mo", "Ta", "W"], len(atoms))
    atoms.rattle(0.05, seed=seed)
    return atoms


def cuda_flops(sched, n_neighbours: float) -> float:
    """FLOPs per atom, forward + backward, of the CUDA kernels as their plan lays them out: folded cores
    (Core.fold) on g' = U g, the others compressing their features and expanding the gradient; the
    backward pass forms the gA paths' X and the gh paths' GH once more (no cache on a GPU thread)."""
    from etn.backends.plan import plan

    spec = sched.spec
    chan = sched.features["channels"]
    total = 0
    for core in plan(sched, "evaluate", "cuda").cores:
        if core.K:
            total += 2 * sum(2 * chan[l] * core.K * (2 * l + 1) for l in range(spec.l_max + 1))
        for p in core.paths:
            total += p.flops[p.order] + p.bwd_flops[p.order]
            if p.order == "gA" and core.k > 1:
                total += 2 * p.r_in * p.n_c * p.r_out * (2 * p.l + 1)
            elif p.order == "gh":
                total += 2 * p.r_in * p.n_c * p.r_out * (2 * p.L_in + 1)
    fl = sched.flops
    # per pair: the schedule's count, plus the radial basis and harmonics formed once more for the gradients
    again = 8 * spec.n_radial + 2 * sum(len(row["R"]) for row in sched.sh)
    return total + (fl.forward.per_pair + fl.backward.per_pair + again) * n_neighbours


def device_time(cp, fn, repeat: int) -> float:
    """The fastest of ``repeat`` calls after a warm-up, by CUDA events around the call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return best


def cpu_time(sched, params, pairs, dtype: str, repeat: int) -> float:
    """The C backend on the same pairs, all cores (OpenMP): the fastest of ``repeat`` calls of its compute
    (energies and per-pair gradients, as the CUDA launcher), after a warm-up."""
    from etn.backends.cbackend import CBackend

    be = CBackend(sched, dtype)
    return timed(lambda: be.compute(params, pairs), repeat)


def host_time(cp, fn, repeat: int) -> float:
    """device_time's stand-in for the rehearsal: the fastest of ``repeat`` calls by the host clock."""
    return timed(fn, repeat)


def peaks(cp) -> dict:
    """GPU matmul rate per precision (FLOP/s) and device-to-device copy bandwidth (bytes/s, read + write)."""
    out = {}
    n = 8192
    for dt in (np.float64, np.float32):
        a = cp.random.random((n, n)).astype(dt)
        b = cp.random.random((n, n)).astype(dt)
        out[np.dtype(dt).name] = 2 * n ** 3 / device_time(cp, lambda: a @ b, 5)
    x = cp.empty(1 << 28, dtype=np.float64)  # 2 GiB
    y = cp.empty_like(x)
    out["copy"] = 2 * x.nbytes / device_time(cp, lambda: cp.copyto(y, x), 5)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-atoms", type=int, default=1_100_000, help="largest cell (atoms), default all sizes")
    ap.add_argument("--models", default="default,deep")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--cpu-repeat", type=int, default=3, help="calls of the C backend side by side (0: none)")
    ap.add_argument("--rehearse", action="store_true",
                    help="no GPU: the CUDA sources on the host (tests/cuda_emulation), host timers, no peaks")
    a = ap.parse_args()

    import etn
    from etn.backends import cuda
    from etn.backends.cuda import CudaBackend, CudaError
    from etn.io.neighbors import NeighborCache

    if a.rehearse:  # every line below runs, on numbers that say nothing about a GPU
        import sys
        import tempfile
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from cuda_emulation.host import emulate

        emulate(Path(tempfile.mkdtemp(prefix="etn-emulated-")))
    try:
        cp = cuda._cupy()  # (looked up now: the rehearsal has replaced it)
    except CudaError as e:
        raise SystemExit(f"cuda_speed.py: {e}")
    if a.rehearse:
        dev, pk, timer = {"name": "host emulation (rehearsal)", "totalGlobalMem": 0}, dict.fromkeys(
            ("float64", "float32", "copy"), float("nan")), host_time
    else:
        dev, pk, timer = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id), peaks(cp), device_time
    gpu = dev["name"].decode() if isinstance(dev["name"], bytes) else dev["name"]
    print(f"etn {etn.__version__} CUDA speed benchmark; {gpu}, compute capability "
          f"{cp.cuda.Device().compute_capability}, {dev['totalGlobalMem'] / 2 ** 30:.0f} GiB")
    print(f"matmul peak: float64 {pk['float64'] / 1e12:.1f} TFLOP/s, float32 {pk['float32'] / 1e12:.1f} TFLOP/s; "
          f"device-to-device copy {pk['copy'] / 1e9:.0f} GB/s\n")
    import os

    etn.set_threads(None)  # the C backend side by side on every core
    print(f"C backend side by side: {os.cpu_count()} cores, OpenMP, the same pairs")
    print(f"{'model':>8} {'dtype':>8} {'atoms':>9} {'nbrs':>5} {'ms/step':>9} {'atom-steps/s':>13} "
          f"{'µs/atom':>8} {'% FLOP peak':>11} {'% copy bw':>9} {'C µs/atom':>9} {'GPU/C':>6}")
    for reps in (8, 17, 37, 79):  # 1024, 9826, 101306, 986078 atoms
        if 2 * reps ** 3 > a.max_atoms:
            break
        atoms = cell(reps)
        for name in a.models.split(","):
            pot = etn.Potential.random(etn.catalogue.load(name), seed=0)
            pairs = NeighborCache(pot.spec, skin=0.0).pairs(atoms)
            N, n_nb = len(atoms), len(pairs.i) / len(atoms)
            for dtype in ("float64", "float32"):
                be = CudaBackend(pot.schedule, dtype)
                launch = be.prepare(pot.params, pairs)
                t = timer(cp, launch.run, a.repeat)
                flops = cuda_flops(pot.schedule, n_nb) * N / t
                size = np.dtype(be.np_dtype).itemsize
                moved = len(launch.csr.r) * (3 * size + 4 + 3 * size) + N * (size + 4 + 8)
                tc = cpu_time(pot.schedule, pot.params, pairs, dtype, a.cpu_repeat) if a.cpu_repeat else float("nan")
                print(f"{name:>8} {dtype:>8} {N:>9} {n_nb:>5.1f} {1e3 * t:>9.3f} {N / t:>13.3e} {1e6 * t / N:>8.4f} "
                      f"{100 * flops / pk[dtype]:>10.1f}% {100 * moved / t / pk['copy']:>8.1f}% {1e6 * tc / N:>9.3f} "
                      f"{tc / t:>6.1f}", flush=True)
                del launch
            if not a.rehearse:
                cp.get_default_memory_pool().free_all_blocks()
    print("\nFLOPs: the schedule's, for the evaluation as the CUDA kernels run it (see cuda_flops); "
          "time: the fastest of several synchronised launches, inputs resident on the GPU.")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.0f} s")
