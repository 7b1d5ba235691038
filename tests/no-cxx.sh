#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Stands in for the C++ header test when configure found no C++ compiler.
echo "SKIP: no working C++ compiler (Debian: apt-get install g++); header not checked as C++" >&2
exit 77
