"""Multicomponent-transfer data with exact ground truth: ASE's EMT on fcc Al, Cu, Ag, Au, Ni, Pd, Pt.

Models are fitted on unaries and binaries (`training_set`) and judged on 2- to 7-component random
fcc alloys (`test_set`; the n = 2 cells are the in-distribution reference). EMT is cheap and
exact, so the errors measure transfer alone, not label noise. Everything is deterministic under
the seed (numpy ``default_rng`` streams derived from it); labels are attached with a
``SinglePointCalculator``, so ``ase.io.write(..., format="extxyz")`` stores energy (eV), forces
(eV/Å) and stress (eV/Å³, ASE sign: positive = tensile).

    python3 benchmarks/emt_set.py OUTDIR [--seed 0] [--scale small|full]

writes ``OUTDIR/train.xyz`` and ``OUTDIR/test_{n}.xyz`` for n = 2..7.

Training kinds (``info["config_type"]`` = ``"unary_<kind>"`` or ``"binary_<kind>"``):
``rattle`` (Gaussian displacements, 0.03–0.12 Å), ``strain_iso`` (isotropic ±3 %),
``strain_random`` (random symmetric strain, components within ±3 %), ``vacancy`` (one site removed),
``surface_111`` / ``surface_100`` (slabs with 14 Å of vacuum, periodic in all three directions),
``md`` (Langevin snapshots at 300, 800 and 1500 K, one short run per temperature). Cells hold
8–32 atoms. Binaries use compositions 50/50, 25/75, 75/25 and uniformly random ones at the Vegard
lattice constant.
Test kinds: ``rattle`` and ``md`` on 32-atom cubic 2×2×2 cells with n randomly chosen elements in
near-equiatomic random occupation. ``info`` also carries ``elements`` (e.g. ``"Cu-Ni"``),
``n_components`` (distinct species in the cell) and, for MD, ``temperature_K``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
TEMPERATURES = (300.0, 800.0, 1500.0)   # K, the MD ladder
VACUUM = 7.0                            # Å on each side of a slab (14 Å gap > EMT's ~5.9 Å cutoff)
MD_DT_FS = 2.0
MD_FRICTION_PER_FS = 0.02               # Langevin friction, 1/fs

# configurations per unary / binary system and per kind, by scale
_TRAIN_RECIPE = {
    "small": {
        "unary": {"rattle": 2, "strain_iso": 1, "strain_random": 1, "vacancy": 1,
                  "surface_111": 1, "surface_100": 1, "md": 3},
        "binary": {"rattle": 2, "strain_iso": 1, "vacancy": 1, "surface": 1, "md": 2},
    },
    "full": {
        "unary": {"rattle": 5, "strain_iso": 3, "strain_random": 3, "vacancy": 3,
                  "surface_111": 2, "surface_100": 2, "md": 9},
        "binary": {"rattle": 8, "strain_iso": 3, "strain_random": 3, "vacancy": 3,
                   "surface": 3, "md": 9},
    },
}
_TEST_CELLS = {"small": 20, "full": 50}


# ---------------------------------------------------------------- lattice constants

@functools.lru_cache(maxsize=None)
def lattice_constant(symbol: str) -> float:
    """EMT's equilibrium fcc lattice constant of `symbol` (Å), minimising E(a) of the primitive cell."""
    from scipy.optimize import minimize_scalar

    def energy(a):
        at = bulk(symbol, "fcc", a=float(a))
        at.calc = EMT()
        return at.get_potential_energy()

    res = minimize_scalar(energy, bounds=(3.0, 4.8), method="bounded", options={"xatol": 1e-7})
    return float(res.x)


def lattice_constants() -> dict[str, float]:
    return {s: lattice_constant(s) for s in ELEMENTS}


def vegard(symbols) -> float:
    """Composition-weighted mean of the EMT fcc lattice constants of `symbols` (one entry per atom)."""
    symbols = list(symbols)
    return float(np.mean([lattice_constant(s) for s in symbols]))


# ---------------------------------------------------------------- building blocks

