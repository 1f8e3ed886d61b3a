"""Model files (``*.etn``): a versioned, self-describing, line-based text format.

Loading never runs code from the file: it is parsed line by line, the spec and metadata with
``json.loads``, the parameters with ``float``. The format is simple enough for C (the LAMMPS plugin
and the standalone library read it too)::

    etn-model 1                       <- magic and format version
    etn_version 0.1.0
    spec_hash <sha256 of the canonical spec JSON>
    spec {"species": [...], ...}      <- canonical JSON, one line
    metadata {...}                    <- JSON, one line
    n_params 1234
    params                            <- then n_params lines, one float64 each (%.17g, exact)
    ...
    end
    sha256 <hex digest of every byte above this line>

A truncated file (no ``end`` / no checksum), a tampered one (checksum or spec hash mismatch) and one
from a newer format version each raise :class:`ModelFileError` with what to do.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..generator.errors import EtnError

FORMAT_VERSION = 1
MAGIC = "etn-model"


class ModelFileError(EtnError, ValueError):
    """A model file cannot be read; the message names the file, the problem and what to do."""


#: A parameter beyond this is no fitted model (it would give energies of 1e100 eV and more).
MAX_PARAM = 1e100
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def write(path, spec, params: np.ndarray, metadata: dict, etn_version: str) -> None:
    params = np.asarray(params, dtype=np.float64)
    if not np.all(np.isfinite(params)) or (params.size and np.abs(params).max() > MAX_PARAM):
        raise ModelFileError(f"refusing to write {path}: the parameters contain NaN, inf or values beyond "
                             f"{MAX_PARAM:g} (a diverged fit); nothing was written")
    lines = [f"{MAGIC} {FORMAT_VERSION}", f"etn_version {etn_version}", f"spec_hash {spec.hash}",
             f"spec {spec.canonical_json()}", f"metadata {json.dumps(metadata, sort_keys=True)}",
             f"n_params {len(params)}", "params"]
    lines += [repr(float(v)) for v in params]
    write_checksummed(path, lines)


def write_checksummed(path, lines: list[str]) -> None:
    """``lines``, an ``end`` line and ``sha256 <digest of all above>``, written atomically (a reader
    never sees half a file): the container of model files and active sets."""
    body = "\n".join(lines + ["end"]) + "\n"
    text = body + f"sha256 {hashlib.sha256(body.encode()).hexdigest()}\n"
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def checksummed_body(text: str) -> str | None:
    """The text before ``end`` of a file :func:`write_checksummed` wrote, or None when the end marker or
    checksum is missing or does not match (truncated, edited or damaged)."""
    end = text.rfind("\nend\n")
    tail = text[end + 5:] if end >= 0 else ""
    if end < 0 or not tail.startswith("sha256 ") or hashlib.sha256(text[:end + 5].encode()).hexdigest() != tail.split()[1]:
        return None
    return text[:end]


def read(path):
    """Return ``(spec_dict, params, metadata, etn_version)``; the caller rebuilds the ``Spec``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ModelFileError(f"{path} is not an etn model file (not text)") from None
    lines = text.split("\n")
    first = lines[0].split()
    if len(first) != 2 or first[0] != MAGIC:
        raise ModelFileError(f"{path} is not an etn model file (it does not start with '{MAGIC}')")
    try:
        version = int(first[1])
    except ValueError:
        raise ModelFileError(f"{path}: unreadable format version {first[1]!r}") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} has model-file format {version}, newer than this etn reads "
                             f"({FORMAT_VERSION}); upgrade etn (pip install -U etn)")
    end = text.rfind("\nend\n")
    if end < 0 or not text[end + 5:].startswith("sha256 "):
        raise ModelFileError(f"{path} is truncated (no end marker and checksum); re-save or re-copy the model")
    if checksummed_body(text) is None:
        raise ModelFileError(f"{path} is corrupt: its checksum does not match its content "
                             f"(edited or damaged); re-save or re-copy the model")
    header, k = {}, 1
    while k < len(lines) and lines[k] != "params":
        key, _, value = lines[k].partition(" ")
        header[key] = value
        k += 1
    for key in ("etn_version", "spec_hash", "spec", "metadata", "n_params"):
        if key not in header:
            raise ModelFileError(f"{path}: header field '{key}' is missing")
    try:
        spec = json.loads(header["spec"])
        metadata = json.loads(header["metadata"])
        n = int(header["n_params"])
        values = lines[k + 1:k + 1 + n]
        bad = next((v for v in values if not _FLOAT.fullmatch(v)), None)
        if bad is not None:
            raise ValueError(f"{bad!r} is not a decimal number")
        params = np.array([float(v) for v in values], dtype=np.float64)
    except (ValueError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: malformed content ({e})") from None
    if len(params) != n or lines[k + 1 + n] != "end":
        raise ModelFileError(f"{path}: expected {n} parameters before 'end'")
    if not all(math.isfinite(v) for v in params):
        raise ModelFileError(f"{path}: parameters contain NaN or inf")
    if params.size and np.abs(params).max() > MAX_PARAM:
        raise ModelFileError(f"{path}: parameters as large as {np.abs(params).max():.3g} (beyond {MAX_PARAM:g}): "
                             f"not a fitted model; re-fit or re-copy it")
    return spec, header["spec_hash"], params, metadata, header["etn_version"]


@lru_cache(maxsize=1)
def sha256_constants() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """SHA-256's round constants and initial hash (FIPS 180-4 §4.2.2, §5.3.3), for the C reader of model
    files in every generated library (etn_read_model), derived exactly: the first 32 bits of the
    fractional parts of the cube roots of the first 64 primes and of the square roots of the first 8."""
    import sympy

    def iroot(n: int, k: int) -> int:
        return int(sympy.integer_nthroot(n, k)[0])

    primes = list(sympy.primerange(2, 312))[:64]
    k = tuple(f"0x{iroot(p << 96, 3) & 0xffffffff:08x}u" for p in primes)
    h0 = tuple(f"0x{iroot(p << 64, 2) & 0xffffffff:08x}u" for p in primes[:8])
    return k, h0
