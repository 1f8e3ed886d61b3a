"""Errors of a model on labelled data: tables, JSON and parity plots.

Energies in meV/atom, force components in eV/Å, stress components in GPa; overall and per
``config_type``. RMSE and MAE are over configurations (energy), force components and stress
components (only configurations that carry the label count).
"""

from __future__ import annotations

import json

import numpy as np

EV_PER_A3_IN_GPA = 160.21766208


def predict(pot, frames, backend: str | None = None) -> list[dict]:
    """Per frame: reference and predicted energy per atom, forces and stress (GPa)."""
    out = []
    for f in frames:
        want_s = f.stress is not None and f.atoms.cell.rank == 3
        r = pot.evaluate(f.atoms, forces=f.forces is not None, stress=want_s, backend=backend)
        N = f.n_atoms
        out.append({
            "config_type": f.config_type, "n_atoms": N, "symbols": f.atoms.get_chemical_symbols(),
            "energy": None if f.energy is None else (f.energy / N, r["energy"] / N),
            "forces": None if f.forces is None else (f.forces.ravel(), r["forces"].ravel()),
            "stress": None if not want_s else (EV_PER_A3_IN_GPA * f.stress, EV_PER_A3_IN_GPA * r["stress"]),
        })
    return out


def _stats(rows) -> dict:
    def pair(key):
        ref = [r[key][0] for r in rows if r[key] is not None]
        if not ref:
            return None, None
        pred = [r[key][1] for r in rows if r[key] is not None]
        return np.atleast_1d(np.concatenate([np.atleast_1d(x) for x in ref])), \
            np.atleast_1d(np.concatenate([np.atleast_1d(x) for x in pred]))

    out = {"configs": len(rows), "atoms": int(sum(r["n_atoms"] for r in rows))}
    for key, scale, unit in (("energy", 1e3, "meV/atom"), ("forces", 1.0, "eV/Å"), ("stress", 1.0, "GPa")):
        ref, pred = pair(key)
        if ref is None:
            out[f"{key}_rmse"] = out[f"{key}_mae"] = None
            continue
        d = pred - ref
        out[f"{key}_rmse"] = float(scale * np.sqrt(np.mean(d ** 2)))
        out[f"{key}_mae"] = float(scale * np.mean(np.abs(d)))
    return out


def errors(pot, frames, backend: str | None = None, rows: list | None = None) -> dict:
    """``{"overall": stats, "by_config_type": {type: stats}, "n_params": n}``."""
    rows = rows if rows is not None else predict(pot, frames, backend)
    types = sorted({r["config_type"] for r in rows})
    return {"n_params": pot.schedule.n_params, "overall": _stats(rows),
            "by_config_type": {t: _stats([r for r in rows if r["config_type"] == t]) for t in types}}


def table(report: dict, title: str = "", key: str = "config_type") -> str:
    """A plain-text table of :func:`errors` (one line per group, named by ``key``, then the total)."""
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    head = (f"{key[:22]:<22} {'configs':>7} {'atoms':>7}  {'E RMSE':>8} {'E MAE':>8}  {'F RMSE':>7} "
            f"{'F MAE':>7}  {'S RMSE':>7}")
    unit = f"{'':<22} {'':>7} {'':>7}  {'meV/atom':>17}  {'eV/Å':>15}  {'GPa':>7}"
    lines = ([title] if title else []) + [head, unit]

    def line(name, s):
        return (f"{name:<22} {s['configs']:>7d} {s['atoms']:>7d}  {fmt(s['energy_rmse'], '8.2f')} "
                f"{fmt(s['energy_mae'], '8.2f')}  {fmt(s['forces_rmse'], '7.3f')} {fmt(s['forces_mae'], '7.3f')}  "
                f"{fmt(s['stress_rmse'], '7.2f')}")

    for t, s in report["by_config_type"].items():
        lines.append(line(t[:22], s))
    lines.append(line("all", report["overall"]))
    return "\n".join(lines)


def write_json(report: dict, path) -> None:
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)


def _label(text: str) -> str:
    """A legend label matplotlib shows as written (a '$' would start mathtext)."""
    return str(text).replace("$", r"\$")


def parity_plot(rows: list, path, title: str = "") -> None:
    """Energy, force and stress parity plots (reference vs model) in one PNG: energies and stresses
    coloured by group (config_type), force components by the species of their atom; RMSE and MAE in
    each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [("energy", "energy (eV/atom)", "meV/atom", 1e3), ("forces", "force component (eV/Å)", "eV/Å", 1.0),
              ("stress", "stress component (GPa)", "GPa", 1.0)]
    panels = [p for p in panels if any(r[p[0]] is not None for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.4), squeeze=False)
    types = sorted({r["config_type"] for r in rows})
    species = sorted({s for r in rows for s in r.get("symbols", [])})
    for ax, (key, label, unit, scale) in zip(axes[0], panels):
        lo, hi, allref, allpred = np.inf, -np.inf, [], []
        if key == "forces" and species:  # by the species of the atom the component acts on
            groups = [(sp, [(np.atleast_1d(r[key][0]).reshape(-1, 3)[np.array(r["symbols"]) == sp].ravel(),
                             np.atleast_1d(r[key][1]).reshape(-1, 3)[np.array(r["symbols"]) == sp].ravel())
                            for r in rows if r[key] is not None]) for sp in species]
        else:
            groups = [(t, [r[key] for r in rows if r["config_type"] == t and r[key] is not None]) for t in types]
        for name, sel in groups:
            if not sel:
                continue
            ref = np.concatenate([np.atleast_1d(x[0]) for x in sel])
            pred = np.concatenate([np.atleast_1d(x[1]) for x in sel])
            if not ref.size:
                continue
            ax.scatter(ref, pred, s=4, alpha=0.6, label=_label(name))
            allref.append(ref)
            allpred.append(pred)
            lo, hi = min(lo, ref.min(), pred.min()), max(hi, ref.max(), pred.max())
        if allref:
            d = np.concatenate(allpred) - np.concatenate(allref)
            ax.text(0.04, 0.96, f"RMSE {scale * np.sqrt(np.mean(d ** 2)):.3g} {unit}\nMAE {scale * np.mean(np.abs(d)):.3g} {unit}",
                    transform=ax.transAxes, va="top", fontsize=8)
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set_xlabel(f"DFT {label}")
        ax.set_ylabel(f"ETN {label}")
        ax.set_aspect("equal", adjustable="datalim")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        if len(groups) <= 12:
            ax.legend(fontsize=7, markerscale=2, loc="lower right")
    if title:
        fig.suptitle(_label(title))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learning_curve(history: list, path, best_sweep: int | None = None) -> None:
    """Training and validation loss per sweep (log scale, whole sweeps), the returned sweep marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = [h["sweep"] for h in history]
    ax.semilogy(x, [h["train_loss"] for h in history], "o-", label="training")
    ax.semilogy(x, [h["valid_loss"] for h in history], "s-", label="validation")
    if best_sweep is not None:
        ax.axvline(best_sweep, color="0.5", ls="--", lw=0.8, label=f"model returned (sweep {best_sweep})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("sweep")
    ax.set_ylabel("loss per configuration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
