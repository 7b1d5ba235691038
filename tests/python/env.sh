# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the Python test scripts: skips (exit 77) in a build configured
# --disable-python; fails, saying what to install, when $PYTHON (configure's)
# cannot import the modules $py_modules names; in a sanitizer build, preloads ASan
# and UBSan (of configure's compiler) for the interpreter, which is not built
# with them but loads the sanitized libepcomm.  Leaks are not checked there:
# the interpreter and torch keep what they allocate until exit.
if [ "${EPC_HAVE_PYTHON:-no}" != yes ]; then
    echo "SKIP: configured without Python (--disable-python, or no python3 found)"
    exit 77
fi
"$PYTHON" -c "import $py_modules" || {
    echo "FAIL: $PYTHON cannot import $py_modules (Debian: apt-get install python3-torch" \
        "python3-mpi4py python3-numpy python3-venv python3-pip; configure PYTHON=/usr/bin/python3)"
    exit 1
}
if [ "${EPC_SANITIZED:-no}" = yes ]; then
    LD_PRELOAD="$(${EPC_CC:-cc} -print-file-name=libasan.so):$(${EPC_CC:-cc} -print-file-name=libubsan.so)"
    ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export LD_PRELOAD ASAN_OPTIONS
fi
