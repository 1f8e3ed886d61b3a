"""Real spherical harmonics as exact polynomials (sympy).

Convention
----------
* Orthonormal on the unit sphere: ``∫ Y_lm Y_l'm' dΩ = δ_ll' δ_mm'``.
* Index ``m = -l … l``; arrays store ``m`` at position ``m + l``.
* Real from complex (Condon–Shortley phase, as ``scipy.special.sph_harm_y``)::

      Y_l,m  = √2 (-1)^m Re Y_l^m       m > 0   (∝ cos mφ, Y_1,1  ∝ x)
      Y_l,0  = Y_l^0                             (Y_1,0 ∝ z)
      Y_l,-m = √2 (-1)^m Im Y_l^m       m > 0   (∝ sin mφ, Y_1,-1 ∝ y)

  i.e. ``Y_real = U_l · Y_complex`` with the unitary :func:`complex_to_real`.

Polynomials
-----------
``solid_harmonic(l, m)`` is the homogeneous degree-``l`` polynomial ``R_lm(x, y, z)`` with
``Y_lm(r̂) = R_lm(r̂)``. For a vector ``r`` of length ``r``, since ``r̂·∇R = l R`` (Euler),

    ∇_r Y_lm(r/|r|) = (∇R_lm(r̂) − l R_lm(r̂) r̂) / r,

so the gradient needs only the exact polynomials ``∂R_lm/∂x, ∂y, ∂z`` (``solid_harmonic_grad``).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

x, y, z = sp.symbols("x y z", real=True)

Monomial = tuple[sp.Expr, tuple[int, int, int]]


@lru_cache(maxsize=None)
def solid_harmonic(l: int, m: int) -> sp.Poly:
    """Exact real solid harmonic ``R_lm`` (orthonormal on the sphere) as a sympy ``Poly``."""
    if l < 0 or abs(m) > l:
        raise ValueError(f"need 0 <= |m| <= l, got l={l}, m={m}")
    am = abs(m)
    r2 = x**2 + y**2 + z**2
    # Π_l^m(z, r): the z/r-dependent part of the associated Legendre function (Racah normalised)
    pi = sum(
        (-1) ** k * sp.Rational(1, 2**l) * sp.binomial(l, k) * sp.binomial(2 * l - 2 * k, l)
        * sp.factorial(l - 2 * k) / sp.factorial(l - 2 * k - am) * r2**k * z ** (l - 2 * k - am)
        for k in range((l - am) // 2 + 1)
    )
    pi = sp.sqrt(sp.factorial(l - am) / sp.factorial(l + am)) * pi
    xy = sp.expand((x + sp.I * y) ** am)
    if m > 0:
        ang = sp.sqrt(2) * sp.re(xy)
    elif m < 0:
        ang = sp.sqrt(2) * sp.im(xy)
    else:
        ang = sp.Integer(1)
    norm = sp.sqrt(sp.Rational(2 * l + 1, 4) / sp.pi)
    return sp.Poly(sp.expand(norm * pi * ang), x, y, z)


@lru_cache(maxsize=None)
def solid_harmonic_grad(l: int, m: int) -> tuple[sp.Poly, sp.Poly, sp.Poly]:
    """Exact ``(∂R_lm/∂x, ∂R_lm/∂y, ∂R_lm/∂z)`` as sympy ``Poly`` objects."""
    p = solid_harmonic(l, m)
    return tuple(p.diff(v) if l > 0 else sp.Poly(0, x, y, z) for v in (x, y, z))


def monomials(poly: sp.Poly) -> list[Monomial]:
    """Non-zero terms of ``poly`` as ``(exact coefficient, (a, b, c))`` for ``x^a y^b z^c``,
    in a deterministic order (sympy's lexicographic term order)."""
    return [(coef, tuple(int(e) for e in exps)) for exps, coef in poly.terms() if coef != 0]


def complex_to_real(l: int) -> sp.Matrix:
    """Unitary ``U`` with ``Y_real[m + l] = Σ_μ U[m + l, μ + l] Y_complex^μ`` (exact)."""
    u = sp.zeros(2 * l + 1, 2 * l + 1)
    s = 1 / sp.sqrt(2)
    for m in range(-l, l + 1):
        if m > 0:
            u[m + l, m + l] = (-1) ** m * s
            u[m + l, -m + l] = s
        elif m == 0:
            u[l, l] = 1
        else:
            am = -m
            u[m + l, m + l] = sp.I * s
            u[m + l, am + l] = -sp.I * (-1) ** am * s
    return u


def sphere_integral(a: int, b: int, c: int) -> sp.Expr:
    """Exact ``∫_{S²} x^a y^b z^c dΩ`` (zero unless a, b, c are all even)."""
    if a % 2 or b % 2 or c % 2:
        return sp.Integer(0)
    beta = [sp.Rational(e + 1, 2) for e in (a, b, c)]
    return 2 * sp.gamma(beta[0]) * sp.gamma(beta[1]) * sp.gamma(beta[2]) / sp.gamma(sum(beta))


def evaluate(l: int, points):
    """Numerical ``Y_l,m`` (m = -l … l) at unit vectors ``points`` (n, 3) -> (n, 2l + 1)."""
    import numpy as np

    pts = np.asarray(points, dtype=np.float64)
    cols = []
    for m in range(-l, l + 1):
        val = np.zeros(len(pts))
        for coef, (a, b, c) in monomials(solid_harmonic(l, m)):
            val += float(coef) * pts[:, 0] ** a * pts[:, 1] ** b * pts[:, 2] ** c
        cols.append(val)
    return np.stack(cols, axis=1)


def wigner_D(l: int, R):
    """Real Wigner matrix ``D^l(R)`` with ``Y_l(R r̂) = D^l(R) Y_l(r̂)`` for a 3x3 orthogonal ``R``.

    Derived from the harmonics themselves: their span is invariant under O(3), so ``D`` is the
    exact solution of ``Y_l(R u_k) = D Y_l(u_k)`` on any 2l + 1 or more points in general
    position (least squares on a fixed point set; exact up to round-off). Reflections give
    ``D^l(-I) = (-1)^l I``.
    """
    import numpy as np

    rng = np.random.default_rng(12345)
    u = rng.normal(size=(4 * l + 8, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    Y = evaluate(l, u)
    YR = evaluate(l, u @ np.asarray(R, dtype=np.float64).T)
    D, *_ = np.linalg.lstsq(Y, YR, rcond=None)
    return D.T
