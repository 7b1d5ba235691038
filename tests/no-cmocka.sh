#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Stands in for the unit tests when configure found no cmocka: fail loudly.
echo "cmocka was not found at configure time, so the unit tests were not built." >&2
echo "Install it (Debian: apt-get install libcmocka-dev) and re-run configure." >&2
exit 1
