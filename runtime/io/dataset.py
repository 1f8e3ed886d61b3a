"""Training data: labelled configurations from extxyz (via ASE) or MLIP ``.cfg`` files.

A :class:`Frame` holds one configuration with its DFT labels in ASE conventions: energy (eV),
forces (eV/Å) and stress (eV/Å³, Voigt xx yy zz yz xz xy, positive = tensile), each ``None`` when
absent, plus its ``config_type`` (from the extxyz info, else the file's stem) and source.
"""

from __future__ import annotations

import glob
import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..generator.errors import EtnError


class DataError(EtnError, ValueError):
    """Training or test data that cannot be used; the message names the file and configuration."""


@dataclass
class Frame:
    atoms: object
    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None
    config_type: str
    source: str
    pairs: object = field(default=None, repr=False)
    weight: float = 1.0  # multiplies the frame's terms of the loss

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)


def expand(patterns) -> list[str]:
    """File names from names or glob patterns (sorted per pattern); a clear error for no match."""
    if isinstance(patterns, (str, Path)):
        patterns = [patterns]
    out = []
    for p in patterns:
        hits = sorted(glob.glob(str(p))) if any(ch in str(p) for ch in "*?[") else [str(p)]
        if not hits or not all(Path(h).is_file() for h in hits):
            raise DataError(f"{p}: no such data file")
        out += hits
    return out


def _voigt(s) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.shape == (3, 3):
        return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    return s.reshape(6)


#: Where labels are read from by default (override per key with ``keys=``, [data] *_key in fit.toml).
KEYS = {"energy": "energy", "forces": "forces", "stress": "stress", "virial": "virial", "group": "config_type"}


def _from_atoms(atoms, source: str, index: int, keys: dict | None = None) -> Frame:
    """A frame from an ASE ``Atoms``: labels from its calculator's results (what ASE's extxyz reader
    makes of ``energy``, ``forces``, ``stress``) or from ``info``/``arrays`` under the names in ``keys``;
    a virial (eV, ``-stress × volume``) becomes a stress when there is no stress."""
    k = dict(KEYS, **(keys or {}))
    calc = atoms.calc
    res = getattr(calc, "results", {}) if calc is not None else {}
    info = atoms.info
    energy = res.get("energy") if k["energy"] == "energy" else None
    energy = info.get(k["energy"]) if energy is None else energy
    forces = res.get("forces") if k["forces"] == "forces" else None
    if forces is None:
        forces = atoms.arrays.get(k["forces"], atoms.arrays.get("force") if k["forces"] == "forces" else None)
    stress = res.get("stress") if k["stress"] == "stress" else None
    stress = info.get(k["stress"]) if stress is None else stress
    where = f"{source}[{index}]"
    if stress is None and info.get(k["virial"]) is not None:
        if atoms.cell.rank < 3:
            raise DataError(f"{where}: has a virial but no cell volume to turn it into a stress")
        stress = -_voigt(info[k["virial"]]) / atoms.get_volume()
    if k["group"] == "config_type":
        group = str(info.get("config_type", Path(source).stem))
    elif k["group"] in info:
        group = str(info[k["group"]])
    else:
        raise DataError(f"{where}: has no info key {k['group']!r} to group by (group_key); its keys: "
                        f"{', '.join(sorted(info)) or 'none'}")
    try:
        return Frame(atoms, None if energy is None else float(energy),
                     None if forces is None else np.asarray(forces, dtype=np.float64).reshape(len(atoms), 3),
                     None if stress is None else _voigt(stress), group, where)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: a label has the wrong form ({e})") from None


