"""Fitting over MPI ranks (etn.fitting.parallel): ``mpiexec -n 2 etn fit`` gives the single-process model to
round-off, and only rank 0 writes."""

import subprocess
import sys

import numpy as np
import pytest
from ase.io import write

import etn

from .test_workflow import labelled

try:
    import mpi4py  # noqa: F401

    from etn.hosts.lammps import environment, mpiexec

    MPIEXEC = mpiexec()
except Exception as e:  # only where mpi4py or mpich cannot be installed
    pytest.skip(f"MPI is not available: {e}", allow_module_level=True)

FIT = """
[model]
spec = "binary"
[data]
train = ["train.xyz"]
valid_fraction = 0.2
[fit]
sweeps = 3
stress_weight = 0.001
[output]
dir = "{out}"
"""


def test_two_ranks_fit_the_single_process_model(tmp_path):
    write(tmp_path / "train.xyz", labelled(15) + labelled(5, 30, "surf"))
    for out in ("one", "two"):
        (tmp_path / f"{out}.toml").write_text(FIT.format(out=out))
    env = environment()
    cmd = [sys.executable, "-m", "etn", "fit", "-q"]
    one = subprocess.run(cmd + ["one.toml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-500:]
    two = subprocess.run([MPIEXEC, "-n", "2", *cmd, "two.toml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-500:]
    assert "2 MPI ranks" in two.stdout and two.stdout.count("fitting spec") == 1  # rank 0 alone reports
    a = etn.Potential.load(tmp_path / "one" / "model.etn")
    b = etn.Potential.load(tmp_path / "two" / "model.etn")
    scale = np.abs(a.params).max()
    assert np.abs(b.params - a.params).max() < 1e-8 * scale  # sums in another order: round-off only
    assert (tmp_path / "two" / "model.aset").exists() and (tmp_path / "two" / "report.json").exists()
    assert a.metadata["valid_loss"] == pytest.approx(b.metadata["valid_loss"], rel=1e-9)


def test_errors_stop_every_rank_with_one_message(tmp_path):
    (tmp_path / "blocker").write_text("")
    write(tmp_path / "train.xyz", labelled(4))
    (tmp_path / "bad.toml").write_text(FIT.format(out="blocker/out"))
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "etn", "fit", "-q", "bad.toml"], cwd=tmp_path,
                       env=environment(), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert r.stderr.count("cannot write to the output folder") == 1
