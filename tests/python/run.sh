#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Runs a Python test of the package under mpirun, from the build tree:
#   tests/python/run.sh NP SCRIPT [ARGS...]   (SCRIPT "-m": ARGS start with a module)
# NP ranks of $PYTHON (configure's) running SCRIPT (relative to the source
# tree) with the package on PYTHONPATH and the just-built library named by
# EPCOMM_LIBRARY.  NP "-": SCRIPT runs once, without mpirun.  Skips (77)
# only in a build configured --disable-python; a Python without torch or
# mpi4py fails, saying what to install (tests/python/env.sh, which also
# preloads the sanitizers in a sanitizer build).
np=$1 script=$2
shift 2
py_modules="torch, mpi4py, numpy"
. "$top_srcdir/tests/python/env.sh"
PYTHONPATH=$top_srcdir/python${PYTHONPATH:+:$PYTHONPATH}
EPCOMM_LIBRARY=$top_builddir/.libs/libepcomm.so
export PYTHONPATH EPCOMM_LIBRARY
# torch's own threads would oversubscribe the cores further
export OMP_NUM_THREADS=1
case $script in
-m) set -- -m "$@" ;; # SCRIPT "-m": the next argument is a module to run
*) set -- "$top_srcdir/$script" "$@" ;;
esac
if [ "$np" = - ]; then
    exec "$PYTHON" "$@"
fi
exec "$EPC_MPIRUN" "$np" "$PYTHON" "$@"
