"""MPI for fitting: ``mpiexec -n N etn fit fit.toml`` splits the configurations over the ranks.

Each rank computes the design rows of its share of the configurations (every N-th, from its rank on)
and accumulates its part of the normal equations; one sum over the ranks per solve combines them,
rank 0 solves and sends the solution to all, and writes the outputs. Losses are summed the same way.
Without ``mpiexec`` (or with one rank) nothing of this is imported and the fit runs as always.

The communication per solve is the normal matrix of the group being solved (n² numbers) and n + 1
more: :attr:`World.sent` counts the bytes this rank contributed to sums and :attr:`World.calls` the
sums, for the benchmark (``benchmarks/mpi_fit.py``).
"""

from __future__ import annotations

import os

import numpy as np

from ..generator.errors import EtnError

#: Environment variables through which launchers (MPICH/Hydra and Slurm's PMI, Open MPI, PMIx) tell a
#: process that it is one of several MPI ranks.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
_RANK_VARS = ("PMIX_RANK",)


class Serial:
    """One process: the operations of :class:`World` as identities."""

    rank, size, local_size = 0, 1, 1
    sent = calls = 0

    def sum(self, x):
        return x

    def min(self, x: float) -> float:
        return x

    def bcast(self, x):
        return x

    def share(self, items: list) -> list:
        return items


class World(Serial):
    """The ranks of ``MPI.COMM_WORLD`` (mpi4py)."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError:
            raise EtnError("this process was started by mpiexec but mpi4py is not installed; install it with "
                           "pip install 'etn[mpi]' (mpi4py and mpich), or run without mpiexec") from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_size = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()  # ranks on this node
        self.sent = self.calls = 0

    def sum(self, x):
        """The sum over the ranks of a number or an array (every rank gets it)."""
        self.calls += 1
        if np.isscalar(x):
            self.sent += 8
            return self.comm.allreduce(float(x), op=self.MPI.SUM)
        a = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty_like(a)
        self.comm.Allreduce(a, out, op=self.MPI.SUM)
        self.sent += a.nbytes
        return out

    def min(self, x: float) -> float:
        return self.comm.allreduce(float(x), op=self.MPI.MIN)

    def bcast(self, x):
        """Rank 0's value on every rank (any picklable value; the others may pass None)."""
        return self.comm.bcast(x, root=0)

    def share(self, items: list) -> list:
        """This rank's share of ``items``: every size-th from its rank on (configurations of all sizes
        spread evenly)."""
        return items[self.rank::self.size]


def launched_by_mpi() -> bool:
    """Whether a launcher started this process as one of several MPI ranks."""
    for var in _SIZE_VARS:
        v = os.environ.get(var)
        if v and v.isdigit() and int(v) > 1:
            return True
    return any(var in os.environ for var in _RANK_VARS)


_world = None


def world():
    """:class:`World` under ``mpiexec -n N`` with N > 1, else :class:`Serial` (mpi4py never imported)."""
    global _world
    if _world is None:
        _world = World() if launched_by_mpi() else Serial()
    return _world
