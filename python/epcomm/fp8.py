# SPDX-License-Identifier: BSD-3-Clause
"""The FP8 payload's cast (docs/FP8.md), the same the library applies in
dispatch(payload="fp8"): e4m3 with one float32 scale per 128 elements of a
row, x ~= q x scale.  torch 1.13 has no float8 dtype, so e4m3 values travel
as torch.uint8 tensors holding their bits."""
import torch

from ._lib import lib
from ._tensors import dtype_code
from .errors import check, EpcInvalidArgument

BLOCK = 128  # elements per scale


def _rows(t, name, dtype=None):
    if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.device.type != "cpu":
        raise EpcInvalidArgument("%s must be a 2-D CPU tensor" % name)
    if dtype is not None and t.dtype != dtype:
        raise EpcInvalidArgument("%s.dtype = %s, expected %s" % (name, t.dtype, dtype))
    return t.detach()


def _row_stride(t, name):
    """Bytes between rows of a row-major view (rows may be strided)."""
    if t.stride(1) != 1:
        raise EpcInvalidArgument("%s must have contiguous rows (stride(1) == 1)" % name)
    return t.stride(0) * t.element_size()


def fp8_quantize(x, ue8m0=False):
    """(q, scales) of x.

    Args:
        x: [rows, hidden] bfloat16, float16 or float32 (CPU); hidden a
            multiple of 128.
        ue8m0 (bool): scales rounded up to powers of two (DeepEP's UE8M0).

    Returns:
        q: uint8 [rows, hidden], the e4m3 bits (round to nearest even,
        saturated at +-448, NaN kept); scales: float32 [rows, hidden/128],
        each max |x| of its block (at least 1e-4) / 448.
    """
    x = _rows(x, "x").contiguous()
    rows, hidden = x.shape
    if hidden % BLOCK:
        raise EpcInvalidArgument("x has hidden = %d, not a multiple of %d" % (hidden, BLOCK))
    q = torch.empty((rows, hidden), dtype=torch.uint8)
    s = torch.empty((rows, hidden // BLOCK), dtype=torch.float32)
    check(lib.epc_fp8_quantize(x.data_ptr(), dtype_code(x.dtype), rows, hidden, int(ue8m0),
                               q.data_ptr(), hidden, s.data_ptr(), s.stride(0) * 4))
    return q, s


def fp8_dequantize(q, scales, dtype=torch.bfloat16):
    """q x scales as a [rows, hidden] tensor of dtype (rounded to nearest
    even).  q: uint8 [rows, hidden] (rows may be strided, as dispatch's
    received views are); scales: float32 [rows, hidden/128]."""
    q = _rows(q, "q", torch.uint8)
    scales = _rows(scales, "scales", torch.float32)
    rows, hidden = q.shape
    if tuple(scales.shape) != (rows, hidden // BLOCK):
        raise EpcInvalidArgument("scales.shape = %s, expected [%d, %d]"
                                 % (list(scales.shape), rows, hidden // BLOCK))
    y = torch.empty((rows, hidden), dtype=dtype)
    if rows == 0:
        return y
    check(lib.epc_fp8_dequantize(q.data_ptr(), _row_stride(q, "q"), scales.data_ptr(),
                                 _row_stride(scales, "scales"), rows, hidden, dtype_code(dtype),
                                 y.data_ptr()))
    return y
