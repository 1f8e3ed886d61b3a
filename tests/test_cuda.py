"""CUDA backend. The sources of every catalogue spec must compile with nvcc, warning-free, for
sm_90 and sm_80 (CI has nvcc but no GPU), and, compiled as host C++ against tests/cuda_emulation
(one loop over a launch's threads), give the numpy reference's results through CudaBackend and
CudaDesign. Numerical tests on a GPU against the C backend run only where a GPU, cupy and nvcc are
present, and are skipped with that reason elsewhere.

The compile check runs nvcc's device stages without optimisation (-Xcicc -O0 -Xptxas -O0): every
front-end error and warning and every PTX assembly error still shows."""

import builtins
import re

import numpy as np
import pytest

import etn
from etn.backends.codegen import render_cuda, render_design_cuda
from etn.backends.cuda import CudaError, available, compile_source, nvcc

from .conftest import random_cluster, random_crystal
from .cuda_emulation.host import emulate

def _have_nvcc() -> bool:
    try:
        nvcc()
        return True
    except CudaError:
        return False


HAVE_NVCC = _have_nvcc()
needs_gpu = pytest.mark.skipif(not available(), reason="needs an NVIDIA GPU with cupy and nvcc (none here)")


@pytest.mark.skipif(not HAVE_NVCC, reason="nvcc is not installed")
@pytest.mark.parametrize("name", etn.catalogue.names())
def test_cuda_sources_compile_without_warnings(name, tmp_path):
    """The evaluation kernels and design rows of every spec (float32 too for two). deep's go to PTX only:
    ptxas takes 21 s on its 20 000 lines even unoptimised, and the other specs take the same templates
    through ptxas (benchmarks/gpu/prepare.py assembles deep at -O3)."""
    sched = etn.schedule(etn.catalogue.load(name))
    dtypes = ["float64", "float32"] if name in ("tiny", "binary") else ["float64"]
    archs, out, stage = (["90"], "lib.ptx", ["-ptx"]) if name == "deep" else (["90", "80"], "lib.so", [])
    for dtype in dtypes:
        r = compile_source(render_cuda(sched, dtype), tmp_path / dtype / out, archs,
                           extra=["-Werror", "all-warnings", "-Xcicc", "-O0", "-Xptxas", "-O0", "--threads", "2", *stage])
        assert r.returncode == 0, f"nvcc failed on {name} ({dtype}):\n{r.stderr}"
        assert r.stderr.strip() == "", f"nvcc printed diagnostics for {name} ({dtype}):\n{r.stderr}"
        assert (tmp_path / dtype / out).stat().st_size > 0
    r = compile_source(render_design_cuda(sched), tmp_path / "design" / out, archs,
                       extra=["-Werror", "all-warnings", "-Xcicc", "-O0", "-Xptxas", "-O0", "--threads", "2", *stage])
    assert r.returncode == 0, f"nvcc failed on the design rows of {name}:\n{r.stderr}"
    assert r.stderr.strip() == "", f"nvcc printed diagnostics for the design rows of {name}:\n{r.stderr}"


def test_cuda_source_is_stamped_and_shares_the_c_atom_code():
    from etn.backends.codegen import render

    sched = etn.schedule(etn.catalogue.load("binary"))
    cu, c = render_cuda(sched).kernels, render(sched).kernels
    assert cu.splitlines()[0] == c.splitlines()[0] and "do not edit" in cu.splitlines()[0]
    # the per-pair maths and the contractions are the same template text in both renderings: the C one
    # runs them on SIMD lanes (etn_vec; the pair maths as *_v functions), the CUDA one on one atom per
    # thread. Only the C one keeps some paths' forward temporaries (X, GH) for the backward pass and
    # forms CG_e h (CG_e rho) once per loop over the other rank, so there the text around the
    # contractions differs and the CG products are split: their sums without a CG literal are the same
    # lines, and the CG literals are the same numbers.
    pairmath_cu = cu[cu.index("/* Q_n(r) = T_n(xi)"):cu.index("/* A[c, l, m] = sum over pairs")]
    pairmath_c = c[c.index("/* Q_n(r) = T_n(xi)"):c.index("/* ==== core 1:")]
    assert pairmath_c.replace("etn_vec", "etn_real").replace("_v(", "(").strip() == pairmath_cu.strip()
    number = r"-?\d+\.\d+(?:e-?\d+)?"
    for k in (1, 2):
        core_cu = cu[cu.index(f"/* ==== core {k}:"):cu.index(f"/* ==== core {k + 1}:")]
        core_c = c[c.index(f"/* ==== core {k}:"):c.index(f"/* ==== core {k + 1}:")]
        sums = [line for line in core_cu.splitlines() if "+=" in line and not line.lstrip().startswith("/*")]
        plain = [line for line in sums if not re.search(number, line)]
        assert len(plain) > 5 and all(line in core_c for line in plain)
        literals = set(re.findall(number, "\n".join(sums)))
        assert literals and literals == set(re.findall(number, core_c))
    assert len(literals) > 3  # core 2 couples l > 0
    assert "typedef etn_real etn_vec;" in cu and "etn_vec __attribute__((vector_size(" in c
    assert "__global__" in cu and 'extern "C"' in cu