def _label(atoms: Atoms, config_type: str, **info) -> Atoms:
    """`atoms` with EMT energy, forces and stress frozen in a SinglePointCalculator."""
    atoms = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(),
                  cell=atoms.get_cell(), pbc=True)
    atoms.calc = EMT()
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    s = atoms.get_stress(voigt=False)
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
    elems = [x for x in ELEMENTS if x in set(atoms.get_chemical_symbols())]
    atoms.info = {"config_type": config_type, "elements": "-".join(elems),
                  "n_components": len(elems), **info}
    return atoms


def _occupation(n_sites: int, elements, fractions, rng) -> list[str]:
    """Random occupation of `n_sites` with counts as close as possible to `fractions` (each species ≥ 1)."""
    fr = np.asarray(fractions, float)
    fr = fr / fr.sum()
    counts = np.floor(fr * n_sites).astype(int)
    counts = np.maximum(counts, 1)
    while counts.sum() < n_sites:          # hand out the remainder by largest deficit, ties at random
        deficit = fr * n_sites - counts + 1e-9 * rng.random(len(counts))
        counts[int(np.argmax(deficit))] += 1
    while counts.sum() > n_sites:
        excess = counts - fr * n_sites + 1e-9 * rng.random(len(counts))
        excess[counts <= 1] = -np.inf
        counts[int(np.argmax(excess))] -= 1
    syms = [e for e, c in zip(elements, counts) for _ in range(c)]
    return [syms[i] for i in rng.permutation(n_sites)]


