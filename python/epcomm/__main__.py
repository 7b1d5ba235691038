# SPDX-License-Identifier: BSD-3-Clause
"""python -m epcomm: which library the package loaded, and its build."""
import epcomm
from ._lib import lib, ABI_VERSION

b = lib.epc_get_build_info().contents
print("epcomm %s (package ABI %d)" % (epcomm.__version__, ABI_VERSION))
print("library: %s (found by %s)" % (epcomm.library_path, epcomm.library_found_by))
for f in ("mpi_compiled", "hwloc_runtime", "ofi_runtime"):
    print("%s: %s" % (f, getattr(b, f).decode()))
