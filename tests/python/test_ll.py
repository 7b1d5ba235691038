# SPDX-License-Identifier: BSD-3-Clause
"""The low-latency mode through the Python package under mpirun: every
received row, count and source against a reference built from every rank's
inputs (regenerated on each rank), combine against a sum in the promised
order, FP8 rows against epcomm.fp8_quantize, the hooks, two dispatches in
flight, outputs from the library's buffer (zero copy) and from a tensor of
the caller's, T = 0 on a rank, a bad input on one rank reaching the others
(dispatch's x; combine's x, out and handle).

    mpirun -np N python3 tests/python/test_ll.py [--ranks-per-node L] [--transport mpi|ofi]
"""
import argparse

import torch
from mpi4py import MPI

import epcomm

comm = MPI.COMM_WORLD
RANK, SIZE = comm.Get_rank(), comm.Get_size()
EPR, H, K, MAXT = 3, 256, 4, 8
E = EPR * SIZE


def inputs(call):
    """Every rank's (x, topk_idx, topk_weights) of a call, the same on all
    ranks; rank 1 has no tokens, rank 0 a full buffer."""
    g = torch.Generator().manual_seed(1000 + call)
    out = []
    for r in range(SIZE):
        T = 0 if r == 1 % SIZE and SIZE > 1 else (MAXT if r == 0 else 1 + r % MAXT)
        x = torch.randn(T, H, generator=g).to(torch.bfloat16)
        idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)]) if T else \
            torch.empty(0, K, dtype=torch.int64)
        if T:
            idx[::2, K - 1] = -1
        w = torch.rand(T, K, generator=g)
        out.append((x, idx, w))
    return out


def expected_rows(data, e):
    """[(src, token)] of local expert e of this rank, by source then token."""
    g = RANK * EPR + e
    return [(s, t) for s, (_, idx, _) in enumerate(data) for t in range(idx.shape[0])
            if g in idx[t].tolist()]


def check_dispatch(data, recv_x, recv_count, h, fp8):
    for e in range(EPR):
        rows = expected_rows(data, e)
        assert int(recv_count[e]) == len(rows), (e, int(recv_count[e]), len(rows))
        for s in range(SIZE):
            mine = [t for (src, t) in rows if src == s]
            assert int(h.src_count[e, s]) == len(mine), (e, s)
            for i, t in enumerate(mine):
                slot = s * MAXT + i
                assert int(h.src_token[e, slot]) == t
                src = data[s][0][t]
                if fp8:
                    q, sc = epcomm.fp8_quantize(src.view(1, H))
                    assert torch.equal(recv_x[0][e, slot], q[0]), (e, s, t)
                    assert torch.equal(recv_x[1][e, slot], sc[0]), (e, s, t)
                else:
                    assert torch.equal(recv_x[e, slot], src), (e, s, t)


def experts(recv_x, h, dst):
    """out = row x (g % 5 + 1) where a row is."""
    for e in range(EPR):
        for s in range(SIZE):
            n = int(h.src_count[e, s])
            rows = recv_x[e, s * MAXT:s * MAXT + n].float()
            dst[e, s * MAXT:s * MAXT + n] = (rows * ((RANK * EPR + e) % 5 + 1)).to(dst.dtype)


def reference_y(x, idx, w):
    y = torch.zeros(x.shape[0], H, dtype=torch.float32)
    for t in range(x.shape[0]):
        acc = torch.zeros(H, dtype=torch.float32)
        for g in sorted(v for v in idx[t].tolist() if v >= 0):
            j = idx[t].tolist().index(g)
            out = (x[t].float() * (g % 5 + 1)).to(torch.bfloat16).float()
            acc += w[t, j] * out
        y[t] = acc
    return y.to(torch.bfloat16)


def one_call(ep, call, fp8=False, zero_copy=True, hook=False):
    data = inputs(call)
    x, idx, w = data[RANK]
    res = ep.low_latency_dispatch(x, idx, use_fp8=fp8, return_recv_hook=hook)
    recv_x, recv_count, h = res() if hook else res
    check_dispatch(data, recv_x, recv_count, h, fp8)
    if fp8:
        return
    dst = ep.get_next_low_latency_combine_buffer(h) if zero_copy else \
        torch.zeros(EPR, SIZE * MAXT, H, dtype=torch.bfloat16)
    experts(recv_x, h, dst)
    y = ep.low_latency_combine(dst, w, h, return_recv_hook=hook)
    y = y() if hook else y
    ref = reference_y(x, idx, w)
    assert y.view(torch.int16).eq(ref.view(torch.int16)).logical_or(
        (y == 0) & (ref == 0)).all(), "call %d: combine differs" % call


