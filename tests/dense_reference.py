"""A dense, slow implementation of the model straight from DESIGN.md section 1.

Independent of the schedule: harmonics from scipy's complex ``sph_harm_y`` moved to the real basis,
Chebyshev polynomials from ``numpy.polynomial``, CG as dense arrays from :func:`real_cg_dense`, and
each core assembled as one dense tensor ``T_k[first input, second input, (L_out, a_out, M_out)]`` (an
input: the features ``(c, l, m)`` or a bond ``(L, a, M)``, wired as ``Spec.graph`` says) including the
compression ``g = U G``. Site energies only: forces are checked by finite differences.
"""

import numpy as np
from ase.neighborlist import neighbor_list
from numpy.polynomial import chebyshev
from scipy.special import sph_harm_y

from etn.generator import admissible, complex_to_real, real_cg_dense


def real_sh(l, u):
    theta, phi = np.arccos(np.clip(u[2], -1, 1)), np.arctan2(u[1], u[0])
    Yc = np.array([sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)])
    return (np.array(complex_to_real(l).evalf(), dtype=complex) @ Yc).real


def irrep_index(irreps):
    """Flat index of (L, a, M) within a bond."""
    idx, o = {}, 0
    for L, r in irreps.terms:
        for a in range(r):
            for M in range(-L, L + 1):
                idx[(L, a, M)] = o
                o += 1
    return idx, o


def site_energies(pot, atoms):
    spec = pot.spec
    Nr, lm, C = spec.n_radial, spec.l_max, spec.n_channels
    sp_index = {s: k for k, s in enumerate(spec.species)}
    species = [sp_index[s] for s in atoms.get_chemical_symbols()]
    ii, D = neighbor_list("iD", atoms, spec.r_cut)
    N = len(atoms)
    # features A[i, c, l, m + l_max], constant channel c = C
    A = np.zeros((N, C + 1, lm + 1, 2 * lm + 1))
    A[:, C, 0, lm] = 1.0
    jj = neighbor_list("j", atoms, spec.r_cut)
    for i, j, r in zip(ii, jj, D):
        d = np.linalg.norm(r)
        xi = (2 * d - spec.r_min - spec.r_cut) / (spec.r_cut - spec.r_min)
        f = ((spec.r_cut - d) / (spec.r_cut - spec.r_min)) ** 2
        if spec.repulsion != "none":  # faded out below r_min as the pair term fades in (README)
            x = min(max((d - 0.75 * spec.r_min) / (0.25 * spec.r_min), 0.0), 1.0)
            f *= x ** 3 * (10 - 15 * x + 6 * x ** 2)
        for n in range(Nr):
            if spec.repulsion != "none" and xi < -1:  # continued linearly: T_n(-1) = (-1)^n, T_n'(-1) = (-1)^(n+1) n²
                Q = ((-1) ** n + (-1) ** (n + 1) * n * n * (xi + 1)) * f
            else:
                Q = chebyshev.chebval(xi, np.eye(Nr)[n]) * f
            for l in range(lm + 1):
                A[i, species[j] * Nr + n, l, lm - l:lm + l + 1] += Q * real_sh(l, r / d)
    # the network of dense cores, in the order of Spec.graph (each core: two inputs, the features or a bond)
    def space(v):
        """(index of (L, a, M) -> flat index, size) of one input: the features A[c, l, m] or a bond."""
        if v == "A":
            return (lambda L, a, M: (a * (lm + 1) + L) * (2 * lm + 1) + lm + M), (C + 1) * (lm + 1) * (2 * lm + 1)
        ix, n = irrep_index(spec.bond(v))
        return (lambda L, a, M: ix[(L, a, M)]), n

    def terms(v):
        return [(l, spec.channels(l)) for l in range(lm + 1)] if v == "A" else list(spec.bond(v).terms)

    V = np.zeros(N)
    for i in range(N):
        h = {0: np.ones(1)}
        for k, (x, y) in enumerate(spec.graph, 1):
            (fx, nx), (fy, ny), (fo, no) = space(x), space(y), space(k)
            T = np.zeros((nx, ny, no))
            for L_in, r_in in terms(x):
                for l, nc in terms(y):
                    for L_out, r_out in spec.bond(k).terms:
                        if not admissible(L_in, l, L_out) or (x == y == "A" and L_in > l):  # A x A: symmetric, L_in <= l
                            continue
                        G = pot.block(f"core{k}.path{L_in}_{l}_{L_out}")
                        if k == spec.species_core:
                            G = G[species[i]]
                        if spec.K(k):
                            G = np.einsum("cK,aKb->acb", pot.block(f"core{k}.U.l{l}"), G)
                        cg = real_cg_dense(L_in, l, L_out).transpose(1, 2, 0)  # [M_in, m, M_out]
                        Ms = lambda L: range(-L, L + 1)  # noqa: E731
                        for a in range(r_in):
                            for c in range(nc):
                                for b in range(r_out):
                                    T[np.ix_([fx(L_in, a, M) for M in Ms(L_in)], [fy(l, c, m) for m in Ms(l)],
                                             [fo(L_out, b, M) for M in Ms(L_out)])] += G[a, c, b] * cg
            vec = lambda v: A[i].ravel() if v == "A" else h[v]  # noqa: E731
            h[k] = np.einsum("I,J,IJO->O", vec(x), vec(y), T)
        V[i] = h[spec.cores][0]
    e0 = pot.block("e0")
    return np.array([e0[s] for s in species]) + V
