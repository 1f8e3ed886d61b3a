"""Catalogue of model specs shared by tests, benchmarks and examples (``*.toml`` beside this file).

Add every spec that once broke something.
"""

from __future__ import annotations

from pathlib import Path

from ..generator import Spec

HERE = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def path(name: str) -> Path:
    p = HERE / f"{name}.toml"
    if not p.is_file():
        raise KeyError(f"no catalogue spec {name!r}; available: {', '.join(names())}")
    return p


def load(name: str) -> Spec:
    return Spec.load(path(name))


def resolve(arg: str) -> Spec:
    """A spec from a file path (``*.toml`` or an existing file) or a catalogue name."""
    p = Path(arg)
    if p.suffix == ".toml" or p.exists():
        return Spec.load(p)
    if arg in names():
        return load(arg)
    from ..generator import SpecError

    raise SpecError(f"{arg} is neither a spec file nor a catalogue spec ({', '.join(names())})")
