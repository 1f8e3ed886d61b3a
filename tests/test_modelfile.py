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


def test_the_generated_reader_agrees_with_python(saved, tmp_path):
    """etn_read_model (the one C reader of the standalone library and the LAMMPS plugin, in every generated
    library) reads exactly the parameters Python wrote and refuses what Python's reader refuses."""
    from etn.backends.cbackend import CBackend

    pot, path = saved
    lib = CBackend(pot.schedule, "float64")
    ffi, C = lib.ffi, lib.lib
    out, msg = np.zeros(pot.schedule.n_params), ffi.new("char[512]")

    def read(p):
        out[:] = 7.0  # a failed read leaves the caller's array as it was
        return C.etn_read_model(str(p).encode(), ffi.cast("double *", ffi.from_buffer(out)), msg, 512), \
            ffi.string(msg).decode()

    assert read(path)[0] == C.ETN_OK
    assert np.array_equal(out, pot.params)
    text = path.read_text()
    other = Potential.random(etn.catalogue.load("tiny"), seed=1)
    other.save(tmp_path / "other.etn")
    cases = {"corrupt": (text.replace("\n0.", "\n1.", 1) if "\n0." in text else text.replace("\n-0.", "\n-1.", 1),
                         "checksum does not match"),
             "truncated": (text[: len(text) // 2], "is truncated"),
             "newer": (text.replace("etn-model 1", "etn-model 2", 1), "model-file format 2 is newer"),
             "other": ((tmp_path / "other.etn").read_text(), "was fitted for another spec"),
             "not": ("hello\n", "is not an etn model file")}
    for name, (body, message) in cases.items():
        bad = tmp_path / f"{name}.etn"
        bad.write_text(body)
        rc, text_ = read(bad)
        assert rc == C.ETN_BAD_FILE and message in text_ and np.all(out == 7.0), (name, text_)
        if name != "other":  # a sound file of another spec: Python reads it as that spec's model
            with pytest.raises(ModelFileError):
                Potential.load(bad)
    rc, text_ = read(tmp_path / "missing.etn")
    assert rc == C.ETN_BAD_FILE and "cannot open" in text_
    # a host program (LAMMPS, a GUI) may have set a locale whose decimal point is ','
    import locale
    import os
    import shutil
    import subprocess

    if not shutil.which("localedef"):
        pytest.fail("localedef (glibc's libc-bin) is needed to build a de_DE locale for this test")
    subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(tmp_path / "de_DE.UTF-8")], check=True,
                   capture_output=True)
    old = locale.setlocale(locale.LC_ALL)
    os.environ["LOCPATH"] = str(tmp_path)
    try:
        locale.setlocale(locale.LC_ALL, "de_DE.UTF-8")
        assert locale.localeconv()["decimal_point"] == ","
        rc, text_ = read(path)
    finally:
        locale.setlocale(locale.LC_ALL, old)
        del os.environ["LOCPATH"]
    assert rc == C.ETN_OK and np.array_equal(out, pot.params), text_
