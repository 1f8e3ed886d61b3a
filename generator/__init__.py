"""Symbolic layer: spec -> exact real spherical harmonics and CG -> contraction schedule.

Pure: sympy and numpy only; no compiler, no atoms. See ``DESIGN.md`` section 1 for the model.
"""

from .cg import admissible, real_cg, real_cg_dense
from .errors import EtnError
from .schedule import ORDERS, Schedule, cached_schedule, schedule
from .spec import Irreps, Spec, SpecError
from .sph import complex_to_real, solid_harmonic, solid_harmonic_grad

__all__ = ["ORDERS", "EtnError", "Irreps", "Schedule", "Spec", "SpecError", "admissible", "cached_schedule", "complex_to_real", "real_cg",
           "real_cg_dense", "schedule", "solid_harmonic", "solid_harmonic_grad"]
