#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Regenerates the build system. Plain `autoreconf` misses depcomp and
# test-driver, hence -fi.
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
exec autoreconf -fi