@pytest.mark.parametrize("name", [n for n in etn.catalogue.names() if n != "deep"])  # deep: 13 s of numpy rows
def test_cuda_sources_run_as_host_code(name, tmp_path, monkeypatch):
    """The CUDA renderings' own code (one atom per thread: the paths of atom.c.j2 the C evaluation does not
    take; the launchers; the design rows' accumulation over a configuration's atoms), compiled as host C++
    against tests/cuda_emulation and driven by CudaBackend and CudaDesign themselves: energies and
    gradients (the folded cores' blocks formed by the etn_fold kernel) equal the numpy reference's (float64
    to 1e-12, float32 to 1e-4), and so do the design rows
    of every group, and the fused rows and grades of extrapolation equal the C kernels' (etn_compute_graded),
    on a periodic cell, a cluster and a cluster with an atom without neighbours (every
    catalogue spec but deep, whose numpy rows alone take 13 s: trees, A x A cores, compression, the ZBL
    pair term)."""
    from ase import Atoms

    from etn.backends import cuda
    from etn.backends.cbackend import CBackend
    from etn.backends.design import DesignReference
    from etn.backends.reference import NumpyBackend
    from etn.io.neighbors import pairs

    emulate(tmp_path, monkeypatch.setattr)
    pot = etn.Potential.random(etn.catalogue.load(name), seed=3, scale=0.5)
    sp = pot.spec.species
    lone = random_cluster(sp, n=6, seed=5) + Atoms(sp[0], positions=[[30.0, 30.0, 30.0]])
    prs = [pairs(a, pot.spec) for a in (random_crystal(sp, seed=4, reps=(1, 1, 2)), random_cluster(sp, n=7, seed=5), lone)]
    assert (np.bincount(prs[2].i, minlength=prs[2].n_atoms) == 0).sum() == 1
    ref = NumpyBackend(pot.schedule)
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-4)):
        be = cuda.CudaBackend(pot.schedule, dtype)
        assert (be.n_fold > 0) == any(c.fold for c in pot.schedule.cores)  # folded as the C evaluation
        for pr in prs:
            (V, g), (Vc, gc) = ref.compute(pot.params, pr), be.compute(pot.params, pr)
            np.testing.assert_allclose(Vc, V, rtol=0, atol=tol * np.abs(V).max())
            np.testing.assert_allclose(gc, g, rtol=0, atol=tol * np.abs(g).max())
        # the fused rows and grades of extrapolation, as the C kernels' etn_compute_graded (a species of rank 0: γ = inf)
        size = be.lib.etn_cuda_grade_row_size()
        rank = np.array([(3, 0, 2)[s % 3] for s in range(pot.spec.n_species)])
        active = (np.random.default_rng(1).normal(size=size * rank.sum()), rank)
        c, unseen = CBackend(pot.schedule, dtype), 0
        for pr in prs:
            got, want = be.compute_graded(pot.params, pr, True, active), c.compute_graded(pot.params, pr, True, active)
            for x, y in zip(got, want):
                np.testing.assert_allclose(x, y, rtol=0, atol=tol * np.abs(y[np.isfinite(y)]).max())
            assert np.isinf(got[3]).sum() == (rank[pr.species] == 0).sum()
            unseen += np.isinf(got[3]).sum()
        assert unseen > 0 or pot.spec.n_species == 1
    rows, numpy_rows = cuda.CudaDesign(pot.schedule), DesignReference(pot.schedule)
    assert len(rows.group_ids) == len(numpy_rows.groups) - 1  # all but e0
    for group in rows.group_ids:
        for got, want in zip(rows.batch(pot.params, prs, group), numpy_rows.batch(pot.params, prs, group)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * max(np.abs(want).max(), 1e-300))


def test_a_cached_library_that_does_not_load_is_built_again(monkeypatch):
    """A library carried from another machine (the GPU check's .gpu_cache) may need system libraries the
    GPU machine lacks: it is built there once more; one that still does not load is a CudaError."""
    from etn.backends import cuda

    calls = []
    monkeypatch.setattr(cuda, "build", lambda source, arch, rebuild=False: calls.append(rebuild) or f"/lib{len(calls)}.so")

    class FFI:
        def __init__(self, bad):
            self.bad = bad

        def dlopen(self, path):
            if path in self.bad:
                raise OSError(f"{path}: version `GLIBC_2.99' not found")
            return path

    assert cuda.load(FFI(()), "src", "90") == "/lib1.so" and calls == [False]
    calls.clear()
    assert cuda.load(FFI(("/lib1.so",)), "src", "90") == "/lib2.so" and calls == [False, True]
    calls.clear()
    with pytest.raises(CudaError, match="does not load .*GLIBC_2.99"):
        cuda.load(FFI(("/lib1.so", "/lib2.so")), "src", "90")


