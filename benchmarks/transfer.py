"""Multicomponent transfer: do models fitted on unaries and binaries stay physical in alloys with more
components?  (DESIGN.md section 4, "Transfer".)  No DFT is needed.

    python3 benchmarks/transfer.py probes MODEL.etn [--md] [--ps 20] [--temperatures 300 1500 3000]
    python3 benchmarks/transfer.py ablation [--spec small] [--variants ...]
    python3 benchmarks/transfer.py emt [--scale small|full] [--pod] [--variants ...]

``probes``: for a model fitted on MoNbTaW-v1 (Nb, Mo, Ta, W), ideal random equiatomic bcc cells
(a = 3.24 Å, 10x10x10 conventional cells = 2000 atoms, 5 seeds) of the quaternary, of the four
ternaries and, as the in-distribution reference, of the six binaries: largest and RMS force (eV/Å)
and energy per atom (eV). Large forces on an ideal lattice mean the model extrapolates wildly. With
``--md``, LAMMPS MD of the 2000-atom quaternary with the exported plugin: NVT (Nosé–Hoover) at each
temperature, ``--ps`` ps with 1 fs steps, then NVE after the first: survival (see ``md_input``), the
shortest distance seen, and the NVE total-energy drift (eV/atom/ps).

``ablation``: a spec fitted on all of MoNbTaW-v1 once per variant of ``VARIANTS``: validation and test
errors next to the lattice probes.

``emt``: the EMT transfer set (``emt_set.py``: training data of the 7 unaries and 21 binaries of
Al Cu Ag Au Ni Pd Pt, test data of random fcc alloys with 2 to 7 components, exact EMT labels); fits
etn's models on the training data and reports energy and force RMSE per number of components; with
``--pod``, LAMMPS POD fitted by ``fitpod`` on the same data, side by side.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import etn  # noqa: E402

QUATERNARY = ("Nb", "Mo", "Ta", "W")


def random_bcc(symbols, a: float = 3.24, reps: int = 10, seed: int = 0):
    """An ideal bcc cell of ``2 reps³`` atoms, species drawn at random in equal numbers (equiatomic)."""
    from ase.build import bulk

    atoms = bulk("Mo", "bcc", a=a, cubic=True).repeat(reps)
    n = len(atoms)
    labels = np.resize(np.array(symbols), n)
    np.random.default_rng(seed).shuffle(labels)
    atoms.symbols = labels
    return atoms


def probe_lattices(pot, a: float = 3.24, reps: int = 10, seeds=range(5)) -> list[dict]:
    """Forces and energies of ideal random lattices: the quaternary, every ternary and, as the in-distribution
    reference (the training data hold binary cells), every binary of ``QUATERNARY``."""
    systems = [QUATERNARY] + list(itertools.combinations(QUATERNARY, 3)) + list(itertools.combinations(QUATERNARY, 2))
    rows = []
    for syms in systems:
        fmax, frms, epa = [], [], []
        for seed in seeds:
            atoms = random_bcc(syms, a, reps, seed)
            r = pot.evaluate(atoms, stress=False)
            f = np.linalg.norm(r["forces"], axis=1)
            fmax.append(f.max())
            frms.append(np.sqrt(np.mean(r["forces"] ** 2)))
            epa.append(r["energy"] / len(atoms))
        rows.append(dict(system="".join(syms), components=len(syms), n_atoms=len(atoms), max_force=max(fmax),
                         rms_force=float(np.mean(frms)), energy_per_atom=float(np.mean(epa)),
                         energy_spread=float(np.std(epa))))
    return rows


def print_probes(rows, title: str) -> None:
    print(title)
    print(f"{'system':10s} {'atoms':>6s} {'max |F|':>9s} {'RMS F':>8s} {'E/atom':>10s}")
    print(f"{'':10s} {'':>6s} {'eV/Å':>9s} {'eV/Å':>8s} {'eV':>10s}")
    for r in rows:
        print(f"{r['system']:10s} {r['n_atoms']:6d} {r['max_force']:9.3f} {r['rms_force']:8.3f} "
              f"{r['energy_per_atom']:10.4f}")


def md_input(species, T: float, ps: float, a: float = 3.24, nve_ps: float = 0.0) -> str:
    """LAMMPS input: the 2000-atom random equiatomic bcc cell, NVT (Nosé–Hoover, 0.1 ps) at T for ``ps``,
    then (``nve_ps``) NVE; the shortest distance every 100 steps and the energies go to files. A run survives
    when LAMMPS ends without an error (no overlap, no lost atoms), the mean temperature over the second
    half is within 20% of the thermostat's (runs of a few ps at least: the cell starts at 2T) and no two
    atoms came closer than 0.75 r_min."""
    from lammps_nve import random_bcc_input

    nvt, nve = int(round(ps * 1000)), int(round(nve_ps * 1000))
    text = random_bcc_input(species, a, "plugin/model.etn") + f"""neighbor 1.0 bin
