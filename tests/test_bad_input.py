"""Bad input, one family per test: each case ends in a one-line error that says what to do (never a
crash, a traceback or a silently wrong answer), and nothing already made is lost."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms

import etn
from etn import EtnError
from etn.cli import main
from etn.io.modelfile import ModelFileError

from .conftest import random_cluster


@pytest.fixture(scope="module")
def tiny():
    pot = etn.Potential.random(etn.catalogue.load("tiny"), seed=0)
    pot.block("e0")[:] = -3.0
    return pot


# -- every error etn raises on purpose is an EtnError ----------------------------------------------
def test_error_classes_share_one_base():
    from etn.backends.build import CompilerError
    from etn.backends.cuda import CudaError
    from etn.io.dataset import DataError
    from etn.fitting.fit import FitError
    from etn.fitting.grade import ActiveSetError
    from etn.hosts.lammps import LammpsError

    for cls in (etn.SpecError, ModelFileError, etn.ConfigurationError, DataError, FitError, CompilerError,
                CudaError, LammpsError, ActiveSetError):
        assert issubclass(cls, EtnError)


# -- configurations that used to crash the process (SIGFPE in the neighbour search) -----------------
CONFIGS = {
    "NaN in the cell": (Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]],
                              cell=[[float("nan"), 0, 0], [0, 5, 0], [0, 0, 5]], pbc=True), "cell contains NaN"),
    "atoms 6e5 Å apart": (Atoms("Cu2", positions=[[0, 0, 0], [6e5, 0, 0]]), "spans 6e+05 Å"),
    "a 1e5 Å periodic cell": (Atoms("Cu", positions=[[0, 0, 0]], cell=[1e5, 5, 5], pbc=True), "spans 1e+05 Å"),
    "NaN position": (Atoms("Cu2", positions=[[0, 0, 0], [float("nan"), 0, 0]]), "positions contain NaN"),
    "flat periodic cell": (Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]], cell=[[5, 0, 0], [0, 5, 0], [0, 0, 0]],
                                 pbc=True), "non-degenerate cell"),
    "overlapping atoms": (Atoms("Cu2", positions=[[0, 0, 0], [0.01, 0, 0]]), "overlap"),
    "unknown element": (Atoms("Fe2", positions=[[0, 0, 0], [2, 0, 0]]), "Fe, which this model does not know"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_configuration_is_a_configuration_error(tiny, case):
    """Run in a child process: a crash there (a signal) fails the test instead of the test run."""
    atoms, message = CONFIGS[case]
    code = """
import pickle, sys, etn
pot, atoms = pickle.loads(sys.stdin.buffer.read())
try:
    pot.evaluate(atoms)
except etn.ConfigurationError as e:
    print("ConfigurationError:", e)
