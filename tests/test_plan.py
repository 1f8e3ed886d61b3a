"""Plans: every offset a template prints lies inside the array it indexes, for every catalogue spec,
kernel and target."""

import numpy as np
import pytest

import etn
from etn.backends.plan import KERNELS, STACK_LIMIT, TARGETS, plan
from etn.backends.reference import NumpyBackend

from .conftest import random_crystal


def _size(sched, v, core):
    """Numbers of an input of a core: a bond, or the features (compressed: K per harmonic)."""
    if v == "A":
        return core.K * sched.features["n_sh"] if core.K else sched.features["size"]
    return sched.bonds[v].size


@pytest.mark.parametrize("name", etn.catalogue.names())
def test_every_offset_is_inside_its_array(name):
    sched = etn.schedule(etn.catalogue.load(name))
    for kernel in KERNELS:
        for target in TARGETS:
            p = plan(sched, kernel, target)
            assert len(p.cores) == sched.spec.cores and p.kernel == kernel and p.target == target
            n_weights = p.n_fold if p.n_fold else sched.n_params
            for c in p.cores:
                x, y = c.inputs
                cache = []
                for q in c.paths:
                    assert 0 <= q.h_off and q.h_off + q.r_in * (2 * q.L_in + 1) <= _size(sched, x, c)
                    assert 0 <= q.b_off and q.b_off + q.n_c * (2 * q.l + 1) <= _size(sched, y, c)
                    assert 0 <= q.out_off and q.out_off + q.r_out * (2 * q.L_out + 1) <= sched.bonds[c.k].size
                    g = q.g
                    assert q.gptr.split(" + ")[1] == str(g)
                    rows = (sched.spec.n_species if c.species_specific else 1) * q.r_in * q.n_c * q.r_out
                    assert g + rows <= (n_weights if c.P == "Pf" else sched.n_params)
                    if q.xc_off is not None:
                        cache.append(q.xc_off)
                assert cache == sorted(cache) and all(o < c.xc_size for o in cache)
            if kernel == "evaluate" and target == "c":
                assert 0 < p.stack <= STACK_LIMIT and p.lanes in (8, 16) and p.grade["k"] == sched.spec.species_core
            if kernel == "evaluate" and target in ("c", "cuda"):  # folded where the schedule says (Core.fold)
                assert [c.k for c in p.cores if c.P == "Pf"] == [c.k for c in sched.cores if c.fold]
            else:
                assert p.n_fold == 0 and all(c.P == "P" for c in p.cores)
            if kernel == "design":
                assert [g["name"] for g in p.groups] == [n for n in etn.backends.design.groups(sched) if n != "e0"]


def test_unknown_kernel_or_target():
    """(The stack check: tests/test_bad_input.py, through render.)"""
    sched = etn.schedule(etn.catalogue.load("tiny"))
    with pytest.raises(ValueError, match="no plan for kernel 'adjoint'"):
        plan(sched, "adjoint", "c")
    with pytest.raises(ValueError, match="no plan for kernel 'evaluate' on 'opencl'"):
        plan(sched, "evaluate", "opencl")



def test_numpy_engine_interprets_the_plan_it_is_given():
    """The numpy engine reads the plan: run folded (g' = U g, the C evaluation's layout: 'compressed' folds
    cores 1 and 3) it gives the unfolded model to round-off, and a plan whose weights of one path point
    elsewhere gives another model."""
    from dataclasses import replace


    pot = etn.Potential.random(etn.catalogue.load("compressed"), seed=3, scale=0.5)
    pr = etn.io.neighbors.pairs(random_crystal(pot.spec.species, seed=6, reps=(1, 1, 2)), pot.spec)
    flat = plan(pot.schedule, "evaluate", "numpy")
    folded = plan(pot.schedule, "evaluate", "numpy", fold=True)
    assert not flat.folds and [c.k for c in folded.cores if c.P == "Pf"] == [1, 3]
    V, g = NumpyBackend(flat).compute(pot.params, pr)
    Vf, gf = NumpyBackend(folded).compute(pot.params, pr)
    np.testing.assert_allclose(Vf, V, rtol=0, atol=1e-12 * np.abs(V).max())
    np.testing.assert_allclose(gf, g, rtol=0, atol=1e-12 * np.abs(g).max())
    c2 = flat.core(2)
    moved = replace(c2, paths=(replace(c2.paths[0], g=c2.paths[1].g),) + c2.paths[1:])
    Vm, _ = NumpyBackend(replace(flat, cores=(flat.core(1), moved, flat.core(3)))).compute(pot.params, pr, False)
    assert np.abs(Vm - V).max() > 1e-6 * np.abs(V).max()
