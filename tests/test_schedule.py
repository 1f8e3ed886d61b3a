"""Schedules: deterministic, JSON-serialisable, consistent counts; golden files pin two of them.

Regenerate the golden files after an intended change with ``ETN_UPDATE_GOLDEN=1 pytest tests/test_schedule.py``.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import etn
from etn.generator import admissible, schedule
from etn.generator.schedule import _path

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", ["tiny", "binary"])
def test_golden_schedule(name):
    text = schedule(etn.catalogue.load(name)).to_json()
    path = GOLDEN / f"schedule_{name}.json"
    if os.environ.get("ETN_UPDATE_GOLDEN"):
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text(), f"schedule of {name} changed; review and regenerate the golden file"


@pytest.mark.parametrize("name", etn.catalogue.names())
def test_schedule_consistent(name):
    spec = etn.catalogue.load(name)
    s1, s2 = schedule(spec), schedule(spec)
    assert s1.to_json() == s2.to_json()
    d = json.loads(s1.to_json())
    assert d["spec_hash"] == spec.hash
    # parameter blocks tile the flat vector
    offset = 0
    for b in s1.params:
        assert b.offset == offset
        offset += b.size
    assert offset == s1.n_params == d["n_params"]
    features = {l: spec.channels(l) for l in range(spec.l_max + 1)}
    for core in s1.cores:
        x, y = spec.graph[core.k - 1]
        assert core.inputs == (x, y)
        dims_x = features if x == "A" else dict(spec.bond(x).terms)
        dims_y = features if y == "A" else dict(spec.bond(y).terms)
        b_out = spec.bond(core.k)
        expect = {(Li, l, Lo) for Li in dims_x for l in dims_y for Lo in b_out.Ls
                  if admissible(Li, l, Lo) and not (x == y == "A" and Li > l)}  # A x A: symmetric, L_in <= l
        assert {(p.L_in, p.l, p.L_out) for p in core.paths} == expect
        for p in core.paths:
            assert p.order == min(p.flops, key=lambda o: (p.flops[o] + p.bwd_flops[o], p.flops[o]))
            assert all(abs(e.M_out) <= p.L_out and abs(e.M_in) <= p.L_in and abs(e.m) <= p.l for e in p.cg)
            assert p.nnz == np.count_nonzero(etn.generator.real_cg_dense(p.L_in, p.l, p.L_out))
            shape = s1.block(p.param).shape
            assert shape[-3:] == (dims_x[p.L_in], core.K or dims_y[p.l], b_out.rank(p.L_out))
            assert len(shape) == 3 + (core.k == spec.species_core)
            assert s1.block(p.param).core == core.k and s1.block(p.param).group == f"core{core.k}"
    # a compressing core is folded (U multiplied into its blocks) exactly when that costs fewer FLOPs
    # forward + backward; the folded paths are the same paths with n_c = C, each in its cheapest order
    cost = lambda ps: sum(p.flops[p.order] + p.bwd_flops[p.order] for p in ps)  # noqa: E731
    fwd = bwd = 0
    for c in s1.cores:
        compress = sum(2 * spec.channels(l) * c.K * (2 * l + 1) for l in range(spec.l_max + 1)) if c.K else 0
        if c.fold:
            assert [(p.L_in, p.l, p.L_out, p.r_in, p.r_out, p.param) for p in c.folded] == \
                [(p.L_in, p.l, p.L_out, p.r_in, p.r_out, p.param) for p in c.paths]
            assert all(p.n_c == spec.channels(p.l) for p in c.folded)
            assert all(p.order == min(p.flops, key=lambda o: (p.flops[o] + p.bwd_flops[o], p.flops[o])) for p in c.folded)
        else:
            assert c.folded == ()
        if c.K:
            folded = [_path(p.L_in, p.l, p.L_out, p.r_in, spec.channels(p.l), p.r_out, p.cg, p.param, c.inputs[0] == 0) for p in c.paths]
            assert c.fold == (cost(folded) < 2 * compress + cost(c.paths))
        else:
            assert not c.fold
        run = c.folded if c.fold else c.paths
        fwd += sum(p.flops[p.order] for p in run) + (0 if c.fold else compress)
        bwd += sum(p.bwd_flops[p.order] for p in run) + (0 if c.fold else compress)
    assert d["flops"]["forward"]["per_atom"] == fwd
    assert d["flops"]["backward"]["per_atom"] == bwd
