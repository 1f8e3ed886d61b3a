"""Model files: exact round trip; truncated, tampered, newer and foreign files fail clearly."""

import numpy as np
import pytest

import etn
from etn import ModelFileError, Potential

from .conftest import random_crystal


@pytest.fixture
def saved(tmp_path):
    pot = Potential.random(etn.catalogue.load("binary"), seed=5)
    pot.metadata["note"] = "round trip"
    path = tmp_path / "model.etn"
    pot.save(path)
    return pot, path


def test_round_trip_is_exact(saved):
    pot, path = saved
    back = Potential.load(path)
    assert back.spec == pot.spec
    assert np.array_equal(back.params, pot.params)
    assert back.metadata == pot.metadata
    atoms = random_crystal(pot.spec.species, seed=1, reps=(1, 1, 2))
    assert back.evaluate(atoms)["energy"] == pot.evaluate(atoms)["energy"]


def test_truncated(saved):
    _, path = saved
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        Potential.load(path)


def test_tampered_parameter(saved):
    _, path = saved
    lines = path.read_text().split("\n")
    k = lines.index("params") + 3
    lines[k] = repr(float(lines[k]) + 1e-3)
    path.write_text("\n".join(lines))
    with pytest.raises(ModelFileError, match="checksum does not match"):
        Potential.load(path)


def test_newer_format(saved):
    _, path = saved
    path.write_text(path.read_text().replace("etn-model 1", "etn-model 99", 1))
    with pytest.raises(ModelFileError, match="format 99, newer than this etn reads"):
        Potential.load(path)


def test_not_a_model(tmp_path):
    p = tmp_path / "x.etn"
    p.write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(ModelFileError, match="not an etn model file"):
        Potential.load(p)
    with pytest.raises(ModelFileError, match="does not exist"):
        Potential.load(tmp_path / "missing.etn")
