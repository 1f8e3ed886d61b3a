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
    for core in s1.cores:
        b_in, b_out = spec.bond(core.k - 1), spec.bond(core.k)
        expect = {(Li, l, Lo) for Li in b_in.Ls for l in range(spec.l_max + 1) for Lo in b_out.Ls if admissible(Li, l, Lo)}
        assert {(p.L_in, p.l, p.L_out) for p in core.paths} == expect
        for p in core.paths:
            assert p.order == min(p.flops, key=lambda o: (p.flops[o] + p.bwd_flops[o], p.flops[o]))
            assert all(abs(e.M_out) <= p.L_out and abs(e.M_in) <= p.L_in and abs(e.m) <= p.l for e in p.cg)
            assert p.nnz == np.count_nonzero(etn.generator.real_cg_dense(p.L_in, p.l, p.L_out))
            shape = s1.block(p.param).shape
            assert shape[-3:] == (b_in.rank(p.L_in), core.K or spec.channels(p.l), b_out.rank(p.L_out))
            assert len(shape) == 3 + (core.k == 1)
    paths = sum(p.flops[p.order] for c in s1.cores for p in c.paths)
    adjoints = sum(p.bwd_flops[p.order] for c in s1.cores for p in c.paths)
    compress = sum(2 * spec.channels(l) * c.K * (2 * l + 1) for c in s1.cores if c.K for l in range(spec.l_max + 1))
    assert d["flops"]["forward"]["per_atom"] == paths + compress
    assert d["flops"]["backward"]["per_atom"] == adjoints + compress
