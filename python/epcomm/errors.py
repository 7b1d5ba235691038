# SPDX-License-Identifier: BSD-3-Clause
"""One exception class per epc_status_t error, carrying the library's text.

    EpcError                 base (RuntimeError): .status, .name, .message
    EpcInvalidArgument       EPC_ERR_INVALID_ARG (also a ValueError)
    EpcNoMemory              EPC_ERR_NO_MEMORY (also a MemoryError)
    EpcUnsupported           EPC_ERR_UNSUPPORTED
    EpcTimeout               EPC_ERR_TIMEOUT (also a TimeoutError)
    EpcMismatch              EPC_ERR_MISMATCH
    EpcPeerFailed            EPC_ERR_PEER_FAILED: .rank, the rank named, or None
    EpcTransport             EPC_ERR_TRANSPORT
    EpcTopology              EPC_ERR_TOPOLOGY
    EpcCapacity              EPC_ERR_CAPACITY
    EpcInternal              EPC_ERR_INTERNAL
"""
import re

from ._lib import lib


class EpcError(RuntimeError):
    """A failed epcomm call: status (int), name ("EPC_ERR_TIMEOUT") and the
    library's text (epc_last_error), which names the argument or peer."""
    status = None

    def __init__(self, message, status=None):
        if status is not None:
            self.status = status
        self.name = lib.epc_status_name(self.status).decode()
        self.message = message
        super().__init__("%s: %s" % (self.name, message))


class EpcInvalidArgument(EpcError, ValueError):
    status = -1


class EpcNoMemory(EpcError, MemoryError):
    status = -2


class EpcUnsupported(EpcError):
    status = -3


class EpcTimeout(EpcError, TimeoutError):
    status = -4


class EpcMismatch(EpcError):
    status = -5


class EpcPeerFailed(EpcError):
    """A peer failed or aborted; .rank is the rank the text names (None when
    it names none)."""
    status = -6

    def __init__(self, message, status=None):
        super().__init__(message, status)
        # the failing rank ("rank R aborted ...", "rank R: <its error>"), not
        # a rank the text names as the one waited for
        for pattern in (r"\brank (\d+) aborted", r"\brank (\d+): ", r"\brank (\d+)"):
            m = re.search(pattern, message)
            if m:
                break
        self.rank = int(m.group(1)) if m else None


class EpcTransport(EpcError):
    status = -7


class EpcTopology(EpcError):
    status = -8


class EpcCapacity(EpcError):
    status = -9


class EpcInternal(EpcError):
    status = -10


_BY_STATUS = {c.status: c for c in (
    EpcInvalidArgument, EpcNoMemory, EpcUnsupported, EpcTimeout, EpcMismatch, EpcPeerFailed,
    EpcTransport, EpcTopology, EpcCapacity, EpcInternal)}


def _check_status_list():
    """Every error status the library knows has its class (ImportError if not)."""
    for value in range(-1, -64, -1):
        name = lib.epc_status_name(value).decode()
        if name == "EPC_UNKNOWN":
            return
        cls = _BY_STATUS.get(value)
        if cls is None:
            raise ImportError("epcomm: the library's status %s (%d) has no exception class"
                              % (name, value))


_check_status_list()


def error_for(status, message):
    """The exception for a negative status and its text."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        return EpcError(message, status)
    return cls(message)


def check(status, ctx_ptr=None):
    """Raises the status's exception (with epc_last_error's text of the
    context, else of this thread) unless status is EPC_OK or IN_PROGRESS."""
    if status >= 0:
        return status
    text = lib.epc_last_error(ctx_ptr).decode(errors="replace")
    raise error_for(status, text or lib.epc_status_string(status).decode())


def check_refused(status, local_error, ctx_ptr=None):
    """After a collective call made with a value the library refuses in
    place of an argument this rank refused (so that the peers were told):
    raises that argument's error (local_error) if there is one, else as
    check does."""
    if local_error is not None:
        raise local_error
    return check(status, ctx_ptr)