def read_cfg(path, species) -> list:
    """MLIP ``.cfg`` (the format of MTP): type k is ``species[k]``; ``PlusStress`` (eV) becomes
    stress = -PlusStress / volume (motep and MLIP use the same rule)."""
    from ase import Atoms

    frames = []
    lines = Path(path).read_text().splitlines()
    it = iter(enumerate(lines, 1))
    cur = None
    for ln, line in it:
        tok = line.split()
        if not tok:
            continue
        key = tok[0]
        try:
            if key == "BEGIN_CFG":
                if cur is not None:
                    raise DataError(f"{path}:{ln}: BEGIN_CFG before the END_CFG of the configuration before it")
                cur = {"cell": None, "energy": None, "stress": None, "features": {}, "start": ln}
            elif key == "Size":
                cur["n"] = int(next(it)[1])
            elif key == "Supercell":
                cur["cell"] = np.array([[float(x) for x in next(it)[1].split()] for _ in range(3)])
            elif key == "AtomData:":
                cols = tok[1:]
                data = np.array([[float(x) for x in next(it)[1].split()] for _ in range(cur["n"])]).reshape(cur["n"], -1)
                if data.shape[1] != len(cols):
                    raise DataError(f"{path}:{ln}: atom lines have {data.shape[1]} numbers for {len(cols)} AtomData columns")
                cur["atoms"] = dict(zip(cols, data.T))
                nxt = lines[ln - 1 + cur["n"] + 1].split() if ln + cur["n"] < len(lines) else []
                if nxt and nxt[0].lstrip("+-").replace(".", "", 1).isdigit():
                    raise DataError(f"{path}:{ln + cur['n'] + 1}: more atom lines than Size = {cur['n']} says")
            elif key == "Energy":
                cur["energy"] = float(next(it)[1])
            elif key == "PlusStress:":
                vals = dict(zip(tok[1:], (float(x) for x in next(it)[1].split())))
                cur["stress"] = np.array([vals[k] for k in ("xx", "yy", "zz", "yz", "xz", "xy")])
            elif key == "Feature" and len(tok) >= 3:
                cur["features"][tok[1]] = " ".join(tok[2:])
            elif cur is None:
                raise DataError(f"{path}:{ln}: '{line.strip()}' outside a BEGIN_CFG ... END_CFG block")
            elif key not in ("END_CFG", "EnergyWeight", "ForceWeight", "StressWeight", "MinDist") and \
                    not key.startswith("#"):
                raise DataError(f"{path}:{ln}: unknown MLIP .cfg line '{line.strip()}' (a misspelt key? "
                                f"known: Size, Supercell, AtomData:, Energy, PlusStress:, Feature, END_CFG)")
            elif key == "END_CFG":
                a = cur["atoms"]
                types = a["type"].astype(int)
                if types.min() < 0 or types.max() >= len(species):
                    raise DataError(f"{path}:{ln}: atom type {types.max()} has no element; the model's species "
                                    f"are {', '.join(species)} (type k is species[k])")
                pos = np.stack([a["cartes_x"], a["cartes_y"], a["cartes_z"]], axis=1)
                cell = cur["cell"]
                atoms = Atoms([species[t] for t in types], positions=pos, cell=cell if cell is not None else np.zeros((3, 3)),
                              pbc=cell is not None)
                forces = np.stack([a["fx"], a["fy"], a["fz"]], axis=1) if "fx" in a else None
                stress = None
                if cur["stress"] is not None and cell is not None:
                    stress = -cur["stress"] / atoms.get_volume()
                ctype = cur["features"].get("config_type", Path(path).stem)
                frames.append(Frame(atoms, cur["energy"], forces, stress, ctype, f"{path}[{len(frames)}]"))
                cur = None
        except (StopIteration, KeyError, ValueError, TypeError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{path}:{ln}: malformed MLIP .cfg near '{line.strip()}' ({type(e).__name__}: {e})") from None
    if cur is not None:
        raise DataError(f"{path}:{cur['start']}: the configuration starting here has no END_CFG (truncated file?)")
    return frames


def read(patterns, species, need=("energy", "forces"), missing: str = "error", keys: dict | None = None) -> list[Frame]:
    """Frames from extxyz/xyz (any format ASE reads) and ``.cfg`` files.

    ``need``: labels each frame must have; ``missing="skip"`` drops frames without them (with a
    warning), ``"error"`` stops with the frame's name. NaN in positions or labels is always an error.
    ``keys``: where the labels and the group are (see :data:`KEYS`), e.g. ``{"energy": "REF_energy"}``.
    Labels of implausible size (|E| above 1e4 eV/atom, forces above 1e3 eV/Å, stress above 10 eV/Å³)
    give a warning: units other than eV and Å are the usual cause.
    """
    from ase.io import read as ase_read

    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', not {missing!r}")
    frames = []
    for path in expand(patterns):
        if path.endswith(".cfg"):
            new = read_cfg(path, species)
        else:
            try:
                images = ase_read(path, ":")
            except Exception as e:  # ASE raises many types for malformed files
                raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
            new = [_from_atoms(a, path, k, keys) for k, a in enumerate(images)]
        frames += new
    out, skipped = [], []
    known = set(species)
    for f in frames:
        unknown = sorted(set(f.atoms.get_chemical_symbols()) - known)
        if unknown:
            raise DataError(f"{f.source}: contains {', '.join(unknown)}, which the model's species "
                            f"({', '.join(species)}) lack; add them to the spec or remove these configurations")
        for name, val in (("positions", f.atoms.positions), ("energy", f.energy), ("forces", f.forces),
                          ("stress", f.stress)):
            if val is not None and not np.all(np.isfinite(val)):
                raise DataError(f"{f.source}: {name} contain NaN or inf")
        lacking = [n for n in need if getattr(f, n) is None]
        if lacking:
            if missing == "error":
                raise DataError(f"{f.source}: has no {' or '.join(lacking)}; set missing = \"skip\" to leave such "
                                f"configurations out")
            skipped.append(f.source)
            continue
        out.append(f)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} configurations without {'/'.join(need)} (first: {skipped[0]})",
                      stacklevel=2)
    _check_magnitudes(out)
    return out


