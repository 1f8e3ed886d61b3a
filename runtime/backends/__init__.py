"""Evaluation and design-row backends of a schedule: the numpy reference (``reference``, ``design``),
rendering (``codegen``) and the compile cache (``build``), the C (``cbackend``, ``cdesign``) and CUDA
(``cuda``) libraries."""

from .. import ROOMS, lazy_modules

__getattr__ = lazy_modules(__name__, ROOMS['backends'])
