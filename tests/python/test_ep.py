# SPDX-License-Identifier: BSD-3-Clause
"""The Python package under mpirun: forward and gradients of dispatch,
combine and the MoE layer against a single-process reference, finite
differences, both dtypes and algorithms, empty slots, alignment, T = 0 on a
rank, stale handles and invalidated views, a bad argument and an exception
on one rank reaching the others, async dispatch beside a matmul, the router
and layout, the ABI check.  Every rank checks its own values; any failure
raises, which aborts the job.

    mpirun -np N python3 tests/python/test_ep.py [--ranks-per-node L] [--transport mpi|ofi]
"""
import argparse
import ctypes
import sys
import time

import torch
from mpi4py import MPI

import epcomm
from epcomm import autograd as epa
from epcomm import _lib

comm = MPI.COMM_WORLD
RANK, SIZE = comm.Get_rank(), comm.Get_size()
E, H, K = 12, 16, 3
TOL = {torch.float32: 2e-5, torch.bfloat16: 3e-2}


def say(msg):
    if RANK == 0:
        print(msg, flush=True)


def tokens_of(rank):
    """Tokens per rank: differs, and the second rank has none."""
    return 0 if rank == 1 else 5 + 3 * rank


def inputs(seed, dtype):
    """Every rank's (x, topk_idx, topk_weights), identical on all ranks, with
    some empty (-1) slots and repeated experts avoided."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for r in range(SIZE):
        T = tokens_of(r)
        x = torch.randn(T, H, generator=g).to(dtype)
        idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)]) if T else \
            torch.empty(0, K, dtype=torch.int64)
        if T:
            idx[::3, K - 1] = -1  # an empty slot in every third token
        w = torch.rand(T, K, generator=g)
        out.append((x, idx, w))
    return out


def experts_all(dtype, seed=7, ffn=None):
    return [epa.make_expert(H, ffn, dtype, seed, e) for e in range(E)]


def reference(x, idx, w, experts):
    """y[t] = sum_j w[t,j] expert_idx[t,j](x[t]), computed token by token."""
    ys = []
    for t in range(x.shape[0]):
        acc = torch.zeros(H, dtype=torch.float32)
        for j in range(K):
            e = int(idx[t, j])
            if e >= 0:
                acc = acc + w[t, j] * experts[e](x[t:t + 1]).float()[0]
        ys.append(acc)
    return torch.stack(ys) if ys else torch.zeros(0, H)


def layer(ep, x, idx, w, local_experts, algo=None, alignment=1):
    """The MoE computation through the autograd functions."""
    d = epa.dispatch(ep, x, idx, w, expert_alignment=alignment, algo=algo)
    begin = d.recv_src_info.expert_begin.tolist()
    outs = []
    for e, m in enumerate(local_experts):
        rows = d.recv_x[begin[e]:begin[e + 1]]
        outs.append((m(rows).float() * d.recv_topk_weights[begin[e]:begin[e + 1], None])
                    .to(ep.dtype))
    return epa.combine(ep, torch.cat(outs), d.handle)


def close(a, b, tol, what):
    a = torch.zeros_like(b) if a is None else a  # no path to the loss: no gradient
    b = torch.zeros_like(a) if b is None else b
    a, b = a.double(), b.double()
    err = (a - b).abs().max().item() if a.numel() else 0.0
    scale = max(1.0, b.abs().max().item() if b.numel() else 0.0)
    if err > tol * scale:
        raise AssertionError("rank %d: %s differs from the reference by %g (scale %g)"
                             % (RANK, what, err, scale))


def expect_error(call, text, what):
    """call() must raise EpcInvalidArgument whose text holds `text`."""
    try:
        call()
    except epcomm.EpcInvalidArgument as e:
        if text not in str(e):
            raise
    else:
        raise AssertionError("%s was accepted" % what)


def grads_case(ep, dtype, algo):
    """Forward and gradients (x, weights, expert parameters) vs the reference."""
    data = inputs(11, dtype)
    x, idx, w = (t.clone() for t in data[RANK])
    x.requires_grad_(True)
    w.requires_grad_(True)
    L = ep.num_local_experts
    mine = experts_all(dtype)[RANK * L:(RANK + 1) * L]
    y = layer(ep, x, idx, w, mine, algo)
    c = torch.randn(y.shape, generator=torch.Generator().manual_seed(RANK)).to(dtype)
    (y.float() * c.float()).sum().backward()
    # the reference: every rank's tokens through every expert, in one process
    ref_experts = experts_all(torch.float32)
    xs = [d[0].float().clone().requires_grad_(True) for d in data]
    ws = [d[2].clone().requires_grad_(True) for d in data]
    loss = 0
    for r in range(SIZE):
        yr = reference(xs[r], data[r][1], ws[r], ref_experts)
        cr = torch.randn(yr.shape, generator=torch.Generator().manual_seed(r)).to(dtype)
        if r == RANK:
            close(y, yr, TOL[dtype], "y (%s, %s)" % (dtype, algo))
        loss = loss + (yr * cr.float()).sum()
    loss.backward()
    tol = TOL[dtype] * 4
    close(x.grad, xs[RANK].grad, tol, "x.grad")
    close(w.grad, ws[RANK].grad, tol, "topk_weights.grad")
    if (w.grad[data[RANK][1] < 0] != 0).any():
        raise AssertionError("an empty slot's weight got a gradient")
    for e, m in enumerate(mine):
        for (name, p), q in zip(m.named_parameters(), ref_experts[RANK * L + e].parameters()):
            close(p.grad, q.grad, tol, "expert %d %s.grad" % (RANK * L + e, name))
    return y.detach(), x.grad, w.grad


def test_grads(ep):
    for dtype in (torch.float32, torch.bfloat16):
        ctx = ep[dtype]
        hier = grads_case(ctx, dtype, "hier")
        flat = grads_case(ctx, dtype, "flat")
        for a, b, what in zip(hier, flat, ("y", "x.grad", "topk_weights.grad")):
            if not torch.equal(a, b):
                raise AssertionError("hier and flat differ in %s (%s)" % (what, dtype))
    say("grads: fp32 and bf16, hier == flat, against the reference: ok")


def test_moe_module(ep):
    """The MoE layer with both gates: output and the gate's gradient."""
    ctx = ep[torch.float32]
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(tokens_of(r), H, generator=g) for r in range(SIZE)]
    for gate in ("torch", "library"):
        moe = epcomm.MoE(ctx, K, gate=gate, max_nodes_per_token=1, seed=5)
        x = xs[RANK].clone().requires_grad_(True)
        y = moe(x)
        y.sum().backward()
        gate_grad = torch.from_numpy(comm.allreduce(moe.gate.weight.grad.numpy(), op=MPI.SUM))
        ref = epcomm.MoE.__new__(epcomm.MoE)  # the same parameters, all experts, one process
        torch.nn.Module.__init__(ref)
        gw = torch.nn.Parameter(moe.gate.weight.detach().clone())
        experts = experts_all(torch.float32, seed=5)
        loss = 0
        for r in range(SIZE):
            xr = xs[r].clone().requires_grad_(True)
            scores = torch.softmax(xr @ gw.t(), dim=-1)
            if gate == "torch":
                w, idx = torch.topk(scores, K, dim=-1)
            else:
                idx, _ = moe.router(xr.detach() @ gw.detach().t())
                w = torch.gather(scores, 1, idx)
                nodes = {tuple(sorted({ctx.node_of[int(e) // ctx.num_local_experts]
                                       for e in row})) for row in idx}
                if any(len(n) > 1 for n in nodes):
                    raise AssertionError("the library gate crossed its node limit")
            yr = reference(xr, idx, w, experts)
            if r == RANK:
                close(y, yr, 1e-5, "MoE y (%s gate)" % gate)
            loss = loss + yr.sum()
        loss.backward()
        close(gate_grad, gw.grad, 1e-4, "gate.weight.grad (%s gate)" % gate)
    say("MoE module: torch and library gates, output and gate gradient: ok")


def loss_of(ctx, x, idx, w, mine, c):
    y = layer(ctx, x, idx, w, mine)
    return comm.allreduce(float((y.double() * c.double()).sum()), op=MPI.SUM)


def test_finite_difference(ep):
    """Directional derivatives of the global loss against the gradients."""
    ctx = ep[torch.float32]
    x, idx, w = inputs(21, torch.float32)[RANK]
    L = ctx.num_local_experts
    mine = experts_all(torch.float32, seed=9)[RANK * L:(RANK + 1) * L]
    c = torch.randn(x.shape[0], H, generator=torch.Generator().manual_seed(50 + RANK))
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    (layer(ctx, xg, idx, wg, mine) * c).sum().backward()
    g = torch.Generator().manual_seed(77 + RANK)
    vx, vw = torch.randn(x.shape, generator=g), torch.randn(w.shape, generator=g)
    analytic = comm.allreduce(float((xg.grad * vx).sum() + (wg.grad * vw).sum()), op=MPI.SUM)
    eps = 1e-2
    with torch.no_grad():
        up = loss_of(ctx, x + eps * vx, idx, w + eps * vw, mine, c)
        down = loss_of(ctx, x - eps * vx, idx, w - eps * vw, mine, c)
    numeric = (up - down) / (2 * eps)
    if abs(numeric - analytic) > 2e-3 * max(1.0, abs(analytic)):
        raise AssertionError("finite difference %g, gradient %g" % (numeric, analytic))
    say("finite differences: %.6f against %.6f: ok" % (numeric, analytic))


def test_alignment(ep):
    """Groups padded to the alignment with zero rows of source -1; combine
    gives the same y as without padding."""
    ctx = ep[torch.float32]
    x, idx, w = inputs(31, torch.float32)[RANK]
    rx, rw, info, counts, h = ctx.dispatch(x, idx, w, copy=True)
    ya, _ = ctx.combine(rx * 2, h)
    rx4, rw4, info4, counts4, h4 = ctx.dispatch(x, idx, w, expert_alignment=4, copy=True)
    if any(c % 4 for c in counts4):
        raise AssertionError("group sizes %s are not multiples of 4" % counts4)
    pad = info4.src_rank < 0
    if (rx4[pad] != 0).any() or (rw4[pad] != 0).any() or (info4.expert[pad] != -1).any() \
            or (info4.local_expert[pad] != -1).any() or (info4.src_token[pad] != -1).any():
        raise AssertionError("padding rows are not zero rows of source -1")
    if not torch.equal(rx4[~pad], rx) or not torch.equal(info4.src_token[~pad], info.src_token) \
            or not torch.equal(info4.local_expert[~pad], info.local_expert) \
            or not torch.equal(info4.expert[~pad], info.expert):
        raise AssertionError("the real rows moved under alignment")
    if (info.src_rank < 0).any() or sum(counts) != info.src_rank.numel():
        raise AssertionError("alignment 1 gave padding rows")
    exp = info.local_expert + RANK * ctx.num_local_experts
    if not torch.equal(info.expert, exp) or ((info.expert // ctx.num_local_experts) != RANK).any():
        raise AssertionError("global expert ids wrong")
    # each received row is the source's x row: encoded by (rank, token)
    xs = inputs(31, torch.float32)
    for i in range(rx.shape[0]):
        s, t = int(info.src_rank[i]), int(info.src_token[i])
        if not torch.equal(rx[i], xs[s][0][t]) or int(info.expert[i]) not in xs[s][1][t].tolist():
            raise AssertionError("row %d is not token %d of rank %d" % (i, t, s))
    yb, _ = ctx.combine(rx4 * 2, h4)
    if not torch.equal(ya, yb):
        raise AssertionError("combine differs with alignment 4")
    say("alignment 4: padding, rows, expert ids, combine: ok")


def test_views_and_handles(ep):
    """Zero-copy views raise once their memory is reused; so do stale handles."""
    ctx = ep[torch.float32]
    x, idx, w = inputs(41, torch.float32)[RANK]
    rx, _, _, _, h0 = ctx.dispatch(x, idx, w)
    part = rx[: max(1, rx.shape[0] // 2)]
    total = rx.sum()  # valid now
    ctx.dispatch(x, idx, w)
    if not torch.equal(rx.sum(), total):  # still valid after one more dispatch
        raise AssertionError("a view changed after one dispatch")
    ctx.dispatch(x, idx, w)
    for what, touch in (("the view", lambda: rx.sum()), ("its slice", lambda: part + 1),
                        ("printing it", lambda: repr(rx))):
        if rx.shape[0] == 0:
            break
        try:
            touch()
        except epcomm.EpcInvalidArgument as e:
            if "invalidated" not in str(e):
                raise
        else:
            raise AssertionError("%s was read after its memory was reused" % what)
    expect_error(lambda: ctx.combine(torch.zeros(h0.num_rows, H), h0), "second dispatch",
                 "a stale handle")
    say("invalidated views and stale handles raise: ok")


def test_in_place(ep):
    """Expert outputs written over recv_x and passed back as expert_out on
    every rank (hier then reads them in place): the same bits as from a
    tensor of their own, for hier, and as flat."""
    for dtype in (torch.float32, torch.bfloat16):
        ctx = ep[dtype]
        x, idx, w = inputs(47, dtype)[RANK]
        ys = {}
        for algo in ("hier", "flat"):
            rx, _, _, _, h = ctx.dispatch(x, idx, w, algo=algo)
            y_own, _ = ctx.combine(rx * 3 - 1, h)
            rx.mul_(3).sub_(1)  # the experts' outputs, over the received rows
            ys[algo], _ = ctx.combine(rx, h)
            if not torch.equal(ys[algo], y_own):
                raise AssertionError("%s %s: in-place outputs changed combine" % (algo, dtype))
        if not torch.equal(ys["hier"], ys["flat"]):
            raise AssertionError("in place: hier and flat differ (%s)" % dtype)
    say("expert outputs in place: ok")


def test_warmup(ep):
    """Context.warmup: the buffers grow in it, not in the calls after it;
    earlier views go stale; bad tokens raise on that rank, peers get
    EpcPeerFailed naming it."""
    ctx = ep[torch.float32]
    x, idx, w = inputs(43, torch.float32)[RANK]
    rx, _, _, _, h0 = ctx.dispatch(x, idx, w)
    y_before, _ = ctx.combine(rx * 2, h0)
    ctx.warmup(64)
    if rx.shape[0] > 0:
        expect_error(lambda: rx.sum(), "invalidated", "a view from before the warm-up")
    grows = ctx.stats()["shm_grows"]
    for _ in range(2):  # both buffer sets; these tokens are fewer and no more spread
        rx, _, _, _, h = ctx.dispatch(x, idx, w)
        y, _ = ctx.combine(rx * 2, h)
        if not torch.equal(y, y_before):
            raise AssertionError("combine after the warm-up differs from before it")
    if ctx.stats()["shm_grows"] != grows:
        raise AssertionError("a call after the warm-up grew the regions")
    bad = 1 % SIZE
    expect_named_or_peer(lambda: ctx.warmup(-1 if RANK == bad else 8), bad, "tokens")
    if not expect_named_or_peer(lambda: ctx.warmup("8" if RANK == bad else 8), bad, "tokens") \
            or not expect_named_or_peer(lambda: ctx.warmup(8, algo="ring" if RANK == bad
                                                           else None), bad, "algo"):
        raise AssertionError("a bad warm-up argument on rank %d was not reported" % bad)
    try:
        ctx.warmup(ctx.max_tokens_per_rank + 1)
    except epcomm.EpcCapacity as e:
        if "tokens" not in str(e):
            raise
    else:
        raise AssertionError("warmup above max_tokens_per_rank was accepted")
    expect_error(lambda: ctx.warmup(8, algo="ring"), "algo", "algo 'ring'")
    ctx.warmup(0, algo="flat")
    say("warmup: ok")


def expect_named_or_peer(call, bad, text):
    """call() is collective with a bad argument on rank `bad`: there it must
    raise EpcInvalidArgument holding `text`, elsewhere EpcPeerFailed naming
    `bad` (True when it raised at all, for inputs only some ranks hold)."""
    try:
        call()
    except epcomm.EpcInvalidArgument as e:
        if RANK != bad or text not in str(e):
            raise
    except epcomm.EpcPeerFailed as e:
        if RANK == bad or e.rank != bad:
            raise
    else:
        return False
    return True


def one_rank_bad_calls(ctx, call, bad):
    """Arguments only rank `bad` gets wrong in calls on inputs(call), each
    named there and reported to the peers (who would otherwise wait for it
    until the deadline, or pair the call with its next one)."""
    x, idx, w = inputs(call, torch.float32)[RANK]
    rx, _, _, _, h = ctx.dispatch(x, idx, w, copy=True)
    ctx.combine(rx, h)
    # combine: out of the wrong shape, or no handle
    has_tokens = inputs(call, torch.float32)[bad][0].shape[0] > 0
    for what in ("out", "handle"):
        rx, _, _, _, h = ctx.dispatch(x, idx, w, copy=True)
        hb = "not a handle" if RANK == bad and what == "handle" else h
        out = torch.empty(x.shape[0] + 1, H) if RANK == bad and what == "out" else None
        raised = expect_named_or_peer(lambda: ctx.combine(rx, hb, out=out), bad, what)
        if not raised and (RANK == bad or has_tokens or what == "handle"):
            raise AssertionError("a bad combine %s on rank %d was not reported" % (what, bad))
    # one rank's unknown choice: dispatch's algo or payload, combine's wire
    # or order, as a value the library refuses, so the peers are told
    for what, call in (
            ("algo", lambda: ctx.dispatch(x, idx, w, algo="ring" if RANK == bad else None)),
            ("payload", lambda: ctx.dispatch(x, idx, w,
                                             payload="fp4" if RANK == bad else None))):
        if not expect_named_or_peer(call, bad, what):
            raise AssertionError("a bad %s on rank %d was not reported" % (what, bad))
    for what in ("wire", "order"):
        rx, _, _, _, h = ctx.dispatch(x, idx, w, copy=True)
        kw = {what: "fp64" if RANK == bad else None}
        if not expect_named_or_peer(lambda: ctx.combine(rx, h, **kw), bad, what):
            raise AssertionError("a bad %s on rank %d was not reported" % (what, bad))


def test_bad_create(args):
    """A name one rank gets wrong in Context(...) (each of transport,
    log_level, progress, algo, dtype): it raises EpcInvalidArgument naming
    it, the others EpcPeerFailed naming it, at once (not after the 60 s
    deadline); then every rank creates the context."""
    bad = 1 % SIZE
    for what, value in (("transport", "pigeon"), ("log_level", "loud"), ("progress", "later"),
                        ("algo", "ring"), ("dtype", torch.int8)):
        kw = {"transport": args.transport, "dtype": torch.float32}
        if RANK == bad:
            kw[what] = value
        t0 = time.monotonic()
        raised = expect_named_or_peer(lambda: epcomm.Context(
            comm, hidden=H, num_experts=E, timeout_ms=60000,
            ranks_per_node=args.ranks_per_node, **kw).close(), bad, what)
        if not raised or time.monotonic() - t0 > 30:
            raise AssertionError("a bad %s on rank %d: raised %s after %.1f s"
                                 % (what, bad, raised, time.monotonic() - t0))
    epcomm.Context(comm, hidden=H, num_experts=E, dtype=torch.float32,
                   ranks_per_node=args.ranks_per_node, transport=args.transport).close()
    say("a bad Context argument on one rank: named there, peers told: ok")


def test_bad_input(ep):
    """A bad argument on one rank: that rank's error names it, the others get
    EpcPeerFailed naming the rank; the context stays usable."""
    ctx = ep[torch.float32]
    x, idx, w = inputs(51, torch.float32)[RANK]
    bad = 0
    xb = x.double() if RANK == bad else x
    if not expect_named_or_peer(lambda: ctx.dispatch(xb, idx, w), bad, "x.dtype"):
        raise AssertionError("a bad x was accepted")
    big = idx.clone()
    if RANK == bad and big.numel():
        big[0, 0] = 1 << 33  # would wrap to a valid id as int32
    if not expect_named_or_peer(lambda: ctx.dispatch(x, big, w), bad, "topk_idx") and \
            RANK == bad and big.numel():
        raise AssertionError("topk_idx 2^33 was accepted")
    one_rank_bad_calls(ctx, 51, bad)
    rx, _, _, _, h = ctx.dispatch(x, idx, w, copy=True)
    ctx.combine(rx, h)
    # every rank: expert_out of the wrong shape, an unknown dtype or algo
    for what, bad_call in (
            ("expert_out.shape", lambda: ctx.combine(rx[:, :2], h)),
            ("dtype", lambda: epcomm.Context(hidden=H, num_experts=E, dtype=torch.int8)),
            ("algo", lambda: ctx.dispatch(x, idx, w, algo="ring"))):
        try:
            bad_call()
        except (epcomm.EpcInvalidArgument, epcomm.EpcPeerFailed) as e:
            if isinstance(e, epcomm.EpcInvalidArgument) and what not in str(e):
                raise
        else:
            raise AssertionError("a bad %s was accepted" % what)
    rx, _, _, _, h = ctx.dispatch(x, idx, w, copy=True)
    y, _ = ctx.combine(rx, h)
    say("bad inputs: named on the rank, peers told, context usable: ok")


def test_async(ep):
    """An async dispatch and combine beside a torch matmul give the blocking
    results; test() reports completion."""
    ctx = ep[torch.float32]
    x, idx, w = inputs(61, torch.float32)[RANK]
    rx, _, _, _, h = ctx.dispatch(x, idx, w, copy=True)
    y_ref, _ = ctx.combine(rx * 3, h)
    a = torch.randn(256, 256)
    req = ctx.dispatch(x, idx, w, async_op=True, copy=True)
    if not isinstance(req, epcomm.Request):
        raise AssertionError("async_op did not return a Request")
    prod = a @ a  # overlaps the dispatch's progress
    polls = 0
    while not req.test():
        polls += 1
        prod = prod * 0.5 + a @ a
    rx2, _, _, _, h2 = req.wait()
    if not torch.equal(rx2, rx):
        raise AssertionError("async dispatch received other rows")
    creq = ctx.combine(rx2 * 3, h2, async_op=True)
    prod = prod @ a
    y2, _ = creq.wait()
    if not torch.equal(y2, y_ref):
        raise AssertionError("async combine differs")
    buf = torch.full_like(y_ref, float("nan"))
    y3, _ = ctx.combine(rx2 * 3, h2, out=buf)
    if y3 is not buf or not torch.equal(buf, y_ref):
        raise AssertionError("combine(out=) did not write y into out")
    say("async dispatch/combine beside a matmul: ok (%d polls)" % polls)


def test_router_layout():
    """Router against torch's softmax top-k; the layout against counts made
    here from topk_idx."""
    g = torch.Generator().manual_seed(71)
    logits = torch.randn(40, E, generator=g)
    r = epcomm.Router(E, K, num_ranks=4, ranks_per_node=2)
    idx, w = r(logits)
    ref_w, ref_idx = torch.topk(torch.softmax(logits, -1), K, -1)
    if not torch.equal(idx, ref_idx):
        raise AssertionError("router's experts differ from torch.topk")
    close(w, ref_w, 1e-6, "router weights")
    idx[::4, 1] = -1
    lay = epcomm.get_dispatch_layout(idx, E, 4, 2)
    epr = E // 4
    in_rank = torch.zeros(40, 4, dtype=torch.bool)
    for t in range(40):
        for e in idx[t].tolist():
            if e >= 0:
                in_rank[t, e // epr] = True
    in_node = in_rank.view(40, 2, 2).any(-1)
    per_expert = torch.bincount(idx[idx >= 0], minlength=E).to(torch.int32)
    if not (torch.equal(lay.is_token_in_rank, in_rank) and
            torch.equal(lay.is_token_in_node, in_node) and
            torch.equal(lay.num_tokens_per_rank, in_rank.sum(0).to(torch.int32)) and
            torch.equal(lay.num_tokens_per_node, in_node.sum(0).to(torch.int32)) and
            torch.equal(lay.num_tokens_per_expert, per_expert)):
        raise AssertionError("dispatch layout differs from the reference")
    expect_error(lambda: r(torch.full((2, E), float("nan"))), "token", "a NaN logit")
    say("router and dispatch layout: ok")


def fp8_bound_ok(x, q, s):
    """|x - q x s| <= max(|x| / 16, s x 2^-10) elementwise: half of e4m3's
    relative step, or half a subnormal step (and bf16's own rounding)."""
    y = epcomm.fp8_dequantize(q, s, torch.float32)
    se = s.repeat_interleave(128, dim=1)
    bound = torch.maximum(x.float().abs() / 16, se / 1024) * (1 + 2 ** -7) + 1e-30
    return bool(((x.float() - y).abs() <= bound).all())


def test_fp8(args):
    """FP8 dispatch (cast, UE8M0, given) on a hidden-256 context: every
    received row equals its source token's cast, within the format's bound
    of it; views and copies agree; combine of the dequantised rows against
    torch; a bad (q, scales) on one rank is named there and PeerFailed
    elsewhere."""
    Hf = 256
    g = torch.Generator().manual_seed(91)
    data = []
    for r in range(SIZE):
        T = tokens_of(r)
        x = (torch.randn(T, Hf, generator=g) *
             torch.logspace(-3, 3, Hf // 128).repeat_interleave(128)).to(torch.bfloat16)
        idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)]) if T else \
            torch.empty(0, K, dtype=torch.int64)
        data.append((x, idx, torch.rand(T, K, generator=g)))
    x, idx, w = data[RANK]
    with epcomm.Context(comm, hidden=Hf, num_experts=E, dtype=torch.bfloat16, timeout_ms=60000,
                        ranks_per_node=args.ranks_per_node, transport=args.transport) as ctx:
        for payload in ("fp8", "fp8_ue8m0", "given"):
            ue = payload == "fp8_ue8m0"
            xin = epcomm.fp8_quantize(x) if payload == "given" else x
            (q, s), rw, info, _, h = ctx.dispatch(xin, idx, w, payload=None if payload == "given"
                                                  else payload)
            if q.dtype != torch.uint8 or tuple(s.shape) != (q.shape[0], Hf // 128):
                raise AssertionError("fp8 recv_x: %s %s" % (q.dtype, list(s.shape)))
            for r in range(q.shape[0]):
                src, tok = int(info.src_rank[r]), int(info.src_token[r])
                if src < 0:
                    continue
                xs = data[src][0][tok:tok + 1]
                wq, ws = epcomm.fp8_quantize(xs, ue8m0=ue)
                if not (torch.equal(q[r], wq[0]) and torch.equal(s[r], ws[0])):
                    raise AssertionError("%s: row %d differs from the cast of rank %d token %d"
                                         % (payload, r, src, tok))
            if q.shape[0] and not fp8_bound_ok(
                    torch.cat([data[int(a)][0][int(b):int(b) + 1]
                               for a, b in zip(info.src_rank, info.src_token)]), q, s):
                raise AssertionError("%s: dequantised rows outside the e4m3 bound" % payload)
            if payload == "fp8":
                (qc, sc), _, _, _, h2 = ctx.dispatch(x, idx, w, payload="fp8", copy=True)
                if not (qc.is_contiguous() and torch.equal(qc, q) and torch.equal(sc, s)):
                    raise AssertionError("fp8 copies differ from the views")
                deq = epcomm.fp8_dequantize(qc, sc)
                y, _ = ctx.combine(deq, h2)
                mine = epcomm.fp8_dequantize(*epcomm.fp8_quantize(x)).float()
                ref = (w.unsqueeze(-1) * mine.unsqueeze(1)).sum(1) if x.shape[0] else y.float()
                close(y.float(), ref, 3e-2, "combine of dequantised fp8 rows")
                y16 = {a: ctx.combine(deq, h2 if a == "hier" else hf, wire="bf16")[0]
                       for a, hf in (("hier", None), ("flat", ctx.dispatch(
                           x, idx, w, payload="fp8", algo="flat", copy=True)[4]))}
                if not torch.equal(y16["hier"], y16["flat"]):
                    raise AssertionError("bf16 wire: hier and flat differ")
                close(y16["hier"].float(), y.float(), 2 ** -7, "bf16 wire against fp32")
                expect_error(lambda: ctx.combine(deq, h2, wire="fp8"), "wire", "wire fp8")
                h2.destroy()
            h.destroy()
        q, s = epcomm.fp8_quantize(x)
        bad = SIZE - 1
        if not expect_named_or_peer(lambda: ctx.dispatch((q.float() if RANK == bad else q, s),
                                                         idx, w), bad, "x[0]"):
            raise AssertionError("a float q was accepted")
        expect_error(lambda: ctx.dispatch(x, idx, w, payload="int4"), "payload", "payload int4")
    expect_error(lambda: epcomm.fp8_quantize(torch.zeros(2, 100)), "hidden", "hidden 100")
    say("fp8 dispatch: cast, ue8m0, given, bound, copies, combine, errors: ok")


def test_abi_check():
    """A mirror that disagrees with the library is an ImportError naming it."""
    lib = _lib.lib
    _lib.check_abi(lib)  # the real mirrors pass
    moved = dict(_lib.STRUCTS)
    f = list(_lib.CombineArgs._fields_)
    f[3], f[4] = f[4], f[3]  # unweighted and scalar_channel swapped
    moved["epc_combine_args_t"] = type("epc_combine_args_t", (ctypes.Structure,), {"_fields_": f})
    for structs, version, text in ((moved, _lib.ABI_VERSION, "epc_combine_args_t.unweighted"),
                                   (_lib.STRUCTS, _lib.ABI_VERSION + 1, "ABI version")):
        try:
            _lib.check_abi(lib, structs, version)
        except ImportError as e:
            if text not in str(e):
                raise
        else:
            raise AssertionError("the ABI check missed: " + text)
    say("ABI check: ok")


def test_abort_reaches_peers(args):
    """An exception on one rank inside `with Context` aborts it: the others,
    waiting in dispatch with a minute's timeout, get EpcPeerFailed naming it
    within seconds."""
    bad = SIZE - 1
    x, idx, w = inputs(81, torch.float32)[RANK]
    t0 = time.monotonic()
    try:
        with epcomm.Context(comm, hidden=H, num_experts=E, dtype=torch.float32,
                            timeout_ms=60000, ranks_per_node=args.ranks_per_node,
                            transport=args.transport) as ctx:
            ctx.dispatch(x, idx, w)
            if RANK == bad:
                raise KeyError("an error in the model")
            ctx.dispatch(x, idx, w)
            raise AssertionError("rank %d: dispatch succeeded beside an aborted peer" % RANK)
    except KeyError:
        if RANK != bad:
            raise
    except epcomm.EpcPeerFailed as e:
        if e.rank != bad or "KeyError" not in str(e):
            raise AssertionError("rank %d: %s" % (RANK, e))
    took = time.monotonic() - t0
    if took > 20:
        raise AssertionError("the abort took %.1f s to arrive" % took)
    say("an exception on rank %d reached every peer in %.2f s: ok" % (bad, took))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ranks-per-node", type=int, default=0)
    p.add_argument("--transport", default=None)
    args = p.parse_args()
    say("epcomm %s from %s (%s), %d ranks" % (epcomm.__version__, epcomm.library_path,
                                               epcomm.library_found_by, SIZE))
    ep = {dt: epcomm.Context(comm, hidden=H, num_experts=E, dtype=dt, timeout_ms=60000,
                             ranks_per_node=args.ranks_per_node, transport=args.transport)
          for dt in (torch.float32, torch.bfloat16)}
    for name in ("grads", "moe_module", "finite_difference", "alignment",
                 "views_and_handles", "bad_input", "async", "in_place", "warmup"):
        globals()["test_" + name](ep)
    test_router_layout()
    test_fp8(args)
    test_abi_check()
    for c in ep.values():
        c.close()
    test_abort_reaches_peers(args)
    if SIZE > 1:
        test_bad_create(args)
    say("all passed")


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        comm.Abort(1)
