#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# `pip install --no-build-isolation ./python` in a virtual environment made
# with --system-site-packages, with no package index: the package installs,
# imports from the environment, loads the library EPCOMM_LIBRARY names and
# says so; without any way to find the library, import fails saying how to
# name it.
set -e
py_modules="venv, ensurepip, torch"
. "$top_srcdir/tests/python/env.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$top_srcdir/python" "$tmp/src"
rm -rf "$tmp/src/epcomm/__pycache__" "$tmp/src/epcomm/_prefix.py"
"$PYTHON" -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --no-index --no-build-isolation "$tmp/src"
cd "$tmp"
unset PYTHONPATH
EPCOMM_LIBRARY=$top_builddir/.libs/libepcomm.so "$tmp/venv/bin/python" -c '
import sys, epcomm
assert epcomm.__file__.startswith(sys.prefix), epcomm.__file__
assert epcomm.library_found_by == "EPCOMM_LIBRARY", epcomm.library_found_by
print("installed", epcomm.__version__, "at", epcomm.__file__, "loading", epcomm.library_path)
'
# pyproject.toml's version is the library's
want=$(EPCOMM_LIBRARY=$top_builddir/.libs/libepcomm.so "$tmp/venv/bin/python" -c \
    'import epcomm; print(epcomm.__version__)')
grep -q "^version = \"$want\"" "$top_srcdir/python/pyproject.toml" || {
    echo "FAIL: python/pyproject.toml's version is not the library's $want"
    exit 1
}
# Nothing to find the library by (pkg-config and the loader search nothing
# of it unless installed): a clear ImportError.
if out=$(PKG_CONFIG_PATH=/nonexistent PKG_CONFIG_LIBDIR=/nonexistent \
    "$tmp/venv/bin/python" -c 'import epcomm; print(epcomm.library_found_by)' 2>&1); then
    case $out in
    *"system's library search path"* | *pkg-config*) echo "found an installed copy: $out" ;;
    *) echo "FAIL: imported without a library: $out"; exit 1 ;;
    esac
else
    echo "$out" | grep -q "EPCOMM_LIBRARY" || { echo "FAIL: unclear error: $out"; exit 1; }
    echo "without a library: $(echo "$out" | tail -n 1)"
fi
