"""Fitting: alternating least squares over the cores (``fit``), extrapolation grades and active sets
(``grade``), MPI (``parallel``)."""

from .. import ROOMS, lazy_modules

__getattr__ = lazy_modules(__name__, ROOMS['fitting'])
