"""ASE calculator for an ETN :class:`~etn.Potential`.

    >>> atoms.calc = etn.Calculator("model.etn")          # or a Potential
    >>> atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Properties: ``energy``, ``free_energy`` (the same: the model has no electronic entropy),
``energies`` (per atom), ``forces`` and, for cells with volume, ``stress`` (ASE sign and Voigt order).

With ``gamma=True`` the calculator also returns ``gamma``, the extrapolation grade of every atom
(:mod:`etn.fitting.grade`; γ ≤ 1 inside the training data, > 2 extrapolating, > 10 unreliable), from the
active set beside the model file (``model.aset``) or the one passed as ``active_set``. With the C
backends the rows come from the same pass of the kernels as the forces (``etn_compute_graded``), so
grades cost little (``benchmarks/grade.py`` measures it). ``calc.gamma_max`` keeps the largest γ seen.

The first time two atoms come closer than the spec's ``r_min`` (below the fitted range, where the
radial basis is extrapolated) the calculator issues an :class:`~etn.io.neighbors.ExtrapolationWarning`
naming them; ``calc.shortest`` keeps the shortest distance seen (Å).
"""

from __future__ import annotations

import warnings

from ase.calculators.calculator import Calculator as _ASECalculator
from ase.calculators.calculator import PropertyNotImplementedError, all_changes

from ..io.neighbors import ExtrapolationWarning, NeighborCache
from ..potential import Potential


class Calculator(_ASECalculator):
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "gamma"]

    def __init__(self, model, backend: str | None = None, skin: float = 0.5, gamma: bool = False,
                 active_set=None, **kwargs):
        """``model``: a :class:`Potential` or a model file; ``backend``: ``'c'`` (default), ``'c-float32'``,
        ``'cuda'``, ``'cuda-float32'``, ``'auto'`` (CUDA when a GPU, cupy and nvcc are present) or
        ``'numpy'``; ``skin`` (Å): the neighbour list covers ``r_cut + skin`` and is rebuilt only when an
        atom moved more than ``skin / 2`` (or the cell or species changed); ``gamma``: also compute the
        per-atom extrapolation grade ``gamma``, from ``active_set`` (an :class:`~etn.fitting.grade.ActiveSet` or
        its file; default: ``model.aset`` beside the model file)."""
        super().__init__(**kwargs)
        self.potential = model if isinstance(model, Potential) else Potential.load(model)
        self.backend = backend or self.potential.backend
        self.neighbors = NeighborCache(self.potential.spec, skin)
        self.shortest = float("inf")  # shortest interatomic distance seen, Å
        self.grader = None
        self.gamma_max = 0.0  # largest extrapolation grade seen
        if gamma or active_set is not None:
            from ..fitting.grade import ActiveSet, Grader, sidecar

            if active_set is None or not isinstance(active_set, ActiveSet):
                if active_set is None and isinstance(model, Potential):
                    raise ValueError("gamma=True with a Potential needs active_set= (an ActiveSet or its file)")
                active_set = ActiveSet.load(active_set if active_set is not None else sidecar(model), self.potential)
            self.grader = Grader(self.potential, active_set, backend="numpy" if self.backend == "numpy" else "c")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties
        if want_stress and self.atoms.cell.rank < 3:
            raise PropertyNotImplementedError("stress needs a cell with non-zero volume")
        if "gamma" in properties and self.grader is None:
            raise PropertyNotImplementedError("gamma needs etn.Calculator(model, gamma=True) and the model's "
                                              "active set (`etn activeset MODEL TRAINING_FILES...`)")
        fused = self.grader is not None and self.grader.fused  # grades from the same pass as the forces
        res = self.potential.evaluate(self.atoms, forces=True, stress=self.atoms.cell.rank == 3,
                                      backend=self.backend, neighbors=self.neighbors,
                                      active_set=self.grader.aset if fused else None)
        res.pop("virial", None)
        if self.grader is not None:
            if not fused:
                res["gamma"] = self.grader.atoms(self.atoms)
            self.gamma_max = max(self.gamma_max, float(res["gamma"].max(initial=0.0)))
        self.results.update(res)
        self._check_r_min()

    def _check_r_min(self):
        closest, r_min = self.neighbors.closest, self.potential.spec.r_min
        if closest is None or closest[2] >= self.shortest:
            return
        if self.shortest >= r_min > closest[2]:  # once: MD can sit below r_min for many steps
            warnings.warn(f"atoms {closest[0]} and {closest[1]} are {closest[2]:.3f} Å apart, below the model's "
                          f"r_min ({r_min:g} Å): the radial basis is extrapolated there and energies and forces "
                          f"are not reliable (warned once per calculator; calc.shortest keeps the shortest "
                          f"distance seen)", ExtrapolationWarning, stacklevel=2)
        self.shortest = closest[2]
