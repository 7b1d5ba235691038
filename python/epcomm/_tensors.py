# SPDX-License-Identifier: BSD-3-Clause
"""Tensors over library memory: dtype codes, typed copies of C arrays, and
ReceivedTensor, a zero-copy view that checks, each time torch touches it,
that the library has not reused its memory since."""
import ctypes

import torch

from .errors import EpcInvalidArgument

# torch dtype -> epc_dtype_t
DTYPES = {torch.bfloat16: 1, torch.float16: 2, torch.float32: 3}


def dtype_code(dtype):
    if dtype not in DTYPES:
        raise EpcInvalidArgument("dtype = %s (torch.bfloat16, torch.float16 or torch.float32)"
                                 % dtype)
    return DTYPES[dtype]


def from_address(address, count, dtype):
    """A tensor of `count` elements over library memory at `address` (no copy)."""
    if count == 0 or not address:
        return torch.empty(0, dtype=dtype)
    nbytes = count * torch.empty(0, dtype=dtype).element_size()
    buf = (ctypes.c_char * nbytes).from_address(address)
    return torch.frombuffer(buf, dtype=dtype, count=count)


def copy_array(pointer, count, dtype):
    """A tensor owning a copy of `count` elements of a C array (a plain
    memmove: no torch kernel, so no per-op dispatch cost and no intra-op
    threads woken for a copy of metadata)."""
    t = torch.empty(count, dtype=dtype)
    if count:
        ctypes.memmove(t.data_ptr(), pointer, count * t.element_size())
    return t


def pointer(t):
    """The address of a contiguous tensor's first element (None when empty)."""
    return t.data_ptr() if t is not None and t.numel() > 0 else None


class Guard:
    """What a ReceivedTensor checks: its memory [begin, end) belongs to the
    dispatch numbered `seq` of `owner`, valid while owner.view_valid(seq)."""
    __slots__ = ("owner", "seq", "begin", "end", "what")

    def __init__(self, owner, seq, begin, nbytes, what):
        self.owner, self.seq, self.begin, self.end, self.what = owner, seq, begin, \
            begin + nbytes, what

    def check(self):
        reason = self.owner.view_invalid_reason(self.seq)
        if reason is not None:
            raise EpcInvalidArgument(
                "%s of dispatch %d was invalidated: %s (its memory is the library's and "
                "has been reused; pass copy=True to dispatch, or .clone() it in time)"
                % (self.what, self.seq, reason))

    def holds(self, t):
        return self.begin <= t.data_ptr() < self.end


# What reads no element: allowed on an invalidated view (its metadata stays).
_METADATA = {torch.Tensor.size, torch.Tensor.dim, torch.Tensor.numel, torch.Tensor.stride,
             torch.Tensor.is_contiguous, torch.Tensor.element_size, torch.Tensor.__len__}
_METADATA |= {getattr(torch.Tensor, p).__get__ for p in (
    "shape", "dtype", "device", "ndim", "layout", "requires_grad", "is_leaf", "grad_fn")}


def _walk(obj, found):
    if isinstance(obj, ReceivedTensor):
        found.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _walk(o, found)
    elif isinstance(obj, dict):
        for o in obj.values():
            _walk(o, found)


def _rewrap(ret, guards):
    """Outputs that still point into a guarded region stay guarded (views,
    slices, in-place results); everything else is a plain tensor."""
    if isinstance(ret, torch.Tensor) and not isinstance(ret, ReceivedTensor):
        if ret.layout == torch.strided and ret.numel() > 0:
            for g in guards:
                if g.holds(ret):
                    return ReceivedTensor.wrap(ret, g)
        return ret
    if isinstance(ret, tuple) and not hasattr(ret, "_fields"):
        return tuple(_rewrap(r, guards) for r in ret)
    if isinstance(ret, list):
        return [_rewrap(r, guards) for r in ret]
    return ret


class ReceivedTensor(torch.Tensor):
    """Rows a dispatch received, left in the library's buffers (no copy).

    Any torch operation on it (or on a view of it) first checks that the
    library has not reused the memory: after the second dispatch that
    follows, or once the context is closed, it raises EpcInvalidArgument
    instead of reading another dispatch's rows.  Results of computations
    are ordinary tensors.  Autograd keeps tensors without asking, so the
    autograd functions receive copies instead (epcomm.autograd).
    """

    @staticmethod
    def wrap(t, guard):
        r = torch.Tensor._make_subclass(ReceivedTensor, t)
        r._epc_guard = guard
        return r

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _METADATA:
            with torch._C.DisableTorchFunction():
                return func(*args, **kwargs)
        found = []
        _walk(args, found)
        _walk(kwargs, found)
        guards = []
        for t in found:
            g = t.__dict__.get("_epc_guard")
            if g is not None:
                g.check()
                guards.append(g)
        with torch._C.DisableTorchFunction():
            ret = func(*args, **kwargs)
        return _rewrap(ret, guards)


def combine_out(out, tokens, hidden, dtype):
    """A combine's y: out when it is a contiguous [tokens, hidden] tensor of
    dtype, a new one when out is None, else EpcInvalidArgument."""
    y = out if out is not None else torch.empty((tokens, hidden), dtype=dtype)
    if not isinstance(y, torch.Tensor) or y.dtype != dtype or \
            tuple(y.shape) != (tokens, hidden) or not y.is_contiguous():
        raise EpcInvalidArgument("out must be a contiguous [%d, %d] %s tensor"
                                 % (tokens, hidden, dtype))
    return y


def check_rows(t, name, rows, hidden, dtype):
    """t as a contiguous [rows, hidden] tensor of dtype, or EpcInvalidArgument."""
    if not isinstance(t, torch.Tensor):
        raise EpcInvalidArgument("%s must be a tensor, not %s" % (name, type(t).__name__))
    if t.device.type != "cpu":
        raise EpcInvalidArgument("%s is on %s (epcomm moves host memory)" % (name, t.device))
    if t.dtype != dtype:
        raise EpcInvalidArgument("%s.dtype = %s, the context's is %s" % (name, t.dtype, dtype))
    if tuple(t.shape) != (rows, hidden):
        raise EpcInvalidArgument("%s.shape = %s, expected [%d, %d]" % (
            name, list(t.shape), rows, hidden))
    return t.detach().contiguous()
