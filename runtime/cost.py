"""What a spec will cost before it is fitted: parameters, and evaluation time estimated from the
schedule's FLOPs and this machine's measured rate.

The rate is measured once per machine and etn version (cached beside the kernels): the C kernels of
the catalogue's ``small`` spec evaluate energy and forces of a 1024-atom bcc cell, and the FLOPs the
schedule counts for it are divided by the time. A spec's estimate is its own FLOPs at a typical
neighbour count over that rate, an estimate (SIMD efficiency differs between specs by about ±20%).
"""

from __future__ import annotations

import json
import math
import os
import time

#: Atoms per Å³ for the typical neighbour count of the estimate (dense metals: 0.06-0.09).
DENSITY = 0.07


def neighbours(r_cut: float, density: float = DENSITY) -> float:
    """Typical number of neighbours within ``r_cut`` in a dense solid."""
    return 4.0 / 3.0 * math.pi * r_cut ** 3 * density


def flops(sched, n_neighbours: float | None = None) -> float:
    """FLOPs of one energy + forces evaluation per atom (forward and backward, as the schedule counts)."""
    n = neighbours(sched.spec.r_cut) if n_neighbours is None else n_neighbours
    f = sched.flops
    return sum(getattr(f, k).per_atom + getattr(f, k).per_pair * n for k in ("forward", "backward"))


def measured_rate() -> tuple[float, int]:
    """(FLOP/s of the C kernels on this machine, threads), measured once and cached."""
    from . import __version__
    from .backends.build import _cpu_model, cache_dir

    threads = os.cpu_count() or 1
    path = cache_dir() / "flop_rate.json"
    key = f"{_cpu_model()}|{threads}|{__version__}"
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return float(cached["rate"]), threads
    except (OSError, ValueError, KeyError):
        pass
    import numpy as np
    from ase.build import bulk

    from . import catalogue
    from .io.neighbors import pairs
    from .potential import Potential

    pot = Potential.random(catalogue.load("small"), seed=0, scale=0.3)
    atoms = bulk("W", "bcc", a=3.2, cubic=True).repeat(8)
    atoms.symbols = np.resize(np.array(pot.spec.species), len(atoms))
    pr = pairs(atoms, pot.spec)
    be = pot._get_backend("c")
    for _ in range(3):  # wake the threads
        be.compute(pot.params, pr, gradients=True)
    best = min(_timed(lambda: be.compute(pot.params, pr, gradients=True)) for _ in range(30))
    rate = flops(pot.schedule, len(pr.i) / len(atoms)) * len(atoms) / best
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, "rate": rate}))
    except OSError:
        pass
    return rate, threads


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def estimate_us(sched) -> float:
    """Estimated µs per atom for energy and forces on this machine (FLOPs over the measured rate)."""
    return 1e6 * flops(sched) / measured_rate()[0]


def summary(sched) -> str:
    """One line: parameters and the estimated µs per atom for energy and forces on this machine."""
    n = neighbours(sched.spec.r_cut)
    line = f"{sched.n_params:,} parameters"
    try:
        rate, threads = measured_rate()
    except Exception as e:  # no compiler, no cache: the estimate is optional
        return line + f"; no cost estimate ({type(e).__name__}: {e})"
    us = 1e6 * flops(sched, n) / rate
    return (f"{line}; estimated {us:.2g} µs/atom for energy and forces on this machine ({threads} threads; "
            f"{flops(sched, n) / 1e3:,.0f} kFLOP per atom at ~{n:.0f} neighbours, rate {rate / 1e9:.1f} GFLOP/s "
            f"measured on `small`; an estimate)")
