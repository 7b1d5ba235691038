#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Runs a Python test of the package under mpirun, from the build tree:
#   tests/python/run.sh NP SCRIPT [ARGS...]   (SCRIPT "-m": ARGS start with a module)
# NP ranks of $PYTHON (configure's) running SCRIPT (relative to the source
# tree) with the package on PYTHONPATH and the just-built library named by
# EPCOMM_LIBRARY.  NP "-": SCRIPT runs once, without mpirun.  Skips (77)
# only in a build configured --disable-python; a Python without torch or
# mpi4py fails, saying what to install.
np=$1 script=$2
shift 2
if [ "${EPC_HAVE_PYTHON:-no}" != yes ]; then
    echo "SKIP: configured without Python (--disable-python, or no python3 found)"
    exit 77
fi
"$PYTHON" -c 'import torch, mpi4py, numpy' || {
    echo "FAIL: $PYTHON cannot import torch, mpi4py and numpy (Debian: apt-get install" \
        "python3-torch python3-mpi4py python3-numpy; configure PYTHON=/usr/bin/python3)"
    exit 1
}
PYTHONPATH=$top_srcdir/python${PYTHONPATH:+:$PYTHONPATH}
EPCOMM_LIBRARY=$top_builddir/.libs/libepcomm.so
export PYTHONPATH EPCOMM_LIBRARY
# torch's own threads would oversubscribe the cores further
export OMP_NUM_THREADS=1
if [ "${EPC_SANITIZED:-no}" = yes ]; then
    # A sanitized libepcomm needs the sanitizer runtime loaded before the
    # interpreter starts, which this harness does not do yet; the package
    # is tested by the normal build's make check.
    echo "SKIP: the Python tests run in the non-sanitized build"
    exit 77
fi
case $script in
-m) set -- -m "$@" ;; # SCRIPT "-m": the next argument is a module to run
*) set -- "$top_srcdir/$script" "$@" ;;
esac
if [ "$np" = - ]; then
    exec "$PYTHON" "$@"
fi
exec "$EPC_MPIRUN" "$np" "$PYTHON" "$@"
