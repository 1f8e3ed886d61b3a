"""Clebsch–Gordan coefficients in the real spherical-harmonic basis, derived exactly.

``real_cg(L_in, l, L_out)`` returns the exact coefficients ``C[M_out, M_in, m]`` (indices offset by
``L``) of the equivariant coupling

    h_out[M_out] = Σ_{M_in, m} C[M_out, M_in, m] h_in[M_in] a[m],

i.e. for every rotation R with real Wigner matrices D^L(R) (``Y_L(R r̂) = D^L(R) Y_L(r̂)``)

    C (D^{L_in}(R) ⊗ D^l(R)) = D^{L_out}(R) C.

They come from sympy's complex Clebsch–Gordan coefficients ``⟨L_in μ_in, l μ | L_out μ_out⟩``
transformed with the unitary :func:`~etn.generator.sph.complex_to_real`:

    C = Σ U^{L_out}[M_out, μ_out] ⟨…⟩ conj(U^{L_in}[M_in, μ_in]) conj(U^l[m, μ]).

For ``L_in + l + L_out`` even (the only couplings the model uses: natural parity) the result is
real; odd sums give purely imaginary values and are rejected here. Normalisation is the unitary
one of the complex coefficients: ``Σ_{M_in, m} C[M, M_in, m] C[M', M_in, m] = δ_MM'``.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp
from sympy.physics.wigner import clebsch_gordan

from .sph import complex_to_real


def admissible(L_in: int, l: int, L_out: int) -> bool:
    """Triangle rule and natural parity (``L_in + l + L_out`` even)."""
    return abs(L_in - l) <= L_out <= L_in + l and (L_in + l + L_out) % 2 == 0


@lru_cache(maxsize=None)
def real_cg(L_in: int, l: int, L_out: int) -> dict[tuple[int, int, int], sp.Expr]:
    """Non-zero exact real-basis CG coefficients ``{(M_out, M_in, m): value}`` (signed ``M``)."""
    if not admissible(L_in, l, L_out):
        raise ValueError(f"coupling ({L_in}, {l}) -> {L_out} violates the triangle rule or parity")
    u_in, u_l, u_out = (complex_to_real(j) for j in (L_in, l, L_out))
    out: dict[tuple[int, int, int], sp.Expr] = {}
    for M_out in range(-L_out, L_out + 1):
        for M_in in range(-L_in, L_in + 1):
            for m in range(-l, l + 1):
                val = sp.Integer(0)
                # U has at most two non-zeros per row: μ = ±M
                for mu_in in {M_in, -M_in}:
                    for mu in {m, -m}:
                        mu_out = mu_in + mu
                        if abs(mu_out) > L_out or mu_out not in (M_out, -M_out):
                            continue
                        coef = u_out[M_out + L_out, mu_out + L_out] * sp.conjugate(u_in[M_in + L_in, mu_in + L_in])
                        coef *= sp.conjugate(u_l[m + l, mu + l])
                        if coef != 0:
                            val += coef * clebsch_gordan(L_in, l, L_out, mu_in, mu, mu_out)
                val = sp.radsimp(sp.expand(val))
                if val == 0:
                    continue
                if sp.im(val) != 0:
                    raise ArithmeticError(f"real CG ({L_in},{l},{L_out}) has a complex entry {val}")
                out[(M_out, M_in, m)] = val
    return out


def real_cg_dense(L_in: int, l: int, L_out: int):
    """Real CG as a float64 numpy array ``[M_out + L_out, M_in + L_in, m + l]``."""
    import numpy as np

    arr = np.zeros((2 * L_out + 1, 2 * L_in + 1, 2 * l + 1))
    for (M_out, M_in, m), v in real_cg(L_in, l, L_out).items():
        arr[M_out + L_out, M_in + L_in, m + l] = float(v)
    return arr
