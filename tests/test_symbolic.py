"""The symbolic layer against the maths: exact orthonormality, scipy, wigners, equivariance."""

import numpy as np
import pytest
import sympy as sp
from scipy.spatial.transform import Rotation

from etn.generator import admissible, complex_to_real, real_cg, real_cg_dense, solid_harmonic, solid_harmonic_grad
from etn.generator.sph import evaluate, monomials, sphere_integral, wigner_D, x, y, z

L_MAX = 4


def random_unit(n, seed=0):
    u = np.random.default_rng(seed).normal(size=(n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def integrate(poly):
    return sum(c * sphere_integral(*e) for c, e in monomials(poly))


@pytest.mark.parametrize("l1", range(4))
def test_orthonormal_exactly(l1):
    """∫ Y_lm Y_l'm' dΩ = δ δ, computed exactly from the monomials."""
    for m1 in range(-l1, l1 + 1):
        for l2 in range(l1 + 1):
            for m2 in range(-l2, l2 + 1):
                val = sp.nsimplify(sp.simplify(integrate(solid_harmonic(l1, m1) * solid_harmonic(l2, m2))))
                assert val == (1 if (l1, m1) == (l2, m2) else 0), (l1, m1, l2, m2, val)


@pytest.mark.parametrize("l", range(L_MAX + 1))
def test_homogeneous_and_harmonic(l):
    for m in range(-l, l + 1):
        p = solid_harmonic(l, m)
        assert all(sum(e) == l for _, e in monomials(p))
        lap = sum(sp.diff(p.as_expr(), v, 2) for v in (x, y, z))
        assert sp.simplify(lap) == 0


@pytest.mark.parametrize("l", range(L_MAX + 1))
def test_matches_scipy_through_unitary(l):
    """Y_real = U Y_complex with scipy's complex harmonics (Condon–Shortley phase)."""
    from scipy.special import sph_harm_y

    u = random_unit(50, seed=l)
    theta = np.arccos(u[:, 2])
    phi = np.arctan2(u[:, 1], u[:, 0])
    Yc = np.stack([sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)], axis=1)
    U = np.array(complex_to_real(l).evalf(), dtype=complex)
    np.testing.assert_allclose(Yc @ U.T, evaluate(l, u), atol=1e-13)
    assert np.abs((Yc @ U.T).imag).max() < 1e-13


def test_l1_is_y_z_x():
    u = random_unit(5)
    np.testing.assert_allclose(evaluate(1, u), np.sqrt(3 / (4 * np.pi)) * u[:, [1, 2, 0]], atol=1e-15)


@pytest.mark.parametrize("l", range(L_MAX + 1))
def test_gradient_polynomials_by_finite_differences(l):
    u = random_unit(7, seed=10 + l) * 1.3
    h = 1e-6
    for m in range(-l, l + 1):
        f = sp.lambdify((x, y, z), solid_harmonic(l, m).as_expr())
        grads = [sp.lambdify((x, y, z), g.as_expr()) for g in solid_harmonic_grad(l, m)]
        for p in u:
            fd = [(f(*(p + h * e)) - f(*(p - h * e))) / (2 * h) for e in np.eye(3)]
            np.testing.assert_allclose([g(*p) for g in grads], fd, atol=1e-8)


@pytest.mark.parametrize("l", range(L_MAX + 1))
def test_wigner_D_is_a_representation(l):
    R1, R2 = Rotation.random(2, random_state=l).as_matrix()
    D1, D2, D12 = wigner_D(l, R1), wigner_D(l, R2), wigner_D(l, R1 @ R2)
    np.testing.assert_allclose(D1 @ D2, D12, atol=1e-12)
    np.testing.assert_allclose(D1 @ D1.T, np.eye(2 * l + 1), atol=1e-12)
    np.testing.assert_allclose(wigner_D(l, -np.eye(3)), (-1) ** l * np.eye(2 * l + 1), atol=1e-12)


TRIPLES = [(a, b, c) for a in range(L_MAX + 1) for b in range(L_MAX + 1) for c in range(L_MAX + 1) if admissible(a, b, c)]


@pytest.mark.parametrize("L_in,l,L_out", TRIPLES)
def test_cg_equivariant_and_orthonormal(L_in, l, L_out):
    C = real_cg_dense(L_in, l, L_out)  # [M_out, M_in, m]
    for R in Rotation.random(3, random_state=L_in * 25 + l * 5 + L_out).as_matrix():
        for Q in (R, -R):  # rotations and improper rotations: natural parity makes both hold
            lhs = np.einsum("OIm,Ii,mj->Oij", C, wigner_D(L_in, Q), wigner_D(l, Q))
            rhs = np.einsum("OP,Pij->Oij", wigner_D(L_out, Q), C)
            np.testing.assert_allclose(lhs, rhs, atol=1e-12)
    gram = np.einsum("OIm,PIm->OP", C, C)
    np.testing.assert_allclose(gram, np.eye(2 * L_out + 1), atol=1e-14)


@pytest.mark.parametrize("L_in,l,L_out", TRIPLES)
def test_cg_matches_wigners_package(L_in, l, L_out):
    """Independent implementation: the `wigners` package's complex CG, moved to our real basis.

    wigners returns ``C[m1, m2, M]`` = ⟨j1 m1 j2 m2 | J M⟩ in the standard (Condon–Shortley)
    convention, the same sign and normalisation as sympy's; the real-basis transform is ours.
    """
    import wigners

    Cc = wigners.clebsch_gordan_array(L_in, l, L_out)
    U = [np.array(complex_to_real(j).evalf(), dtype=complex) for j in (L_in, l, L_out)]
    real = np.einsum("Mc,abc,Ia,mb->MIm", U[2], Cc, U[0].conj(), U[1].conj())
    assert np.abs(real.imag).max() < 1e-13
    np.testing.assert_allclose(real.real, real_cg_dense(L_in, l, L_out), atol=1e-13)


def test_cg_values_are_exact_surds():
    for (a, b, c) in TRIPLES[:20]:
        for v in real_cg(a, b, c).values():
            assert v.is_algebraic and (v**2).is_rational, v


def test_odd_coupling_rejected():
    with pytest.raises(ValueError, match="parity"):
        real_cg(1, 1, 1)