def test_missing_cupy_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_cupy(name, *args, **kw):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    pot = etn.Potential.random(etn.catalogue.load("tiny"), seed=0, backend="cuda")
    with pytest.raises(CudaError, match="pip install cupy-cuda13x"):
        pot.evaluate(random_cluster(["Cu"], n=4))
    assert not available()
    auto = etn.Potential(pot.spec, pot.params, backend="auto")  # falls back to C
    ref = etn.Potential(pot.spec, pot.params, backend="c")
    atoms = random_cluster(["Cu"], n=6)
    np.testing.assert_array_equal(auto.evaluate(atoms)["forces"], ref.evaluate(atoms)["forces"])


def test_missing_nvcc_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("NVCC", "/nonexistent/nvcc")
    with pytest.raises(CudaError, match="NVCC=/nonexistent/nvcc was not found"):
        nvcc()


@needs_gpu
@pytest.mark.parametrize("name", ["tiny", "binary", "compressed", "small"])
def test_cuda_matches_c(name):
    from .test_c_kernels import FLOAT32_RTOL, configurations

    pot = etn.Potential.random(etn.catalogue.load(name), seed=5, scale=0.5)
    for atoms in configurations(pot.spec.species):  # crystal, triclinic, cluster with an isolated atom
        c = pot.evaluate(atoms, backend="c")
        g = pot.evaluate(atoms, backend="cuda")
        assert g["energy"] == pytest.approx(c["energy"], rel=1e-12)
        np.testing.assert_allclose(g["energies"], c["energies"], rtol=0, atol=1e-12 * np.abs(c["energies"]).max())
        np.testing.assert_allclose(g["forces"], c["forces"], rtol=0, atol=1e-12 * np.abs(c["forces"]).max())
        g32 = pot.evaluate(atoms, backend="cuda-float32")  # the C kernels' documented float32 tolerance
        np.testing.assert_allclose(g32["forces"], c["forces"], rtol=0, atol=FLOAT32_RTOL * np.abs(c["forces"]).max())
        assert np.abs(g32["forces"] - c["forces"]).max() > 0  # really single precision


@needs_gpu
def test_cuda_many_neighbours():
    """A compressed fcc cell at a = 2.6 Å with a 4.5 Å cutoff: ~80 neighbours per atom."""
    pot = etn.Potential.random(etn.catalogue.load("binary"), seed=6, scale=0.3)
    atoms = random_crystal(list(pot.spec.species), seed=4, reps=(3, 3, 3), a=2.6, rattle=0.05)
    c = pot.evaluate(atoms, backend="c")
    g = pot.evaluate(atoms, backend="cuda")
    np.testing.assert_allclose(g["forces"], c["forces"], rtol=0, atol=1e-12 * np.abs(c["forces"]).max())


@needs_gpu
@pytest.mark.parametrize("name", ["tiny", "compressed", "small"])
def test_cuda_design_rows_match_c(name):
    from etn.backends.cdesign import CDesign
    from etn.backends.cuda import CudaDesign
    from etn.io.neighbors import pairs

    from .test_design import _configs

    pot = etn.Potential.random(etn.catalogue.load(name), seed=3)
    prs = [pairs(a, pot.spec) for a in _configs(pot.spec.species)]
    c, g = CDesign(pot.schedule), CudaDesign(pot.schedule)
    for group in c.group_ids:
        for want, got in zip(c.batch(pot.params, prs, group), g.batch(pot.params, prs, group)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max(), err_msg=f"{name} {group}")


@needs_gpu
def test_fit_with_cuda_rows_builds_the_c_normal_equations():
    from etn.io.dataset import Frame
    from etn.fitting.fit import FitSettings, Fitter

    spec = etn.catalogue.load("compressed")
    teacher = etn.Potential.random(spec, seed=5)
    frames = []
    for k in range(4):
        atoms = random_crystal(list(spec.species), seed=k, reps=(1, 1, 2))
        r = teacher.evaluate(atoms)
        frames.append(Frame(atoms, r["energy"], r["forces"], r["stress"], "t", f"c{k}"))
    init = etn.Potential.random(spec, seed=6)
    (A, a, _), (B, b, _) = (Fitter(spec, frames, None, FitSettings(backend=be), progress=False, init=init)
                            ._system("core2", frames) for be in ("cuda", "c"))
    np.testing.assert_allclose(A, B, rtol=0, atol=1e-12 * np.abs(B).max())
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())