compute d all pair/local dist
compute dmin all reduce min c_d inputs local
thermo_style custom step temp pe etotal press c_dmin
thermo 1000
thermo_modify lost error
velocity all create {2 * T} 4928459 mom yes rot yes dist gaussian
fix t all nvt temp {T} {T} 0.1
timestep 0.001
fix m all print 100 "$(step) $(c_dmin:%.6g) $(temp:%.6g)" file dmin.txt screen no
run {nvt}
"""
    if nve:
        text += f"""unfix t
fix nve all nve
fix e all print 100 "$(step) $(etotal:%.12g) $(pe:%.12g) $(temp:%.6g)" file nve.txt screen no
run {nve}
"""
    return text


def md_probes(model, ps: float, ranks: int, work: Path, temperatures=(300.0, 1500.0, 3000.0)) -> list[dict]:
    """Survival, shortest distance and (after the 300 K NVT) NVE drift of the random quaternary in LAMMPS."""
    import shutil

    from etn.hosts.lammps import LammpsError, export, run

    pot = etn.Potential.load(model)
    export(model, work / "plugin")
    shutil.copyfile(model, work / "plugin" / "model.etn")
    rows = []
    for T in temperatures:
        folder = work / f"T{int(T)}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plugin").unlink(missing_ok=True)
        (folder / "plugin").symlink_to(work / "plugin")
        nve_ps = ps / 2 if T == temperatures[0] else 0.0
        (folder / "in.md").write_text(md_input(list(pot.spec.species), T, ps, nve_ps=nve_ps))
        t0 = time.perf_counter()
        row = dict(T=T, ps=ps, survived=True, error="")
        try:
            run("in.md", nprocs=ranks, cwd=folder, log="log.md")
        except LammpsError as e:
            row.update(survived=False, error=str(e))
        row["seconds"] = time.perf_counter() - t0
        if (folder / "dmin.txt").exists():
            data = np.atleast_2d(np.loadtxt(folder / "dmin.txt", comments="#"))
            if data.size:
                row["shortest"] = float(data[:, 1].min())
                row["reached_ps"] = float(data[-1, 0]) / 1000
                row["mean_T"] = float(data[len(data) // 2:, 2].mean())
        # a run that ends without an error can still have collapsed: atoms fallen into each other heat it far
        # above the thermostat's temperature
        hot = abs(row.get("mean_T", T) - T) > 0.2 * T
        if row["survived"] and (hot or row.get("shortest", 9) < 0.75 * pot.spec.r_min):
            row.update(survived=False, error=f"collapsed: mean T {row['mean_T']:.0f} K over the second half, "
                                             f"atoms {row['shortest']:.2f} Å apart")
        if nve_ps and row["survived"] and (folder / "nve.txt").exists():
            step, etot, pe, temp = np.loadtxt(folder / "nve.txt", comments="#").T
            e = (etot - etot[0]) / 2000  # md_input's cell
            row["nve_drift"] = float(np.polyfit((step - step[0]) / 1000, e, 1)[0])
            row["nve_excursion"] = float(np.abs(e).max())
            row["nve_ps"] = nve_ps
        rows.append(row)
    return rows


def print_md(rows) -> None:
    print(f"{'T (K)':>6s} {'ps':>5s} {'survived':>9s} {'reached':>8s} {'mean T':>7s} {'shortest':>9s}  NVE drift after NVT")
    for r in rows:
        drift = (f"{r['nve_drift']:+.2e} eV/atom/ps over {r['nve_ps']:g} ps (largest excursion "
                 f"{r['nve_excursion']:.1e} eV/atom)") if "nve_drift" in r else ""
        print(f"{r['T']:6.0f} {r['ps']:5g} {'yes' if r['survived'] else 'NO':>9s} {r.get('reached_ps', 0):7.2f}p "
              f"{r.get('mean_T', float('nan')):7.0f} {r.get('shortest', float('nan')):8.3f}Å  {drift}")
        if r["error"]:
            print(f"       {r['error']}")


#: etn models of the EMT benchmark: name -> (spec changes to EMT_SPEC, FitSettings changes)
EMT_SPEC = {"species": ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"], "r_min": 1.8, "r_cut": 5.5, "n_radial": 5,
            "l_max": 2, "cores": 3, "bonds": ["4x0 + 2x1 + 2x2", "4x0 + 2x1 + 2x2"], "compression": 6,
            "repulsion": "zbl"}
VARIANTS = {
    "before: scaled ridge 1e-10, e0 fitted": ({}, {"ridge": "scaled", "regularization": 1e-10,
                                                   "reference_energies": "fit"}),
    "scaled ridge 1e-6, e0 fitted": ({}, {"ridge": "scaled", "regularization": 1e-6, "reference_energies": "fit"}),
    "uniform ridge 1e-6, e0 fitted": ({}, {"regularization": 1e-6, "reference_energies": "fit"}),
    "now: uniform ridge 1e-5, e0 fitted": ({}, {"regularization": 1e-5, "reference_energies": "fit"}),
    "uniform ridge 1e-4, e0 fitted": ({}, {"regularization": 1e-4, "reference_energies": "fit"}),
    "uniform ridge 1e-6, e0 unary": ({}, {"regularization": 1e-6, "reference_energies": "unary"}),
    "uniform ridge 1e-5, e0 unary": ({}, {"regularization": 1e-5, "reference_energies": "unary"}),
    "uniform ridge 1e-4, e0 unary": ({}, {"regularization": 1e-4, "reference_energies": "unary"}),
    "now, K = 3 (more species mixing)": ({"compression": 3}, {}),
    "now, K = 12 (less species mixing)": ({"compression": 12}, {}),
    "now, no compression": ({"compression": 0}, {}),
    "now, 2 cores": ({"cores": 2, "bonds": ["4x0 + 2x1 + 2x2"]}, {}),
}


def monbtaw_ablation(spec_name: str, variants, sweeps: int) -> None:
    """Fit ``spec_name`` on all of MoNbTaW-v1 once per variant; test errors next to the lattice probes."""
    import glob

    from monbtaw import DATA

    from etn.io import dataset, metrics
    from etn.catalogue import resolve as _spec
    from etn.fitting.fit import Fitter, FitSettings

    base = _spec(spec_name).to_dict()
    files = sorted(glob.glob(os.path.join(DATA, "*.xyz")))
    frames = dataset.read([f for f in files if Path(f).stem.split("_")[-1] in ("AIMD", "Elastic", "Surface", "SS")],
                          base["species"])
    train, valid = dataset.split(frames, 0.1, 0)
    test = dataset.read([f for f in files if Path(f).stem.endswith("_Test")], base["species"])
    print(f"MoNbTaW-v1 ablation of '{spec_name}' ({len(train)} training, {len(valid)} validation, {len(test)} test "
          f"configurations; {sweeps} sweeps); probes: ideal random bcc lattices as above, largest |F| / RMS F in eV/Å")
    print(f"{'variant':34s} {'params':>6s} {'fit':>5s} {'val E':>6s} {'val F':>6s} {'test E':>6s} {'test F':>6s} "
          f"{'test S':>6s} {'quaternary':>11s} {'worst ternary':>13s} {'worst binary':>12s}")
    print(f"{'':34s} {'':>6s} {'min':>5s} {'meV/at':>6s} {'eV/Å':>6s} {'meV/at':>6s} {'eV/Å':>6s} {'GPa':>6s}")
    for name, (spec_over, fit_over) in variants.items():
        spec = etn.Spec.from_dict(dict(base, **spec_over))
        t0 = time.perf_counter()
        pot = Fitter(spec, train, valid, FitSettings(sweeps=sweeps, **fit_over), progress=False).run()
        minutes = (time.perf_counter() - t0) / 60
        v = metrics.errors(pot, valid)["overall"]
        t = metrics.errors(pot, test)["overall"]
        rows = probe_lattices(pot)
        q, tern, bi = (max((r for r in rows if r["components"] == n), key=lambda r: r["max_force"]) for n in (4, 3, 2))
        print(f"{name:34s} {pot.schedule.n_params:6d} {minutes:5.1f} {v['energy_rmse']:6.2f} {v['forces_rmse']:6.3f} "
              f"{t['energy_rmse']:6.2f} {t['forces_rmse']:6.3f} {t['stress_rmse']:6.2f} "
              f"{q['max_force']:5.2f}/{q['rms_force']:.2f} {tern['max_force']:7.2f}/{tern['rms_force']:.2f} "
              f"{bi['max_force']:6.2f}/{bi['rms_force']:.2f}", flush=True)


def emt_errors(pot, frames) -> tuple[float, float]:
    """Energy RMSE (meV/atom) and force-component RMSE (eV/Å) of ``pot`` (etn or POD) on labelled Atoms."""
    de, df = [], []
    for a in frames:
        r = pot.evaluate(a, forces=True, stress=False)
        de.append((r["energy"] - a.get_potential_energy()) / len(a))
        df.append((r["forces"] - a.get_forces()).ravel())
    return 1e3 * float(np.sqrt(np.mean(np.square(de)))), float(np.sqrt(np.mean(np.concatenate(df) ** 2)))


def emt_benchmark(scale: str, seed: int, pod: bool, variants, work: Path) -> None:
    import emt_set

    from etn.io import dataset
    from etn.fitting.fit import Fitter, FitSettings

    t0 = time.perf_counter()
    train_atoms = emt_set.training_set(seed, scale)
    tests = {n: emt_set.test_set(n, seed, scale) for n in range(2, 8)}
    valid_multi = {n: emt_set.test_set(n, seed + 1, scale) for n in range(3, 8)}  # for choosing, never the test
    print(f"EMT set (scale {scale}, seed {seed}): {len(train_atoms)} training configurations (7 unaries, 21 "
          f"binaries), {len(tests[2])} test cells per number of components; generated in "
          f"{time.perf_counter() - t0:.0f} s")
    work.mkdir(parents=True, exist_ok=True)
    import ase.io

    ase.io.write(work / "train.xyz", train_atoms, format="extxyz")
    frames = dataset.read(work / "train.xyz", EMT_SPEC["species"])
    train, valid = dataset.split(frames, 0.1, seed)
    ns = list(tests)
    rows = []
    for name, (spec_over, fit_over) in variants.items():
        spec = etn.Spec.from_dict(dict(EMT_SPEC, **spec_over))
        t1 = time.perf_counter()
        pot = Fitter(spec, train, valid, FitSettings(**fit_over), progress=False).run()
        secs = time.perf_counter() - t1
        errs = {n: emt_errors(pot, tests[n]) for n in ns}
        vm = np.mean([emt_errors(pot, v)[1] for v in valid_multi.values()])
        rows.append((f"etn {name}", pot.schedule.n_params, secs, errs, vm))
        print(f"  fitted etn {name}: {pot.schedule.n_params} parameters, {secs:.0f} s", flush=True)
    if pod:
        import pod_peer

        if not pod_peer.available():
            print("  LAMMPS POD: this LAMMPS has no fitpod (ML-POD package); not fitted")
        else:
            m = pod_peer.fit(train_atoms, EMT_SPEC["species"], EMT_SPEC["r_cut"], work / "pod", size="small")
            errs = {n: emt_errors(m, tests[n]) for n in ns}
            vm = np.mean([emt_errors(m, v)[1] for v in valid_multi.values()])
            rows.append(("LAMMPS POD (fitpod, 2+3-body)", m.n_params, m.fit_time_s, errs, vm))
            counts = {k: pod_peer.descriptor_count(EMT_SPEC["species"][:k], "small", EMT_SPEC["r_cut"])["global"]
                      for k in (2, 4, 7)}
            m.close()
    print("\nforce RMSE (eV/Å) on test cells by number of components; ratio = mean over 5-7 / binaries; "
          "'valid 3-7' = mean force RMSE on a second set of 3-7-component cells (seed + 1), the one to choose by")
    head = f"{'model':38s} {'params':>7s} {'fit s':>6s} " + " ".join(f"{n:>6d}" for n in ns)
    print(head + f" {'ratio':>6s} {'valid 3-7':>9s}")
    for name, n_par, secs, errs, vm in rows:
        f = [errs[n][1] for n in ns]
        ratio = np.mean([errs[n][1] for n in (5, 6, 7)]) / errs[2][1]
        print(f"{name:38s} {n_par:7d} {secs:6.0f} " + " ".join(f"{x:6.3f}" for x in f) + f" {ratio:6.1f} {vm:9.3f}")
    print("\nenergy RMSE (meV/atom) on the same cells")
    print(head)
    for name, n_par, secs, errs, vm in rows:
        print(f"{name:38s} {n_par:7d} {secs:6.0f} " + " ".join(f"{errs[n][0]:6.1f}" for n in ns))
    if pod:
        print("\nPOD coefficients for 2, 4, 7 species with the same settings: "
              + ", ".join(f"{counts[k]}" for k in (2, 4, 7)) + "; etn's parameters for the same: "
              + ", ".join(str(etn.generator.schedule(etn.Spec.from_dict(dict(EMT_SPEC, species=EMT_SPEC["species"][:k],
                                                                                  compression=min(6, 5 * k + 1)))).n_params)
                          for k in (2, 4, 7)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probes", help="ideal random NbMoTaW lattices (and LAMMPS MD with --md)")
    p.add_argument("model")
    p.add_argument("--md", action="store_true", help="also run the LAMMPS NVT/NVE stability runs")
    p.add_argument("--ps", type=float, default=20.0, help="ps per NVT temperature (default 20)")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--temperatures", type=float, nargs="+", default=[300.0, 1500.0, 3000.0],
                   help="NVT temperatures in K (default 300 1500 3000; NVE follows the first)")
    p.add_argument("--out", default=None, help="work folder of the MD runs")
    m = sub.add_parser("ablation", help="fit a spec on MoNbTaW-v1 once per variant: test errors and probes")
    m.add_argument("--spec", default="small")
    m.add_argument("--sweeps", type=int, default=6)
    m.add_argument("--variants", nargs="*", default=None, help=f"default: all of {list(VARIANTS)}")
    e = sub.add_parser("emt", help="EMT transfer set: fit on unaries and binaries, test on 2-7 components")
    e.add_argument("--scale", choices=("small", "full"), default="small")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--pod", action="store_true", help="also fit LAMMPS POD with fitpod, side by side")
    e.add_argument("--variants", nargs="*", default=None, help=f"etn variants (default: all of {list(VARIANTS)})")
    e.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)

    print(f"etn {etn.__version__} transfer benchmark; {platform.machine()}, {os.cpu_count()} cores")
    if args.cmd == "probes":
        pot = etn.Potential.load(args.model)
        print(f"model {args.model}: spec {pot.spec.hash[:12]}, {pot.schedule.n_params} parameters")
        t0 = time.perf_counter()
        rows = probe_lattices(pot)
        print_probes(rows, f"ideal random bcc lattices, a = 3.24 Å, 5 seeds (max over seeds, RMS and E mean over "
                           f"seeds; {time.perf_counter() - t0:.0f} s)")
        if args.md:
            import tempfile

            work = Path(args.out or tempfile.mkdtemp(prefix="etn-transfer-"))
            work.mkdir(parents=True, exist_ok=True)
            print(f"\nLAMMPS MD of the 2000-atom random NbMoTaW bcc cell (a = 3.24 Å), {args.ranks} MPI ranks, 1 fs "
                  f"steps, NVT at each T (velocities drawn at 2T), then NVE after the first for half as long; "
                  f"work folder {work}")
            print_md(md_probes(Path(args.model).resolve(), args.ps, args.ranks, work, args.temperatures))
    elif args.cmd == "ablation":
        monbtaw_ablation(args.spec, {k: VARIANTS[k] for k in (args.variants or VARIANTS)}, args.sweeps)
    elif args.cmd == "emt":
        import tempfile

        chosen = {k: VARIANTS[k] for k in (args.variants or VARIANTS)}
        emt_benchmark(args.scale, args.seed, args.pod, chosen, Path(args.out or tempfile.mkdtemp(prefix="etn-emt-")))


if __name__ == "__main__":
    main()
