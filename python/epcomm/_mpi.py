# SPDX-License-Identifier: BSD-3-Clause
"""MPI through the library libepcomm links: initialised here when the caller
has not (mpi4py does it on import), finalised at exit only if initialised
here; and the Fortran handle of an mpi4py communicator."""
import atexit
import ctypes

from ._lib import lib

THREAD_FUNNELED, THREAD_MULTIPLE = 1, 3  # the MPI standard's levels (Open MPI and MPICH)
_NAMES = {0: "MPI_THREAD_SINGLE", 1: "MPI_THREAD_FUNNELED", 2: "MPI_THREAD_SERIALIZED",
          3: "MPI_THREAD_MULTIPLE"}


def _flag(fn):
    v = ctypes.c_int(0)
    if getattr(lib, fn)(ctypes.byref(v)) != 0:
        raise RuntimeError("epcomm: %s failed" % fn)
    return bool(v.value)


def thread_level():
    """The thread level MPI was initialised with."""
    v = ctypes.c_int(0)
    lib.MPI_Query_thread(ctypes.byref(v))
    return v.value


def ensure_initialized(required=THREAD_FUNNELED):
    """Initialises MPI at `required` unless it already runs; returns the level
    provided.  RuntimeError once MPI was finalised."""
    if _flag("MPI_Finalized"):
        raise RuntimeError("epcomm: MPI was already finalised")
    if not _flag("MPI_Initialized"):
        provided = ctypes.c_int(0)
        if lib.MPI_Init_thread(None, None, required, ctypes.byref(provided)) != 0:
            raise RuntimeError("epcomm: MPI_Init_thread failed")
        atexit.register(_finalize)
    return thread_level()


def _finalize():
    if _flag("MPI_Initialized") and not _flag("MPI_Finalized"):
        lib.MPI_Finalize()


def level_name(level):
    return _NAMES.get(level, str(level))


def fortran_handle(comm):
    """A ctypes int holding comm's MPI_Fint (mpi4py's py2f()), or None for
    MPI_COMM_WORLD.  TypeError for anything else."""
    if comm is None:
        return None
    py2f = getattr(comm, "py2f", None)
    if py2f is None:
        raise TypeError("epcomm: comm must be an mpi4py communicator or None, not %s"
                        % type(comm).__name__)
    return ctypes.c_int(py2f())
