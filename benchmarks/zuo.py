"""Zuo-v1 accuracy benchmark (DESIGN.md, section 4): per element, train on training, test on test.

Data: ../shared/data/raw/ZuoEtAl2020_mlearn. Training sets come from `extxyz_with_stress/` where
present; Cu and Ni training sets exist only in the ACEData tarball (energies and forces, no stress),
which is read straight from the archive. Test sets: `extxyz_with_stress/<El>_test.xyz`.
10% of each training set (seeded) is held out for validation. Prints the test energy and force
MAE next to the published MTP errors, and per element the test errors per structure group of the
test file (AIMD-NVT, Elastic, Surface, Vacancy: the extxyz key ``group``).

    python3 benchmarks/zuo.py                 # all six elements
    python3 benchmarks/zuo.py Mo Si --sweeps 8
"""

from __future__ import annotations

import argparse
import math
import tarfile
import tempfile
import time
from pathlib import Path

import etn
from etn.io import dataset, metrics
from etn.fitting.fit import Fitter, FitSettings
from etn.generator import Spec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent / "shared" / "data" / "raw" / "ZuoEtAl2020_mlearn"
#: published MTP test errors (energy MAE meV/atom, force MAE eV/Å), Zuo et al. 2020
MTP = {"Ni": (0.48, 0.01), "Cu": (0.41, 0.01), "Li": (0.49, 0.01), "Mo": (2.83, 0.09), "Si": (2.21, 0.06),
       "Ge": (1.79, 0.05)}


def shortest_distance(frames) -> float:
    """The shortest interatomic distance (Å) in ``frames``, periodic images included."""
    from etn.io.neighbors import neighbor_list

    return min(float(neighbor_list("d", f.atoms, 3.0)[0].min(initial=3.0)) for f in frames)


def auto_r_min(frames) -> float:
    """MTP practice: the radial basis starts at the shortest distance of the training set; here 0.1 Å
    below it, rounded down to 0.1 Å, so that MD a little closer than any training pair stays inside."""
    return (math.floor(round(10 * shortest_distance(frames), 6)) - 1) / 10


def r_min_arg(text: str):
    """``--r-min``: a distance in Å, or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a distance in Å or 'auto', not {text!r}") from None


def element_spec(el: str, args, r_min: float) -> Spec:
    return Spec.from_dict({"species": [el], "r_min": r_min, "r_cut": args.r_cut, "n_radial": args.n_radial,
                           "l_max": args.l_max, "cores": args.cores, "bonds": [args.bond] * (args.cores - 1)})


def training_file(el: str, tmp: Path) -> Path:
    p = ROOT / "extxyz_with_stress" / f"{el}_training.xyz"
    if p.exists():
        return p
    with tarfile.open(ROOT / "ACEData_extxyz_no_stress" / "ZuoEtAl2020.tar.gz") as tar:
        for m in tar.getmembers():
            name = Path(m.name).name.lower()
            if m.isfile() and name.startswith(el.lower()) and "train" in name:
                out = tmp / f"{el}_training.xyz"
                out.write_bytes(tar.extractfile(m).read())
                return out
    raise SystemExit(f"no training data for {el}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("elements", nargs="*", default=list(MTP))
    ap.add_argument("--r-min", type=r_min_arg, default=1.5,
                    help="start of the radial basis (Å), or 'auto': 0.1 Å below the training set's shortest distance")
    ap.add_argument("--r-cut", type=float, default=5.0)
    ap.add_argument("--n-radial", type=int, default=6)
    ap.add_argument("--l-max", type=int, default=3)
    ap.add_argument("--cores", type=int, default=3)
    ap.add_argument("--bond", default="4x0 + 3x1 + 3x2 + 2x3")
    ap.add_argument("--sweeps", type=int, default=6)
    ap.add_argument("--polish", type=int, default=0)
    ap.add_argument("--energy-weight", type=float, default=FitSettings.energy_weight,
                    help="weight of the per-atom energy term")
    ap.add_argument("--force-weight", type=float, default=FitSettings.force_weight,
                    help="weight of the per-atom force term (default: MTP practice, energy weight 1)")
    ap.add_argument("--threads", type=int, default=None, help="threads of the fit (default: all cores)")
    ap.add_argument("--regularization", type=float, default=FitSettings.regularization,
                    help=f"ridge λ (default {FitSettings.regularization:g})")
    ap.add_argument("--ridge", choices=("uniform", "scaled"), default=FitSettings.ridge,
                    help="ridge form (default uniform; the records before 2026-11-30 used scaled with λ = 1e-10)")
    args = ap.parse_args(argv)
    print(f"Zuo-v1, etn {etn.__version__}: spec per element r_min {args.r_min}, r_cut {args.r_cut} Å, "
          f"n_radial {args.n_radial}, l_max {args.l_max}, {args.cores} cores, bonds {args.bond}, energy weight {args.energy_weight}, "
          f"force weight {args.force_weight}")
    lines = [f"{'element':<8} {'r_min':>5} {'params':>6} {'train':>5} {'min':>5}  {'E MAE':>6} {'MTP':>5}  "
             f"{'F MAE':>6} {'MTP':>5}  {'E RMSE':>6} {'F RMSE':>6}  {'val E':>6} {'val F':>7}"]
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for el in args.elements:
            frames = dataset.read(training_file(el, Path(tmp)), [el])
            train, valid = dataset.split(frames, 0.1, 0)
            r_min = auto_r_min(train) if args.r_min == "auto" else args.r_min
            spec = element_spec(el, args, r_min)
            test = dataset.read(ROOT / "extxyz_with_stress" / f"{el}_test.xyz", spec.species)
            for f in test:  # every test frame has config_type <El>_test; report per structure group
                f.config_type = str(f.atoms.info.get("group", f.config_type))
            t0 = time.perf_counter()
            pot = Fitter(spec, train, valid, FitSettings(sweeps=args.sweeps, polish=args.polish,
                                                              energy_weight=args.energy_weight,
                                                              force_weight=args.force_weight,
                                                              threads=args.threads,
                                                              regularization=args.regularization,
                                                              ridge=args.ridge),
                         progress=False).run()
            minutes = (time.perf_counter() - t0) / 60
            report = metrics.errors(pot, test)
            rep = report["overall"]
            val = metrics.errors(pot, valid)["overall"]
            e, f = MTP[el]
            lines.append(f"{el:<8} {r_min:>5.1f} {pot.schedule.n_params:>6} {len(train):>5} {minutes:>5.1f}  "
                         f"{rep['energy_mae']:>6.2f} {e:>5.2f}  {rep['forces_mae']:>6.3f} {f:>5.2f}  {rep['energy_rmse']:>6.2f} "
                         f"{rep['forces_rmse']:>6.3f}  {val['energy_mae']:>6.2f} {val['forces_mae']:>7.4f}")
            print(lines[-1], flush=True)
            tables.append(metrics.table(report, f"{el} test set by structure group"))
    print("\n" + "\n".join(lines))
    print("units: energy meV/atom, forces eV/Å; MTP = published test MAE (Zuo et al. 2020); min = fit wall time; "
          "val = MAE on the held-out 10% of the training set (for choosing settings)")
    print("\n" + "\n\n".join(tables))


if __name__ == "__main__":
    main()