def _check_magnitudes(frames) -> None:
    """Warn once per label about values no eV/Å data has: the usual cause is another unit."""
    limits = (("energy", 1e4, "eV/atom", lambda f: abs(f.energy) / f.n_atoms),
              ("forces", 1e3, "eV/Å", lambda f: float(np.abs(f.forces).max(initial=0.0))),
              ("stress", 10.0, "eV/Å³", lambda f: float(np.abs(f.stress).max())))
    for name, limit, unit, size in limits:
        big = [(size(f), f.source) for f in frames if getattr(f, name) is not None and size(f) > limit]
        if big:
            v, where = max(big)
            warnings.warn(f"{len(big)} configurations have {name} above {limit:g} {unit} (largest {v:.3g}, in {where}): "
                          f"etn expects eV, Å and eV/Å³ (ASE units; stress positive = tensile); check the units",
                          stacklevel=3)


def below(frames, r_min: float) -> list[tuple[str, float]]:
    """(source, shortest distance in Å) of the frames with two atoms closer than ``r_min``, periodic
    images included: there a model's radial basis is extrapolated."""
    from .neighbors import neighbor_list

    out = []
    for f in frames:
        (d,) = neighbor_list("d", f.atoms, r_min)
        if len(d):
            out.append((f.source, float(d.min())))
    return out


def shortest(frames, r_cut: float) -> tuple[float, str]:
    """(the shortest interatomic distance in Å within ``r_cut``, periodic images included, and where);
    (inf, "") without pairs. MTP practice puts r_min at or just below it."""
    from .neighbors import neighbor_list

    best = (math.inf, "")
    for f in frames:
        if len(f.atoms) == 0:
            continue
        (d,) = neighbor_list("d", f.atoms, r_cut)
        if len(d) and d.min() < best[0]:
            best = (float(d.min()), f.source)
    return best


def identity(atoms) -> bytes:
    """Identity of a configuration up to rounding (1e-6 Å): numbers, positions, cell and pbc hashed; equal for
    duplicates (the fit's duplicate warning, etn select)."""
    h = hashlib.sha256(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(atoms.positions, dtype=np.float64), 6).tobytes())
    h.update(np.round(np.asarray(atoms.cell.array, dtype=np.float64), 6).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return h.digest()


def split(frames, fraction: float, seed: int, stratify: bool = False, train_only=()):
    """Seeded split into (train, validation) with about ``fraction`` of the frames in validation.

    Single-atom configurations and those whose group (``config_type``) is in ``train_only`` always stay
    in training. ``stratify``: take ``fraction`` of every group separately (rounded), so each group is
    represented in validation as in training.
    """
    rng = np.random.default_rng(seed)
    keep = set(train_only)
    eligible = [k for k, f in enumerate(frames) if f.n_atoms > 1 and f.config_type not in keep]
    val = []
    if stratify:
        for g in sorted({frames[k].config_type for k in eligible}):
            idx = [k for k in eligible if frames[k].config_type == g]
            n = int(round(fraction * len(idx)))
            val += [idx[j] for j in rng.permutation(len(idx))[:n]]
    else:
        allowed = set(eligible)
        n_val = int(round(fraction * len(eligible)))
        val = [k for k in rng.permutation(len(frames)).tolist() if k in allowed][:n_val]
    val = sorted(val)
    chosen = set(val)
    return [f for k, f in enumerate(frames) if k not in chosen], [frames[k] for k in val]
