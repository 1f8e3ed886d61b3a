"""`etn generate`: the standalone C library builds with plain make/cc and agrees with Python."""

import shutil
import subprocess

import numpy as np
import pytest

import etn
from etn.cli import main
from etn.backends.codegen import write_config

from .conftest import random_cluster, random_crystal


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("name", ["binary", "compressed"])
def test_generated_library_builds_and_agrees(tmp_path, name, capsys):
    spec = etn.catalogue.load(name)
    out = tmp_path / "lib"
    assert main(["generate", name, "-o", str(out)]) == 0
    capsys.readouterr()
    subprocess.run(["make", "-C", str(out)], check=True, capture_output=True)
    pot = etn.Potential.random(spec, seed=7, scale=0.5)
    pot.block("e0")[:] = -2.0
    pot.save(tmp_path / "model.etn")
    for k, atoms in enumerate([random_crystal(spec.species, seed=3, reps=(1, 1, 2), triclinic=True),
                               random_cluster(spec.species, n=7, seed=4)]):
        write_config(atoms, tmp_path / f"c{k}.txt")
        r = subprocess.run([str(out / "etn_example"), str(tmp_path / "model.etn"), str(tmp_path / f"c{k}.txt")],
                           capture_output=True, text=True, check=True)
        lines = r.stdout.splitlines()
        energy = float(lines[0].split()[1])
        rows = np.array([[float(v) for v in ln.split()[2:]] for ln in lines[1:-1]])
        virial = np.array([float(v) for v in lines[-1].split()[1:]]).reshape(3, 3)
        ref = pot.evaluate(atoms, backend="numpy")
        assert energy == pytest.approx(ref["energy"], rel=1e-12)
        np.testing.assert_allclose(rows[:, 0], ref["energies"], rtol=1e-12)
        np.testing.assert_allclose(rows[:, 1:], ref["forces"], atol=1e-12 * np.abs(ref["forces"]).max())
        np.testing.assert_allclose(virial, ref["virial"], atol=1e-12 * np.abs(ref["virial"]).max())


def test_standalone_rejects_model_of_another_spec(tmp_path, capsys):
    out = tmp_path / "lib"
    assert main(["generate", "tiny", "-o", str(out)]) == 0
    subprocess.run(["make", "-C", str(out), "etn_example"], check=True, capture_output=True)
    etn.Potential.random(etn.catalogue.load("binary")).save(tmp_path / "other.etn")
    write_config(random_cluster(("Cu",), n=3), tmp_path / "c.txt")
    r = subprocess.run([str(out / "etn_example"), str(tmp_path / "other.etn"), str(tmp_path / "c.txt")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "was fitted for another spec" in r.stderr
