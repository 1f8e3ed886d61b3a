"""Workflows behind the commands: ``etn fit`` (``train``), the active-learning loop (``learn``), the
bundled example (``example``)."""

from .. import ROOMS, lazy_modules

__getattr__ = lazy_modules(__name__, ROOMS['workflows'])
