"""``Potential``: a spec, its parameters and a backend that evaluates them.

``Potential.evaluate(atoms)`` returns ASE-convention results: ``energy`` (eV), ``energies`` (eV per
atom), ``forces`` (eV/Å), ``virial`` (``-Σ_pairs r_ij ⊗ ∂V_i/∂r_ij``, eV) and, for a cell with
volume, ``stress`` (eV/Å³, Voigt order xx yy zz yz xz xy, positive = tensile as in ASE).
"""

from __future__ import annotations

import numpy as np

from .io import modelfile
from .generator import Spec, cached_schedule
from .io.neighbors import ConfigurationError, pairs


class Potential:
    """An ETN potential: ``spec`` + flat ``params`` (layout: ``schedule.params``)."""

    def __init__(self, spec: Spec, params=None, metadata: dict | None = None, backend: str = "c"):
        self.spec = spec
        self.schedule = cached_schedule(spec)
        n = self.schedule.n_params
        params = np.zeros(n) if params is None else np.array(params, dtype=np.float64)
        if params.shape != (n,):
            raise ValueError(f"spec {spec.hash[:12]} has {n} parameters, got an array of shape {params.shape}")
        self.params = params
        self.metadata = dict(metadata or {})
        self._backends = {}
        self.backend = backend

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def random(cls, spec: Spec, seed: int = 0, scale: float = 1.0, **kw) -> Potential:
        """Random parameters: each block ~ N(0, scale² / fan_in), ``e0 = 0``; deterministic in ``seed``."""
        sched = cached_schedule(spec)
        rng = np.random.default_rng(seed)
        params = np.zeros(sched.n_params)
        for b in sched.params:
            if b.name == "e0":
                continue
            fan_in = b.shape[-2] * (b.shape[-3] if len(b.shape) >= 3 else 1)
            params[b.offset:b.offset + b.size] = rng.normal(0.0, scale / np.sqrt(fan_in), b.size)
        return cls(spec, params, {"init": f"random(seed={seed}, scale={scale})"}, **kw)

    def block(self, name: str) -> np.ndarray:
        """A view of one parameter block, e.g. ``'e0'`` or ``'core1.path0_0_0'``, in its shape."""
        b = self.schedule.block(name)
        return self.params[b.offset:b.offset + b.size].reshape(b.shape)

    # -- files -------------------------------------------------------------------------------------
    def save(self, path) -> None:
        from . import __version__

        modelfile.write(path, self.spec, self.params, self.metadata, __version__)

    @classmethod
    def load(cls, path, backend: str = "c") -> Potential:
        spec_dict, spec_hash, params, metadata, _ = modelfile.read(path)
        try:
            spec = Spec.from_dict(spec_dict, f"{path}: spec")
        except ValueError as e:
            raise modelfile.ModelFileError(f"{path}: invalid spec ({e})") from None
        if spec.hash != spec_hash:
            raise modelfile.ModelFileError(f"{path}: the spec does not match its recorded hash (file edited?)")
        try:
            return cls(spec, params, metadata, backend=backend)
        except ValueError as e:
            raise modelfile.ModelFileError(f"{path}: {e}") from None

    # -- evaluation --------------------------------------------------------------------------------
    def _grade_rows(self, pr) -> np.ndarray:
        """Rows of extrapolation grades from the design-row kernels (backends without a fused pass)."""
        from .backends.design import default_group, species_columns
        from .backends.resolver import design

        group = default_group(self.schedule)
        X = design(self.schedule, "numpy" if self.backend == "numpy" else "c").site_rows(self.params, [pr], group)
        cols = species_columns(self.schedule, group)
        return np.stack([X[i, cols[s]] for i, s in enumerate(pr.species)]) if len(X) else np.zeros((0, len(cols[0])))

    def output(self, atoms, backend: str | None = None) -> np.ndarray:
        """The network's output per atom, (N, 2L + 1) for a spec with ``output = "1xL"`` (real spherical
        harmonic components m = -L … L; for L = 1 that is (y, z, x)); without e0 and the pair term
        (energy models: use :meth:`evaluate`)."""
        if self.spec.is_energy:
            raise ValueError("this model's output is an energy: use Potential.evaluate(atoms)")
        be = self._get_backend(backend or self.backend)
        if not hasattr(be, "output"):
            raise ValueError(f"backend {backend or self.backend!r} evaluates energies only; use 'c' or 'numpy'")
        return be.output(self.params, pairs(atoms, self.spec))

    def _get_backend(self, name):
        if name not in self._backends:
            from .backends.resolver import evaluation

            self._backends[name] = evaluation(self.schedule, name)
        return self._backends[name]

    def evaluate(self, atoms, forces: bool = True, stress: bool = True, backend: str | None = None,
                 neighbors=None, grade_rows: bool = False, active_set=None) -> dict:
        """Energy, per-atom energies and, on request, forces, virial and stress of ``atoms``.

        ``neighbors``: a :class:`~etn.io.neighbors.NeighborCache` to reuse between calls (MD);
        without one the pairs are built afresh. ``grade_rows``: also each atom's row of extrapolation
        grades (``grade_rows``, N × row size, :mod:`etn.fitting.grade`) and the ``pairs``; ``active_set``: also each
        atom's grade (``gamma``). Both come from the same pass of the C kernels (else from the design rows).
        """
        if not self.spec.is_energy:
            from .generator import SpecError

            raise SpecError(f"this model's output is '{self.spec.output}' per atom, not an energy: use "
                            f"Potential.output(atoms)")
        be = self._get_backend(backend or self.backend)
        pr = neighbors.pairs(atoms) if neighbors is not None else pairs(atoms, self.spec)
        graded = grade_rows or active_set is not None
        need_grad = forces or stress or graded
        gamma = None
        if graded and hasattr(be, "compute_graded"):
            active = active_set.kernel_blocks() if active_set is not None else None
            energies, g, rows, gamma = be.compute_graded(self.params, pr, rows=grade_rows, active=active)
        else:
            energies, g = be.compute(self.params, pr, gradients=need_grad)
            rows = self._grade_rows(pr) if graded else None
            if active_set is not None:
                gamma = active_set.grade_species_rows(rows, pr.species)
        out = {"energies": energies, "energy": float(energies.sum())}
        if grade_rows:
            out["grade_rows"], out["pairs"] = rows, pr
        if active_set is not None:
            out["gamma"] = gamma
        out["free_energy"] = out["energy"]
        if not need_grad:
            return out
        fw = be.forces_virial(pr, g) if hasattr(be, "forces_virial") and len(g) else None
        if fw is None:
            N = pr.n_atoms
            F = np.zeros((N, 3))
            for a in range(3):
                F[:, a] = np.bincount(pr.i, g[:, a], N) - np.bincount(pr.j, g[:, a], N)
            W = g.T @ pr.r  # Σ_pairs ∂V/∂r ⊗ r  = dE/dε
            W = 0.5 * (W + W.T)
        else:
            F, W = fw
        out["forces"] = F
        out["virial"] = -W
        if stress:
            if atoms.cell.rank == 3:
                s = W / atoms.get_volume()
                out["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
            elif any(atoms.pbc):
                raise ConfigurationError("stress needs a cell with non-zero volume")
        return out
