"""``etn fit CONFIG.toml``: read data, fit, report, plot, save. Also ``etn eval``.

A fit configuration (paths are relative to the file)::

    [model]
    spec = "binary"                 # catalogue name or spec TOML file; or a [model.spec] table
    init = "old/model.etn"          # optional: start from this model (same spec) instead of random

    [data]
    train = ["train/*.xyz"]         # extxyz (anything ASE reads) or MLIP .cfg; glob patterns allowed
    valid = ["valid.xyz"]           # optional; else valid_fraction of train is held out
    valid_fraction = 0.1
    test = ["test/*.xyz"]           # optional: reported after the fit
    missing = "error"               # or "skip": configurations without energy or forces
    energy_key = "energy"           # where the labels are: extxyz info/array names (e.g. "REF_energy")
    forces_key = "forces"
    stress_key = "stress"           # eV/Å³, ASE sign
    virial_key = "virial"           # eV (= -stress × volume); used when there is no stress
    group_key = "config_type"       # info key naming a configuration's group (else the file's stem)
    weights = {}                    # loss weight per group, e.g. { surface = 2.0, isolated = 0.1 }
    stratify = false                # validation split per group
    train_only = []                 # groups never put into validation (single atoms never are)

    [fit]                           # every key of FitSettings; defaults shown
    energy_weight = 1.0             # per atom (eV/atom)
    force_weight = 0.01             # on Σ|ΔF|² / N per configuration (forces per atom, as MLIP)
    stress_weight = 0.001           # virial per atom (eV/atom)
    regularization = 1e-5           # ridge λ: λ · mean(diag XᵀX) · |θ|² on every parameter but e0
    ridge = "uniform"               # or "scaled": λ times the largest eigenvalue of the column-scaled system
    reference_energies = "fit"      # e0: "fit", "unary" (each element's lowest E/atom alone), "isolated", or a table
    sweeps = 8                      # at most; stops earlier when validation stops improving
    patience = 2                    # sweeps without relative improvement > tolerance
    tolerance = 1e-3
    polish = 0                      # Levenberg–Marquardt steps on all parameters after the sweeps
    rank_tol = 0.0                  # DMRG-style truncation: drop singular values < rank_tol * largest
    max_rank = 0                    # 0: no cap
    seed = 0
    init_scale = 1.0
    threads = 0                     # 0: all cores (OpenMP and BLAS)
    backend = "c"                   # design rows and evaluation: "c", "cuda" (GPU), "auto", "numpy" (no compiler)

    [output]
    dir = "fit"                     # model.etn, model.aset (active set for grades), report.txt, report.json,
                                    # parity_*.png, learning_curve.png
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import fields
from pathlib import Path

from ..io import dataset, metrics
from ..backends.resolver import set_threads
from ..fitting.fit import FitError, FitSettings, Fitter

_KEYS = {"model": {"spec", "init"},
         "data": {"train", "valid", "valid_fraction", "test", "missing", "cfg_species", "energy_key", "forces_key",
                  "stress_key", "virial_key", "group_key", "weights", "stratify", "train_only"},
         "fit": {f.name for f in fields(FitSettings)}, "output": {"dir"}}


def _resolve(base: Path, items):
    if items is None:
        return []
    items = [items] if isinstance(items, str) else list(items)
    return [str(p if Path(p).is_absolute() else base / p) for p in items]


def load_config(path) -> dict:
    """The configuration as a dict with paths made absolute; unknown keys are errors."""
    from ..catalogue import resolve as _spec
    from ..generator import Spec

    path = Path(path)
    if not path.is_file():
        raise FitError(f"fit configuration {path} does not exist")
    try:
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise FitError(f"{path}: not valid TOML ({e})") from None
    except UnicodeDecodeError:
        raise FitError(f"{path} is not a text (TOML) file") from None
    for section, body in cfg.items():
        if section not in _KEYS or not isinstance(body, dict):
            raise FitError(f"{path}: unknown section [{section}] (known: {', '.join('[' + k + ']' for k in _KEYS)})")
        bad = set(body) - _KEYS[section]
        if bad:
            raise FitError(f"{path}: unknown key(s) {', '.join(sorted(bad))} in [{section}] "
                           f"(known: {', '.join(sorted(_KEYS[section]))})")
    base = path.parent
    model = cfg.get("model", {})
    if "spec" not in model:
        raise FitError(f"{path}: [model] needs spec = a catalogue name, a spec file, or a [model.spec] table")
    spec = model["spec"]
    if isinstance(spec, dict):
        spec = Spec.from_dict(spec, f"{path}: [model.spec]")
    else:
        cand = base / spec
        spec = _spec(str(cand) if cand.exists() else spec)
    data = cfg.get("data", {})
    if not data.get("train"):
        raise FitError(f"{path}: [data] needs train = [files]")
    fit = dict(cfg.get("fit", {}))
    if fit.get("max_rank") == 0:
        fit["max_rank"] = None
    if fit.get("threads") == 0:
        fit["threads"] = None
    try:
        settings = FitSettings(**fit)
    except TypeError as e:
        raise FitError(f"{path}: [fit] {e}") from None
    out = Path(cfg.get("output", {}).get("dir", "fit"))
    valid_fraction = data.get("valid_fraction", 0.1)
    if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, (int, float)) or not 0 <= valid_fraction < 1:
        raise FitError(f"{path}: [data] valid_fraction must be a number in [0, 1), not {valid_fraction!r}")
    if data.get("missing", "error") not in ("error", "skip"):
        raise FitError(f"{path}: [data] missing must be \"error\" or \"skip\", not {data['missing']!r}")
    keys = {}
    for name in ("energy", "forces", "stress", "virial", "group"):
        v = data.get(f"{name}_key", dataset.KEYS[name])
        if not isinstance(v, str) or not v:
            raise FitError(f"{path}: [data] {name}_key must be the name of an extxyz key, not {v!r}")
        keys[name] = v
    weights = data.get("weights", {})
    if not isinstance(weights, dict) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 and w < float("inf") for w in weights.values()):
        raise FitError(f"{path}: [data] weights must be a table of group = weight >= 0, e.g. {{ surface = 2.0 }}")
    train_only = data.get("train_only", [])
    if not isinstance(train_only, list) or not all(isinstance(g, str) for g in train_only):
        raise FitError(f"{path}: [data] train_only must be a list of group names")
    if not isinstance(data.get("stratify", False), bool):
        raise FitError(f"{path}: [data] stratify must be true or false")
    init = model.get("init")
    if init is not None:
        from ..potential import Potential

        cand = Path(init) if Path(init).is_absolute() else base / init
        init = Potential.load(cand)
        if init.spec != spec:
            raise FitError(f"{path}: [model] init = {str(cand)!r} has spec {init.spec.hash[:12]}, not the spec being "
                           f"fitted ({spec.hash[:12]}); use its spec (spec = the same file or table) or drop init")
    return {"spec": spec, "init": init, "keys": keys, "weights": dict(weights), "train_only": train_only,
            "stratify": bool(data.get("stratify", False)), "train": _resolve(base, data["train"]), "valid": _resolve(base, data.get("valid")),
            "valid_fraction": float(data.get("valid_fraction", 0.1)), "test": _resolve(base, data.get("test")),
            "missing": data.get("missing", "error"), "settings": settings,
            "output": out if out.is_absolute() else base / out}


def _quiet(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def _check_writable(out: Path) -> None:
    """Fail before the fit, not after it, when the output folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".etn-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise FitError(f"cannot write to the output folder {out} ({e.strerror or e}); set [output] dir to a "
                       f"writable folder") from None


