# SPDX-License-Identifier: BSD-3-Clause
"""epcomm for PyTorch: expert-parallel dispatch and combine over MPI.

    import torch, epcomm
    with epcomm.Context(hidden=H, num_experts=E, dtype=torch.bfloat16) as ep:
        recv_x, recv_w, info, counts, handle = ep.dispatch(x, topk_idx, topk_weights)
        y, _ = ep.combine(expert_out, handle)

Pure Python over libepcomm (ctypes); see docs/PYTHON.md.  `library_path`
and `library_found_by` say which library was loaded and how it was found
(EPCOMM_LIBRARY, the build tree, the install prefix, pkg-config or the
system's search path).
"""
from ._lib import path as library_path, found_by as library_found_by, lib as _clib
from .errors import EpcError, EpcInvalidArgument, EpcNoMemory, EpcUnsupported, EpcTimeout, \
    EpcMismatch, EpcPeerFailed, EpcTransport, EpcTopology, EpcCapacity, EpcInternal
from .context import Context, Handle, Request, RecvInfo
from .router import Router, DispatchLayout, get_dispatch_layout
from .placement import Placement
from .fp8 import fp8_quantize, fp8_dequantize
from ._tensors import ReceivedTensor
from . import autograd
from .autograd import EPDispatch, EPCombine, MoE

__version__ = _clib.epc_get_version(None, None, None).decode()

__all__ = ["Context", "Handle", "Request", "RecvInfo", "Router", "DispatchLayout",
           "get_dispatch_layout", "Placement", "ReceivedTensor", "EPDispatch", "EPCombine", "MoE",
           "autograd", "EpcError", "EpcInvalidArgument", "EpcNoMemory", "EpcUnsupported",
           "EpcTimeout", "EpcMismatch", "EpcPeerFailed", "EpcTransport", "EpcTopology",
           "EpcCapacity", "EpcInternal", "library_path", "library_found_by", "fp8_quantize",
           "fp8_dequantize"]
