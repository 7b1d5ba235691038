# SPDX-License-Identifier: BSD-3-Clause
"""Request: a call in flight on a context (the C epc_request_t), shared by
the normal and the low-latency calls."""
import ctypes

from ._lib import lib
from .errors import check, error_for


class Request:
    """A dispatch or combine in flight (async_op=True).  wait() returns what
    the blocking call returns, or raises its exception; test() says whether
    it finished without waiting.  Its inputs must not change until then."""

    def __init__(self, ctx, ptr, finish, keep, local_error=None):
        self.ctx, self._ptr, self._finish, self._keep = ctx, ptr, finish, keep
        self._local_error = local_error
        self._result, self._error, self.done = None, None, False
        ctx._requests.add(self)

    def _complete(self, status):
        self.done = True
        text = lib.epc_last_error(self.ctx._ptr).decode(errors="replace") if status < 0 else ""
        lib.epc_request_free(self._ptr)
        self._ptr = None
        self.ctx._requests.discard(self)
        if self._local_error is not None:
            self._error = self._local_error
        elif status < 0:
            self._error = error_for(status, text)
        else:
            self._result = self._finish()
        self._keep = self._finish = None

    def test(self):
        """Advances the context's requests; True once this one finished."""
        if not self.done:
            done = ctypes.c_int(0)
            check(lib.epc_test(self._ptr, ctypes.byref(done)), self.ctx._ptr)
            if done.value:
                st = lib.epc_wait(self._ptr)  # finished: returns its status at once
                self._complete(st)
        return self.done

    def wait(self):
        """Waits (within the context's timeout) and returns the call's result."""
        if not self.done:
            self._complete(lib.epc_wait(self._ptr))
        if self._error is not None:
            raise self._error
        return self._result
