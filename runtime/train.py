"""``etn fit CONFIG.toml``: read data, fit, report, plot, save. Also ``etn eval``.

A fit configuration (paths are relative to the file)::

    [model]
    spec = "binary"                 # catalogue name or spec TOML file; or a [model.spec] table

    [data]
    train = ["train/*.xyz"]         # extxyz (anything ASE reads) or MLIP .cfg; glob patterns allowed
    valid = ["valid.xyz"]           # optional; else valid_fraction of train is held out
    valid_fraction = 0.1
    test = ["test/*.xyz"]           # optional: reported after the fit
    missing = "error"               # or "skip": configurations without energy or forces

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

from . import dataset, metrics
from .fit import FitError, FitSettings, Fitter

_KEYS = {"model": {"spec"}, "data": {"train", "valid", "valid_fraction", "test", "missing", "cfg_species"},
         "fit": {f.name for f in fields(FitSettings)}, "output": {"dir"}}


def _resolve(base: Path, items):
    if items is None:
        return []
    items = [items] if isinstance(items, str) else list(items)
    return [str(p if Path(p).is_absolute() else base / p) for p in items]


def load_config(path) -> dict:
    """The configuration as a dict with paths made absolute; unknown keys are errors."""
    from .cli import _spec
    from .generator import Spec

    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise FitError(f"{path}: not valid TOML ({e})") from None
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
    return {"spec": spec, "train": _resolve(base, data["train"]), "valid": _resolve(base, data.get("valid")),
            "valid_fraction": float(data.get("valid_fraction", 0.1)), "test": _resolve(base, data.get("test")),
            "missing": data.get("missing", "error"), "settings": settings,
            "output": out if out.is_absolute() else base / out}


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


def set_threads(n: int | None) -> None:
    """Cap BLAS threads at ``n`` when threadpoolctl is installed (the fitter sets the kernels' OpenMP threads)."""
    if not n:
        return
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass


def fit_config(path, progress: bool = True, log=print):
    """Run the fit that ``path`` describes; returns (potential, report dict)."""
    cfg = load_config(path)
    spec, s = cfg["spec"], cfg["settings"]
    set_threads(s.threads)
    need = ("energy", "forces") if s.force_weight > 0 else ("energy",)
    train = dataset.read(cfg["train"], spec.species, need=need, missing=cfg["missing"])
    if cfg["valid"]:
        valid = dataset.read(cfg["valid"], spec.species, need=need, missing=cfg["missing"])
    else:
        train, valid = dataset.split(train, cfg["valid_fraction"], s.seed)
    if not train:
        raise FitError("no training configurations left after the validation split")
    test = dataset.read(cfg["test"], spec.species, need=("energy",), missing="skip") if cfg["test"] else []
    out = cfg["output"]
    _check_writable(out)
    log(f"fitting spec {spec.hash[:12]} ({len(spec.species)} species, {spec.cores} cores) on "
        f"{len(train)} training / {len(valid)} validation configurations "
        f"({sum(f.n_atoms for f in train)} / {sum(f.n_atoms for f in valid)} atoms)")

    def warn(msg):
        if progress:  # above the progress bar, not through it
            from tqdm.auto import tqdm

            tqdm.write(f"warning: {msg}")
        else:
            log(f"warning: {msg}")

    fitter = Fitter(spec, train, valid, s, progress=progress, on_warning=warn)
    t0 = time.perf_counter()
    pot = fitter.run(on_polish=lambda i, l: log(f"polish step {i}: training loss {l:.4g}"))
    seconds = time.perf_counter() - t0
    pot.metadata.update({"train_files": cfg["train"], "fit_seconds": round(seconds, 2)})
    for name in ("model.etn", "model.aset"):  # an earlier fit in the same folder is kept, not replaced
        if (out / name).exists():
            os.replace(out / name, out / (name + ".1"))
            log(f"kept the previous {out / name} as {name}.1")
    pot.save(out / "model.etn")
    from . import grade

    aset = grade.build(pot, [f.atoms for f in train], backend="numpy" if s.backend == "numpy" else "c",
                       progress=progress)
    aset.save(out / "model.aset")
    if fitter.interrupted:
        log(f"interrupted: saved the best model so far to {out / 'model.etn'}")
    report = {"spec_hash": spec.hash, "n_params": pot.schedule.n_params, "bonds": [str(b) for b in pot.spec.bonds],
              "fit_seconds": seconds, "sweeps": fitter.history, "interrupted": fitter.interrupted,
              "warnings": fitter.warnings}
    text = [f"fitted in {seconds:.1f} s, {len(fitter.history)} sweeps, {pot.schedule.n_params} parameters"]
    text += [f"warning: {msg}" for msg in fitter.warnings]
    for name, frames in (("train", train), ("valid", valid), ("test", test)):
        if not frames:
            continue
        rows = metrics.predict(pot, frames, backend=s.backend)
        rep = metrics.errors(pot, frames, rows=rows)
        report[name] = rep
        text.append(metrics.table(rep, f"{name}:"))
        metrics.parity_plot(rows, out / f"parity_{name}.png", f"{name} ({len(frames)} configurations)")
    metrics.learning_curve(fitter.history, out / "learning_curve.png")
    (out / "report.txt").write_text("\n\n".join(text) + "\n")
    metrics.write_json(report, out / "report.json")
    log("\n\n".join(text))
    log(f"wrote {out / 'model.etn'}, model.aset, report.txt, report.json, parity_*.png, learning_curve.png in {out}")
    return pot, report


def evaluate_files(model, files, backend: str = "c", json_path=None, plot=None, log=print) -> dict:
    """``etn eval``: errors of a saved model on labelled files."""
    from .potential import Potential

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
    if plot:
        metrics.parity_plot(rows, plot, f"{Path(model).name}")
    return rep