"""
    import pickle

    r = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((tiny, atoms)), capture_output=True,
                       timeout=120)
    out = r.stdout.decode()
    assert r.returncode == 0, f"the process died (code {r.returncode}): {r.stderr.decode()[-300:]}"
    assert out.startswith("ConfigurationError:") and message in out and out.count("\n") == 1


def test_negative_skin_is_refused(tiny):
    with pytest.raises(ValueError, match="skin must be a finite distance"):
        etn.Calculator(tiny, skin=-1)


# -- model files: never silently wrong --------------------------------------------------------------
def test_model_files_with_bad_numbers(tiny, tmp_path):
    p = tmp_path / "m.etn"
    bad = etn.Potential(tiny.spec, tiny.params.copy())
    bad.params[3] = np.nan
    with pytest.raises(ModelFileError, match="refusing to write"):
        bad.save(p)
    assert not p.exists()  # nothing half-written
    bad.params[3] = 1e300
    with pytest.raises(ModelFileError, match="refusing to write"):
        bad.save(p)

    def resave(text):
        """A model file with ``text`` as its body and a correct checksum: only the content is wrong."""
        import hashlib

        body = text[: text.rfind("\nend\n") + 5]
        return body + f"sha256 {hashlib.sha256(body.encode()).hexdigest()}\n"

    tiny.save(p)
    lines = p.read_text().split("\n")
    k = lines.index("params") + 1
    for value, message in (("1e300", "not a fitted model"), ("0.072_59", "not a decimal number"),
                           ("nan", "not a decimal number")):
        edited = lines.copy()
        edited[k] = value
        (tmp_path / "e.etn").write_text(resave("\n".join(edited)))
        with pytest.raises(ModelFileError, match=message):
            etn.Potential.load(tmp_path / "e.etn")


def test_a_model_whose_spec_asks_for_l_max_30_is_refused_at_once(tiny, tmp_path):
    import hashlib
    import json

    tiny.save(tmp_path / "m.etn")
    text = (tmp_path / "m.etn").read_text()
    spec = json.loads(text.split("\nspec ", 1)[1].split("\n", 1)[0])
    spec["l_max"] = 30
    text = text.replace(text.split("\nspec ", 1)[1].split("\n", 1)[0], json.dumps(spec, sort_keys=True))
    body = text[: text.rfind("\nend\n") + 5]
    (tmp_path / "big.etn").write_text(body + f"sha256 {hashlib.sha256(body.encode()).hexdigest()}\n")
    with pytest.raises(ModelFileError, match="l_max must be between 0 and 8"):
        etn.Potential.load(tmp_path / "big.etn")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_standalone_example_checks_the_model_and_the_configuration(tiny, tmp_path):
    from etn.backends.codegen import write_config

    out = tmp_path / "lib"
    assert main(["generate", "tiny", "-o", str(out)]) == 0
    subprocess.run(["make", "-C", str(out), "etn_example"], check=True, capture_output=True)
    tiny.save(tmp_path / "m.etn")
    write_config(random_cluster(("Cu",), n=3), tmp_path / "c.txt")
    good = subprocess.run([str(out / "etn_example"), str(tmp_path / "m.etn"), str(tmp_path / "c.txt")],
                          capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.startswith("energy ")
    text = (tmp_path / "m.etn").read_text()
    k = text.index("\nparams\n") + 8
    cases = {
        "corrupt": (text[:k] + ("1" if text[k] != "1" else "2") + text[k + 1:], "checksum does not match"),
        "truncated": (text[: len(text) // 2], "truncated"),
        "not a model": ("hello\n", "not an etn model file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / f"{name}.etn").write_text(content)
        r = subprocess.run([str(out / "etn_example"), str(tmp_path / f"{name}.etn"), str(tmp_path / "c.txt")],
                           capture_output=True, text=True)
        assert r.returncode == 1 and message in r.stderr, name
    (tmp_path / "huge.txt").write_text("2000000000\n")
    r = subprocess.run([str(out / "etn_example"), str(tmp_path / "m.etn"), str(tmp_path / "huge.txt")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "bad atom count" in r.stderr


# -- the compile cache does not trust what it finds -------------------------------------------------
def test_a_damaged_cached_module_is_rebuilt(tmp_path):
    """A truncated module under the right name (and one with its checksum file gone) is rebuilt, in a
    fresh process as a later run would meet it, instead of being loaded (SIGBUS before)."""
    code = """