def two_in_flight(ep, call):
    """Microbatch a's dispatch hook after b's dispatch was sent."""
    da, db = inputs(call), inputs(call + 1)
    ha = ep.low_latency_dispatch(da[RANK][0], da[RANK][1], return_recv_hook=True)
    hb = ep.low_latency_dispatch(db[RANK][0], db[RANK][1], return_recv_hook=True)
    for d, hook in ((da, ha), (db, hb)):
        recv_x, recv_count, h = hook()
        check_dispatch(d, recv_x, recv_count, h, False)
        dst = ep.get_next_low_latency_combine_buffer(h)
        experts(recv_x, h, dst)
        y = ep.low_latency_combine(dst, d[RANK][2], h)
        ref = reference_y(*d[RANK])
        assert y.view(torch.int16).eq(ref.view(torch.int16)).logical_or(
            (y == 0) & (ref == 0)).all()


def bad_input(ep):
    """x of the wrong shape on rank 1 only: it raises EpcInvalidArgument,
    the others EpcPeerFailed naming it; the mode works afterwards."""
    x, idx, _ = inputs(99)[RANK]
    bad = 1 % SIZE
    if RANK == bad:
        x = torch.zeros(x.shape[0] + 1, H + 1, dtype=torch.bfloat16)
    try:
        ep.low_latency_dispatch(x, idx if idx.shape[0] else torch.zeros(1, K, dtype=torch.int64))
        raise AssertionError("a bad x on rank %d went through" % bad)
    except epcomm.EpcInvalidArgument:
        assert RANK == bad
    except epcomm.EpcPeerFailed as e:
        assert RANK != bad and ("rank %d" % bad) in str(e), str(e)


def bad_combine(ep, call, what):
    """On rank 0 (it has tokens) one combine argument is wrong, `what`:
    "out" or "x" of the wrong shape, or a "handle" that is not one.  It raises
    EpcInvalidArgument naming it; the others, who passed theirs, raise
    EpcPeerFailed naming rank 0 (they do not wait for it until the
    deadline); the mode works afterwards."""
    x, idx, w = inputs(call)[RANK]
    recv_x, _, h = ep.low_latency_dispatch(x, idx)
    dst = ep.get_next_low_latency_combine_buffer(h)
    experts(recv_x, h, dst)
    handle, out, eo = h, None, dst
    if RANK == 0 and what == "out":
        out = torch.empty(x.shape[0] + 1, H, dtype=torch.bfloat16)
    elif RANK == 0 and what == "x":
        eo = dst[:1]
    elif RANK == 0:
        handle = "not a handle"
    try:
        ep.low_latency_combine(eo, w, handle, out=out)
        raise AssertionError("a bad %s on rank 0 went through" % what)
    except epcomm.EpcInvalidArgument as e:
        assert RANK == 0 and what in str(e), str(e)
    except epcomm.EpcPeerFailed as e:
        assert RANK != 0 and "rank 0" in str(e), str(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks-per-node", type=int, default=0)
    ap.add_argument("--transport", default=None)
    a = ap.parse_args()
    with epcomm.Context(hidden=H, num_experts=E, max_topk=K, ranks_per_node=a.ranks_per_node,
                        transport=a.transport, log_level="off") as ep:
        assert ep.low_latency_buffer_size(MAXT) > 0
        assert ep.stats()["ll_transfer"] == ""
        if SIZE > 1:  # a non-int on rank 1: named there, the peers told, nothing enabled
            try:
                ep.enable_low_latency(str(MAXT) if RANK == 1 else MAXT)
                raise AssertionError("enable_low_latency('8') on rank 1 went through")
            except epcomm.EpcInvalidArgument as e:
                assert RANK == 1 and "max_tokens" in str(e), str(e)
            except epcomm.EpcPeerFailed as e:
                assert RANK != 1 and e.rank == 1, str(e)
        ep.enable_low_latency(MAXT)
        # between (virtual) nodes of this one host: writes over ofi (tcp),
        # two-sided messages over mpi; nothing on one node
        nodes = SIZE // a.ranks_per_node if a.ranks_per_node else 1
        want = "" if nodes == 1 else "write" if a.transport == "ofi" else "send"
        assert ep.stats()["ll_transfer"] == want, (ep.stats()["ll_transfer"], want)
        for call in range(4):
            one_call(ep, call, zero_copy=call % 2 == 0, hook=call >= 2)
        one_call(ep, 10, fp8=True)
        one_call(ep, 11)  # the set an un-combined FP8 dispatch left is usable again
        two_in_flight(ep, 20)
        bad_input(ep)
        one_call(ep, 30)
        if SIZE > 1:
            bad_combine(ep, 40, "out")
            one_call(ep, 41)
            bad_combine(ep, 42, "handle")
            one_call(ep, 43)
            bad_combine(ep, 44, "x")
            one_call(ep, 45)
    if RANK == 0:
        print("test_ll.py: all checks passed on %d ranks" % SIZE, flush=True)


if __name__ == "__main__":
    main()
