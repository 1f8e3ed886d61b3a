"""The untrained MTP that the benchmarks derive for the motep peer runs (benchmarks/mtp_basis.py).

Its `.mtp` tables must describe rotation-invariant, linearly independent basis functions, and
evaluating the tables as motep does (basic moments, then `moment[k] += mult * moment[i] *
moment[j]`) must give the functions the derivation built.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mtp_basis  # noqa: E402


def _evaluate_tables(basic, times, mapping, count, r, f):
    """The scalar basis functions of one environment, computed from the tables alone."""
    u = r / np.linalg.norm(r, axis=1, keepdims=True)
    m = np.zeros(count)
    for k, (mu, a, b, c) in enumerate(basic):
        m[k] = np.sum(f[mu] * u[:, 0] ** a * u[:, 1] ** b * u[:, 2] ** c)
    for i, j, mult, k in times:
        m[k] += mult * m[i] * m[j]
    return m[mapping]


@pytest.fixture(scope="module")
def level12():
    b = mtp_basis.Basis(12)
    return b, b.tables()


def test_tables_reproduce_the_derived_functions(level12):
    b, (basic, times, mapping, count) = level12
    order = sorted(b.scalars, key=lambda n: (n.level, b.nodes.index(n)))
    for p, (r, f) in enumerate(b._probe[:5]):
        got = _evaluate_tables(basic, times, mapping, count, r, f)
        want = np.array([s.values[p, 0] for s in order])
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_basis_is_rotation_invariant_and_not_invariant_to_distortion(level12):
    b, (basic, times, mapping, count) = level12
    rng = np.random.default_rng(5)
    r, f = rng.normal(size=(7, 3)), rng.normal(size=(b.n_mu, 7))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))        # a rotation or a reflection
    v0 = _evaluate_tables(basic, times, mapping, count, r, f)
    v1 = _evaluate_tables(basic, times, mapping, count, r @ q.T, f)
    assert np.allclose(v0, v1, rtol=1e-10, atol=1e-10 * np.abs(v0).max())
    v2 = _evaluate_tables(basic, times, mapping, count, r * [1.0, 1.3, 1.0], f)   # a shear is no symmetry
    assert not np.allclose(v0, v2, rtol=1e-6)


def test_basis_functions_are_linearly_independent_and_levels_bounded(level12):
    b, (basic, times, mapping, count) = level12
    rng = np.random.default_rng(1)
    rows = [_evaluate_tables(basic, times, mapping, count, rng.normal(size=(9, 3)), rng.normal(size=(b.n_mu, 9)))
            for _ in range(3 * len(mapping))]
    V = np.array(rows)
    s = np.linalg.svd(V / np.abs(V).max(0), compute_uv=False)
    assert s[-1] > 1e-9 * s[0]
    assert all(s.level <= 12 for s in b.scalars)
    assert max(mu for mu, *_ in basic) == b.n_mu - 1 == 2     # M_{2,0} has level 10 <= 12, M_{3,0} 14