import etn
from etn.backends.build import build
from etn.backends.codegen import render
build(render(etn.schedule(etn.catalogue.load("tiny")), "float64"))
print("ok")
"""
    env = dict(os.environ, ETN_CACHE_DIR=str(tmp_path / "cache"))
    run = lambda: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)  # noqa: E731
    assert run().stdout.strip() == "ok"
    so = next((tmp_path / "cache").glob("*/*.so"))
    size = so.stat().st_size
    so.write_bytes(so.read_bytes()[:1000])
    r = run()
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-300:]
    assert so.stat().st_size == size
    so.with_name(so.name + ".sha256").unlink()
    assert run().stdout.strip() == "ok" and so.with_name(so.name + ".sha256").exists()


def test_an_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    from etn.backends import build as build_mod
    from etn.backends.build import CompilerError
    from etn.backends.codegen import render

    if os.geteuid() == 0:
        blocker = tmp_path / "file"  # root may write anywhere: a file where the folder should be
        blocker.write_text("")
        monkeypatch.setenv("ETN_CACHE_DIR", str(blocker / "cache"))
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        monkeypatch.setenv("ETN_CACHE_DIR", str(ro / "cache"))
    build_mod._loaded.clear()
    with pytest.raises(CompilerError, match="cannot write the kernel cache .*ETN_CACHE_DIR"):
        build_mod.build(render(etn.schedule(etn.catalogue.load("tiny")), "float32"))


# -- fit configurations: refused before any data is read, work never lost --------------------------
FIT_TOML = """
[model]
spec = "tiny"
[data]
train = ["train.xyz"]
{data}
[fit]
sweeps = 1
{fit}
[output]
dir = "{out}"
"""

BAD_FIT = {
    "valid_fraction -0.5": ("valid_fraction = -0.5", "", "valid_fraction must be a number in [0, 1)"),
    "patience -1": ("", "patience = -1", "patience must be an integer >= 0"),
    "threads -3": ("", "threads = -3", "threads must be an integer >= 1"),
    "unknown backend": ("", 'backend = "fpga"', "backend must be"),
    "missing typo": ('missing = "skp"', "", 'missing must be "error" or "skip"'),
}


@pytest.mark.parametrize("case", list(BAD_FIT))
def test_bad_fit_settings_are_refused_before_reading_data(tmp_path, capsys, case):
    data, fit, message = BAD_FIT[case]
    (tmp_path / "fit.toml").write_text(FIT_TOML.format(data=data, fit=fit, out="fit"))
    assert main(["fit", str(tmp_path / "fit.toml"), "-q"]) == 2  # train.xyz does not even exist
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def _training_file(path):
    from ase.calculators.emt import EMT
    from ase.io import write

    frames = []
    for seed in range(6):
        a = random_cluster(("Cu",), n=4, seed=seed)
        a.calc = EMT()
        a.get_potential_energy()
        frames.append(a)
    write(path, frames)


def test_unwritable_output_fails_before_the_fit_and_old_models_are_kept(tmp_path, capsys):
    _training_file(tmp_path / "train.xyz")
    (tmp_path / "blocker").write_text("")
    (tmp_path / "bad.toml").write_text(FIT_TOML.format(data="", fit="", out="blocker/fit"))
    assert main(["fit", str(tmp_path / "bad.toml"), "-q"]) == 2
    assert "cannot write to the output folder" in capsys.readouterr().err
    (tmp_path / "fit.toml").write_text(FIT_TOML.format(data="", fit="", out="fit"))
    assert main(["fit", str(tmp_path / "fit.toml"), "-q"]) == 0
    first = (tmp_path / "fit" / "model.etn").read_bytes()
    assert main(["fit", str(tmp_path / "fit.toml"), "-q"]) == 0
    assert (tmp_path / "fit" / "model.etn.1").read_bytes() == first
    assert (tmp_path / "fit" / "model.aset.1").exists()


# -- the command line: one line, the traceback only with --debug ------------------------------------
def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.etn"), str(tmp_path / "x.xyz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("etn: error:") and "does not exist" in err[0]
    assert main(["inspect", "no-such-spec"]) == 2
    assert "neither a spec file nor a catalogue spec" in capsys.readouterr().err
    with pytest.raises(ModelFileError):
        main(["--debug", "eval", str(tmp_path / "missing.etn"), str(tmp_path / "x.xyz")])
    for argv in (["example", "--steps", "-5"], ["example", "--sweeps", "0"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "must be >= 1" in capsys.readouterr().err


def test_lammps_export_never_puts_a_strange_file_name_into_the_input(tiny, tmp_path):
    from etn.hosts.lammps import export

    name = tmp_path / "m\nshell touch PWNED\n.etn"
    tiny.save(name)
    out = export(name, tmp_path / "p", build_plugin=False)
    text = (out / "in.etn").read_text()
    assert "shell" not in text and "pair_coeff      * * model.etn" in text
    assert (out / "model.etn").exists()


# -- MLIP .cfg files: nothing dropped or reinterpreted silently --------------------------------------
def test_cfg_reader_refuses_what_it_would_get_wrong(tmp_path):
    from etn.io.dataset import DataError, read_cfg

    from .test_fit import _emt_frames, _write_cfg

    species = ["Cu", "Ni", "Pd", "Ag", "Au"]
    _write_cfg(_emt_frames(2, 3), tmp_path / "good.cfg", species)
    text = (tmp_path / "good.cfg").read_text()
    assert len(read_cfg(tmp_path / "good.cfg", species)) == 2
    n = int(text.split("Size\n", 1)[1].split("\n", 1)[0])
    cases = {
        "Size too small": (text.replace(f"Size\n {n}\n", f"Size\n {n - 1}\n", 1), "more atom lines than Size"),
        "misspelt Supercell": (text.replace("Supercell", "Supercel", 1), "unknown MLIP .cfg line 'Supercel'"),
        "no END_CFG": (text[: text.rindex("END_CFG")], "has no END_CFG"),
        "two BEGIN_CFG": (text.replace("END_CFG\n", "", 1), "BEGIN_CFG before the END_CFG"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / "bad.cfg").write_text(content)
        with pytest.raises(DataError, match=message):
            read_cfg(tmp_path / "bad.cfg", species)


def test_a_fit_on_copies_of_one_configuration_says_so():
    from ase.calculators.emt import EMT

    from etn.io.dataset import Frame
    from etn.fitting.fit import FitSettings, Fitter

    a = random_cluster(("Cu",), n=4, seed=1)
    a.calc = EMT()
    frames = [Frame(a.copy(), a.get_potential_energy(), a.get_forces(), None, "x", "") for _ in range(10)]
    f = Fitter(etn.catalogue.load("tiny"), frames, None, FitSettings(sweeps=1), progress=False)
    f.run()
    text = " ".join(f.warnings)
    assert "9 of the 10 training configurations repeat another one" in text
    assert "underdetermined" in text


def test_binary_files_where_text_belongs(tmp_path, capsys):
    (tmp_path / "x.toml").write_bytes(b"\xff\xfe\x00binary")
    assert main(["inspect", str(tmp_path / "x.toml")]) == 2
    assert main(["fit", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("not a text (TOML) file" in e for e in err)
    assert main(["fit", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_one_composition_cannot_fix_the_reference_energies():
    """Data of one fixed composition (as the TiAl tutorial set) leave e0 of each element undetermined:
    the fit says so and names the settings that fix it."""
    from ase.calculators.emt import EMT

    from etn.io.dataset import Frame
    from etn.fitting.fit import FitSettings, Fitter

    from .conftest import random_crystal

    frames = []
    for seed in range(6):
        a = random_crystal(["Cu", "Ni"], seed=seed, reps=(1, 1, 1), a=3.6, rattle=0.1)
        a.symbols = ["Cu", "Ni"] * (len(a) // 2)  # always half and half
        a.calc = EMT()
        frames.append(Frame(a, a.get_potential_energy(), a.get_forces(), None, "x", ""))
    f = Fitter(etn.catalogue.load("binary"), frames, None, FitSettings(sweeps=1), progress=False)
    f.run()
    assert any("do not determine the reference energies" in w and "isolated" in w for w in f.warnings)


def test_a_spec_too_big_for_a_threads_stack_is_refused_before_it_crashes():
    """Rank-64 bonds on both sides of a core: the kernels' temporaries need ~9 MB of stack per thread (with
    l_max 8 instead of 4, ~15 MB: a SIGSEGV before); the build refuses such specs with what to change."""
    from etn.backends.codegen import render

    spec = etn.Spec.from_dict({"species": ["Cu", "Ni"], "r_min": 1.8, "r_cut": 5.0, "n_radial": 8, "l_max": 4,
                               "cores": 3, "bonds": ["64x0 + 64x1 + 64x2 + 64x3 + 64x4"] * 2})
    with pytest.raises(etn.SpecError, match="MB of stack per thread .*lower the bond ranks or l_max"):
        render(etn.schedule(spec))