def fit_config(path, progress: bool = True, log=print):
    """Run the fit that ``path`` describes; returns (potential, report dict). Under ``mpiexec -n N`` the
    ranks share the work (etn.fitting.parallel) and rank 0 alone writes and reports; the others return (pot, None)."""
    from dataclasses import replace

    from ..fitting.parallel import world

    comm = world()
    if comm.rank > 0:
        log = _quiet  # noqa: F811
        progress = False
    cfg = load_config(path)
    spec, s = cfg["spec"], cfg["settings"]
    if comm.size > 1 and not s.threads:  # share the node's cores between its ranks
        s = replace(s, threads=max(1, (os.cpu_count() or 1) // comm.local_size))
    if s.threads:
        set_threads(s.threads)
    need = ("energy", "forces") if s.force_weight > 0 else ("energy",)
    keys = cfg["keys"]
    train = dataset.read(cfg["train"], spec.species, need=need, missing=cfg["missing"], keys=keys)
    groups = sorted({f.config_type for f in train})
    unknown = sorted((set(cfg["weights"]) | set(cfg["train_only"])) - set(groups))
    if unknown:
        raise FitError(f"[data] weights/train_only name group(s) {', '.join(unknown)} that no training configuration "
                       f"has; the groups ({keys['group']}) are: {', '.join(groups)}")
    if cfg["valid"]:
        valid = dataset.read(cfg["valid"], spec.species, need=need, missing=cfg["missing"], keys=keys)
    else:
        train, valid = dataset.split(train, cfg["valid_fraction"], s.seed, stratify=cfg["stratify"],
                                     train_only=cfg["train_only"])
    if not train:
        raise FitError("no training configurations left after the validation split")
    for f in train + valid:
        f.weight = float(cfg["weights"].get(f.config_type, 1.0))
    test = dataset.read(cfg["test"], spec.species, need=("energy",), missing="skip", keys=keys) if cfg["test"] else []
    out = cfg["output"]
    err = None
    if comm.rank == 0:
        try:
            _check_writable(out)
        except FitError as e:
            err = str(e)
    err = comm.bcast(err)
    if err:
        raise FitError(err)
    from ..cost import summary
    from ..generator import cached_schedule

    log(f"fitting spec {spec.hash[:12]} ({len(spec.species)} species, {spec.cores} cores) on "
        + (f"{comm.size} MPI ranks ({s.threads} threads each), " if comm.size > 1 else "") +
        f"{len(train)} training / {len(valid)} validation configurations "
        f"({sum(f.n_atoms for f in train)} / {sum(f.n_atoms for f in valid)} atoms)\nmodel: {summary(cached_schedule(spec))}")

    def warn(msg):
        if progress:  # above the progress bar, not through it
            from tqdm.auto import tqdm

            tqdm.write(f"warning: {msg}")
        else:
            log(f"warning: {msg}")

    fitter = Fitter(spec, train, valid, s, progress=progress, init=cfg["init"], on_warning=warn, comm=comm)
    t0 = time.perf_counter()
    pot = fitter.run(on_polish=lambda i, l: log(f"polish step {i}: training loss {l:.4g}"))
    seconds = time.perf_counter() - t0
    if comm.rank > 0:
        return pot, None
    pot.metadata.update({"train_files": cfg["train"], "fit_seconds": round(seconds, 2)})
    for name in ("model.etn", "model.aset"):  # an earlier fit in the same folder is kept, not replaced
        if (out / name).exists():
            os.replace(out / name, out / (name + ".1"))
            log(f"kept the previous {out / name} as {name}.1")
    pot.save(out / "model.etn")
    from ..fitting import grade

    aset = grade.build(pot, [f.atoms for f in train], backend="numpy" if s.backend == "numpy" else "c",
                       progress=progress)
    aset.save(out / "model.aset")
    if fitter.interrupted:
        log(f"interrupted: saved the best model so far to {out / 'model.etn'}")
    report = {"spec_hash": spec.hash, "n_params": pot.schedule.n_params, "bonds": [str(b) for b in pot.spec.inner_bonds],
              "fit_seconds": seconds, "sweeps": fitter.history, "interrupted": fitter.interrupted,
              "stop_reason": fitter.stop_reason, "best_sweep": fitter.best_sweep,
              "warnings": fitter.warnings}
    text = [f"fitted in {seconds:.1f} s, {len(fitter.history)} sweeps, {pot.schedule.n_params} parameters; stopped: "
            f"{fitter.stop_reason}; the model is that of "
            + (f"sweep {fitter.best_sweep}" if fitter.best_sweep else "the polish") + " (the lowest validation loss)"]
    text += [f"warning: {msg}" for msg in fitter.warnings]
    for name, frames in (("train", train), ("valid", valid), ("test", test)):
        if not frames:
            continue
        rows = metrics.predict(pot, frames, backend=s.backend)
        rep = metrics.errors(pot, frames, rows=rows)
        report[name] = rep
        text.append(metrics.table(rep, f"{name}:", key=keys["group"]))
        metrics.parity_plot(rows, out / f"parity_{name}.png", f"{name} ({len(frames)} configurations)")
    metrics.learning_curve(fitter.history, out / "learning_curve.png", fitter.best_sweep)
    (out / "report.txt").write_text("\n\n".join(text) + "\n")
    metrics.write_json(report, out / "report.json")
    log("\n\n".join(text))
    log(f"wrote {out / 'model.etn'}, model.aset, report.txt, report.json, parity_*.png, learning_curve.png in {out}")
    return pot, report


def evaluate_files(model, files, backend: str = "c", json_path=None, plot=None, predictions=None, log=print) -> dict:
    """``etn eval``: errors of a saved model on labelled files; ``predictions``: also write every
    configuration with the model's energy (``etn_energy``, eV), per-atom energies (``etn_energies``),
    forces (``etn_forces``, eV/Å) and stress (``etn_stress``, eV/Å³, Voigt) beside its labels (extxyz)."""
    from ..potential import Potential

    pot = Potential.load(model, backend=backend)
    frames = dataset.read(files, pot.spec.species, need=("energy",), missing="skip")
    rows = metrics.predict(pot, frames)
    rep = metrics.errors(pot, frames, rows=rows)
    log(metrics.table(rep, f"{model} on {len(frames)} configurations:"))
    close = dataset.below(frames, pot.spec.r_min)
    if close:
        source, d = min(close, key=lambda c: c[1])
        log(f"warning: {len(close)} of {len(frames)} configurations have atoms closer than the model's r_min "
            f"({pot.spec.r_min:g} Å; shortest {d:.3f} Å, in {source}): its predictions there are extrapolated")
    rep["below_r_min"] = [{"source": s, "shortest": d} for s, d in close]
    if json_path:
        metrics.write_json(rep, json_path)
    if predictions:
        write_predictions(pot, frames, predictions)
        log(f"wrote the predictions for {len(frames)} configurations to {predictions}")
    if plot:
        metrics.parity_plot(rows, plot, f"{Path(model).name}")
    return rep


def write_predictions(pot, frames, path) -> None:
    """extxyz of ``frames`` with the model's predictions under ``etn_*`` keys and the labels kept."""
    from ase.io import write

    out = []
    for f in frames:
        a = f.atoms.copy()
        a.calc = f.atoms.calc  # the labels, as read
        periodic = a.cell.rank == 3
        r = pot.evaluate(f.atoms, forces=True, stress=periodic)
        a.info["etn_energy"] = r["energy"]
        a.arrays["etn_energies"] = r["energies"]
        a.arrays["etn_forces"] = r["forces"]
        if periodic:
            a.info["etn_stress"] = r["stress"]
        out.append(a)
    write(path, out, format="extxyz")