def _equiatomic(n_sites: int, elements, rng) -> list[str]:
    """Near-equiatomic random occupation: counts differ by at most one, the larger ones at random."""
    k = len(elements)
    counts = np.full(k, n_sites // k)
    counts[rng.choice(k, n_sites % k, replace=False)] += 1
    syms = [e for e, c in zip(elements, counts) for _ in range(c)]
    return [syms[i] for i in rng.permutation(n_sites)]


def _fcc_cell(n_sites: int) -> Atoms:
    """A unit-lattice-constant fcc supercell with `n_sites` sites (8, 16 or 32)."""
    if n_sites == 8:
        return bulk("X", "fcc", a=1.0).repeat((2, 2, 2))
    if n_sites == 16:
        return bulk("X", "fcc", a=1.0, cubic=True).repeat((2, 2, 1))
    if n_sites == 32:
        return bulk("X", "fcc", a=1.0, cubic=True).repeat((2, 2, 2))
    raise ValueError(f"no fcc cell with {n_sites} sites")


def _alloy(symbols, a: float | None = None) -> Atoms:
    """fcc cell occupied by `symbols` at lattice constant `a` (default: Vegard)."""
    a = vegard(symbols) if a is None else a
    cell = _fcc_cell(len(symbols))
    return Atoms(list(symbols), scaled_positions=cell.get_scaled_positions(), cell=cell.cell * a, pbc=True)


def _rattle(atoms: Atoms, sigma: float, rng) -> Atoms:
    atoms = atoms.copy()
    atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
    return atoms


def _strain(atoms: Atoms, eps: np.ndarray) -> Atoms:
    atoms = atoms.copy()
    atoms.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
    return atoms


def _iso_strain(rng) -> np.ndarray:
    return rng.uniform(-0.03, 0.03) * np.eye(3)


def _random_strain(rng) -> np.ndarray:
    e = rng.uniform(-0.03, 0.03, (3, 3))
    return 0.5 * (e + e.T)


def _slab(symbols, facet: str) -> Atoms:
    """(111) or (100) slab, 2×2 in plane and 4 layers (16 atoms), at the Vegard lattice constant."""
    a = vegard(symbols)
    build = fcc111 if facet == "111" else fcc100
    slab = build("Cu", size=(2, 2, 4), a=a, vacuum=VACUUM, periodic=True)
    slab.set_chemical_symbols(list(symbols))
    slab.pbc = True
    return slab


def _md_snapshots(atoms: Atoms, temps, n_per_temp: int, rng, equil: int = 60, gap: int = 40):
    """Langevin MD with EMT: for each temperature in `temps` (a heating ladder), `equil` steps,
    then `n_per_temp` snapshots `gap` steps apart. Returns ([(positions, cell, T)], symbols)."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    atoms = atoms.copy()
    atoms.calc = EMT()
    atoms.set_constraint(FixCom())
    m = atoms.get_masses()[:, None]          # Maxwell-Boltzmann momenta, centre of mass at rest
    p = np.sqrt(m * units.kB * temps[0]) * rng.standard_normal((len(atoms), 3))
    atoms.set_momenta(p - m * p.sum(0) / m.sum(), apply_constraint=False)
    dyn = Langevin(atoms, MD_DT_FS * units.fs, temperature_K=temps[0],
                   friction=MD_FRICTION_PER_FS / units.fs, fixcm=False, rng=rng)
    out = []
    for t in temps:
        dyn.set_temperature(temperature_K=t)
        dyn.run(equil)
        for k in range(n_per_temp):
            if k:
                dyn.run(gap)
            out.append((atoms.get_positions().copy(), atoms.get_cell().copy(), float(t)))
    return out, atoms.get_chemical_symbols()


def _md_temps(n: int, rng) -> list[tuple[float, int]]:
    """Spread `n` snapshots over the temperature ladder: [(T, count)] with increasing T."""
    if n <= len(TEMPERATURES):
        ts = sorted(rng.choice(TEMPERATURES, n, replace=False)) if n < len(TEMPERATURES) else list(TEMPERATURES)
        return [(float(t), 1) for t in ts]
    base, extra = divmod(n, len(TEMPERATURES))
    return [(t, base + (1 if i < extra else 0)) for i, t in enumerate(TEMPERATURES)]


def _md_labelled(atoms, n, rng, prefix, **info):
    plan = _md_temps(n, rng)
    out = []
    for t, cnt in plan:                          # one run per temperature keeps snapshots independent
        snaps, syms = _md_snapshots(atoms, [t], cnt, rng)
        for pos, cell, temp in snaps:
            at = Atoms(syms, positions=pos, cell=cell, pbc=True)
            out.append(_label(at, f"{prefix}md", temperature_K=temp, **info))
    return out


# ---------------------------------------------------------------- training set

def _system_configs(elements: tuple[str, ...], recipe: dict, rng) -> list[Atoms]:
    kind = "unary" if len(elements) == 1 else "binary"
    p = f"{kind}_"
    out = []

    def composition():
        if len(elements) == 1:
            return [1.0]
        x = [0.5, 0.25, 0.75, float(rng.uniform(0.1, 0.9))][int(rng.integers(4))]
        return [x, 1.0 - x]

    def occupy(n):
        return _occupation(n, elements, composition(), rng)

    for _ in range(recipe.get("rattle", 0)):
        syms = occupy(int(rng.choice([8, 16, 32])))
        out.append(_label(_rattle(_alloy(syms), rng.uniform(0.03, 0.12), rng), p + "rattle"))
    for _ in range(recipe.get("strain_iso", 0)):
        syms = occupy(int(rng.choice([8, 16, 32])))
        at = _rattle(_strain(_alloy(syms), _iso_strain(rng)), 0.02, rng)
        out.append(_label(at, p + "strain_iso"))
    for _ in range(recipe.get("strain_random", 0)):
        syms = occupy(int(rng.choice([8, 16, 32])))
        at = _rattle(_strain(_alloy(syms), _random_strain(rng)), 0.02, rng)
        out.append(_label(at, p + "strain_random"))
    for _ in range(recipe.get("vacancy", 0)):
        at = _alloy(occupy(32))
        del at[int(rng.integers(len(at)))]
        out.append(_label(_rattle(at, 0.05, rng), p + "vacancy"))
    facets = [f for f in ("111", "100") for _ in range(recipe.get(f"surface_{f}", 0))]
    facets += [("111", "100")[int(rng.integers(2))] for _ in range(recipe.get("surface", 0))]
    for facet in facets:
        at = _slab(occupy(16), facet)
        out.append(_label(_rattle(at, 0.04, rng), p + f"surface_{facet}"))
    if recipe.get("md", 0):
        at = _rattle(_alloy(occupy(32)), 0.02, rng)
        out += _md_labelled(at, recipe["md"], rng, p)
    return out


def training_set(seed: int = 0, scale: str = "small") -> list[Atoms]:
    """EMT-labelled unary (all 7) and binary (all 21 pairs) configurations; see the module docstring."""
    if scale not in _TRAIN_RECIPE:
        raise ValueError(f"scale must be one of {sorted(_TRAIN_RECIPE)}")
    recipe = _TRAIN_RECIPE[scale]
    rng = np.random.default_rng([seed, 0])
    out = []
    for el in ELEMENTS:
        out += _system_configs((el,), recipe["unary"], rng)
    for pair in itertools.combinations(ELEMENTS, 2):
        out += _system_configs(pair, recipe["binary"], rng)
    return out


# ---------------------------------------------------------------- test set

def test_set(n_components: int, seed: int = 0, scale: str = "small") -> list[Atoms]:
    """EMT-labelled 32-atom random fcc alloys with exactly `n_components` elements (2..7), each cell
    drawing its own elements; half rattled at the Vegard lattice constant, half MD snapshots."""
    if not 2 <= n_components <= len(ELEMENTS):
        raise ValueError(f"n_components must be within 2..{len(ELEMENTS)}")
    n_cells = _TEST_CELLS[scale]
    rng = np.random.default_rng([seed, 1, n_components])
    out = []
    n_md = n_cells // 2
    for i in range(n_cells - n_md):
        els = [ELEMENTS[j] for j in sorted(rng.choice(len(ELEMENTS), n_components, replace=False))]
        at = _rattle(_alloy(_equiatomic(32, els, rng)), rng.uniform(0.03, 0.12), rng)
        out.append(_label(at, "rattle"))
    done = 0
    while done < n_md:                          # two snapshots per MD run, 40 steps apart
        els = [ELEMENTS[j] for j in sorted(rng.choice(len(ELEMENTS), n_components, replace=False))]
        at = _rattle(_alloy(_equiatomic(32, els, rng)), 0.02, rng)
        t = float(rng.choice(TEMPERATURES))
        snaps, syms = _md_snapshots(at, [t], min(2, n_md - done), rng)
        for pos, cell, temp in snaps:
            out.append(_label(Atoms(syms, positions=pos, cell=cell, pbc=True), "md", temperature_K=temp))
            done += 1
    for a in out:
        a.info["n_components"] = n_components
    return out


def ideal_random_alloy(symbols_pool, n_atoms_repeat=(2, 2, 2), seed: int = 0) -> Atoms:
    """Unlabelled, unrattled random fcc alloy: a cubic fcc cell repeated `n_atoms_repeat` times
    (an int repeats all three directions), near-equiatomic random occupation by `symbols_pool`,
    at the Vegard lattice constant. For probes (forces on an ideal lattice, MD starts)."""
    rng = np.random.default_rng([seed, 2])
    rep = (n_atoms_repeat,) * 3 if np.isscalar(n_atoms_repeat) else tuple(n_atoms_repeat)
    cell = bulk("X", "fcc", a=1.0, cubic=True).repeat(rep)
    syms = _equiatomic(len(cell), list(symbols_pool), rng)
    a = vegard(syms)
    return Atoms(syms, scaled_positions=cell.get_scaled_positions(), cell=cell.cell * a, pbc=True)


# ---------------------------------------------------------------- files

def write(outdir, seed: int = 0, scale: str = "small") -> dict[str, int]:
    """Write ``train.xyz`` and ``test_{n}.xyz`` (n = 2..7) as extxyz; returns the counts per file."""
    import ase.io

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    t0 = time.perf_counter()
    lattice_constants()
    tr = training_set(seed, scale)
    ase.io.write(out / "train.xyz", tr, format="extxyz")
    counts["train.xyz"] = len(tr)
    print(f"train.xyz: {len(tr)} configurations, {sum(len(a) for a in tr)} atoms "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    for n in range(2, len(ELEMENTS) + 1):
        t1 = time.perf_counter()
        te = test_set(n, seed, scale)
        ase.io.write(out / f"test_{n}.xyz", te, format="extxyz")
        counts[f"test_{n}.xyz"] = len(te)
        print(f"test_{n}.xyz: {len(te)} configurations ({time.perf_counter() - t1:.1f} s)", flush=True)
    print(f"total {sum(counts.values())} configurations in {time.perf_counter() - t0:.1f} s -> {out}")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", choices=sorted(_TRAIN_RECIPE), default="small")
    args = ap.parse_args(argv)
    write(args.outdir, args.seed, args.scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
