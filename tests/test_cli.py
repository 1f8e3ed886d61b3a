"""`etn inspect` on every catalogue spec, in all three formats, and clear CLI errors."""

import json
import subprocess
import sys

import pytest

import etn
from etn.cli import main


@pytest.mark.parametrize("name", etn.catalogue.names())
def test_inspect_table_json_dot(name, capsys):
    spec = etn.catalogue.load(name)
    assert main(["inspect", name]) == 0
    out = capsys.readouterr().out
    sched = etn.schedule(spec)
    assert f"parameters: {sched.n_params:,}" in out and spec.hash[:12] in out
    assert out.count("\n") > sum(len(c.paths) for c in sched.cores)
    assert main(["inspect", str(etn.catalogue.path(name)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_params"] == sched.n_params
    assert main(["inspect", name, "--dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph") and dot.count("->") >= spec.cores + 1


def test_bad_spec_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('species = ["Nb"]\nr_cut = 5.0\nn_radial = 0\nl_max = 1\ncores = 1\n')
    r = subprocess.run([sys.executable, "-m", "etn", "inspect", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "etn: error: n_radial must be between 1 and 32, got 0"
    r = subprocess.run([sys.executable, "-m", "etn", "inspect", "nosuchspec"], capture_output=True, text=True)
    assert r.returncode == 2 and "catalogue spec" in r.stderr
