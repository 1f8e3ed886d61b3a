"""Hosts that run a potential: the ASE calculator (``calculator``) and the LAMMPS plugin (``lammps``)."""

from .. import ROOMS, lazy_modules

__getattr__ = lazy_modules(__name__, ROOMS['hosts'])
