#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The MoE layer example on 4 ranks as 2 virtual nodes (node limit 1) must
# match its single-rank reference within bf16 rounding.
unset EPC_TRANSPORT EPC_OFI_PROVIDER EPC_ALGO
export EPC_RANKS_PER_NODE=2
exec "$EPC_MPIRUN" 4 "$top_builddir/examples/moe_layer" -t 48 -H 96 -F 64
