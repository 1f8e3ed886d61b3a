"""Input and output: neighbour pairs of atoms (``neighbors``), model files (``modelfile``), training
data (``dataset``), error tables and plots (``metrics``), views of a schedule (``report``)."""

from .. import ROOMS, lazy_modules

__getattr__ = lazy_modules(__name__, ROOMS['io'])
