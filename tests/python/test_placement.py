# SPDX-License-Identifier: BSD-3-Clause
"""Expert placement through the Python package under mpirun: loads routed
on every rank and summed, a placement planned from them (and DeepSeek's
EPLB for comparison: never better), agreed by every rank, the weights of
the contiguous placement moved to it (each slot's rows encode its logical
expert), then tokens mapped to slots, dispatched and combined: every
received row's source and bytes against a reference built from every
rank's regenerated inputs, each slot's rows computed with its logical
expert's moved weights, and combine against the logical reference, bit for
bit (small integers and power-of-two weights: every sum exact).  A table
that differs on one rank is EpcMismatch everywhere.  Then the co-reach
(Placement.reach) summed over ranks against a count made here, a plan
with it (spill replicas where there are several nodes) and the "limited"
choice: every slot holds the token's expert and lies on a main node
(computed here from the table by the documented rule) of the token's
experts.

    mpirun -np N python3 tests/python/test_placement.py [--ranks-per-node L] [--transport mpi|ofi]
"""
import argparse

import torch
from mpi4py import MPI

import epcomm

comm = MPI.COMM_WORLD
RANK, SIZE = comm.Get_rank(), comm.Get_size()
E, H, K, T = 4 * SIZE, 32, 3, 20


def logical_inputs(r):
    """Rank r's tokens (small integers) and logical ids, skewed to low ids."""
    g = torch.Generator().manual_seed(77 + r)
    x = torch.randint(-8, 8, (T, H), generator=g).to(torch.float32)
    pop = torch.tensor([1.0 / (1 + e) for e in range(E)])
    idx = torch.stack([torch.multinomial(pop, K, replacement=False, generator=g)
                       for _ in range(T)])
    return x, idx


def reach_reference(nodes):
    """[E, nodes]: tokens of e (every rank's) also picking an expert of
    node block b != e's (blocks of E / nodes experts)."""
    ref = torch.zeros(E, nodes, dtype=torch.float64)
    for s in range(SIZE):
        for row in logical_inputs(s)[1].tolist():
            blocks = {e * nodes // E for e in row}
            for e in row:
                for b in blocks - {e * nodes // E}:
                    ref[e, b] += 1
    return ref


def main_nodes(pl, nodes):
    """Each expert's main node by the documented rule: most slots, then
    most slots of its node block, then the lowest node."""
    table, sn = pl.table.tolist(), pl.num_slots // nodes
    out = []
    for e in range(E):
        def key(n):
            mine = sum(1 for s in range(n * sn, (n + 1) * sn) if table[s] == e)
            block = sum(1 for s in range(n * sn, (n + 1) * sn)
                        if table[s] * nodes // E == e * nodes // E)
            return (mine, block, -n)
        out.append(max(range(nodes), key=key))
    return out


def spill_checks(load, idx, rpn):
    nodes = SIZE // rpn
    mine = epcomm.Placement.reach(idx, E, nodes)
    assert torch.equal(epcomm.Placement.reach(idx, E, nodes, out=mine.clone()), 2 * mine)
    reach = torch.from_numpy(comm.allreduce(mine.numpy(), op=MPI.SUM))
    assert torch.equal(reach, reach_reference(nodes)), (reach, reach_reference(nodes))
    for bad in (lambda: epcomm.Placement.reach(idx, E, nodes, out=torch.zeros(E, nodes + 1,
                                                                               dtype=torch.float64)),
                lambda: epcomm.Placement.plan(load, SIZE, rpn, E + SIZE,
                                              expert_reach=torch.zeros(E, nodes + 1))):
        try:
            bad()
            raise AssertionError("a wrong shape was accepted")
        except epcomm.EpcInvalidArgument:
            pass
    pl = epcomm.Placement.plan(load, SIZE, rpn, E + SIZE, expert_reach=reach)
    table, spr = pl.table.tolist(), pl.slots_per_rank
    assert sorted(set(table)) == list(range(E))
    spilled = [e for e in range(E) if len({s // spr // rpn for s in pl.replicas(e).tolist()}) > 1]
    assert nodes == 1 or spilled, "no spill replica"
    main = main_nodes(pl, nodes)
    # a plan with spills comes with "limited"; set_choice changes what choice says
    assert pl.choice == ("limited" if spilled else "near"), (pl.choice, spilled)
    slots = pl.map(idx, first_token=RANK * T)
    pl.set_choice("spread")
    assert pl.choice == "spread"
    pl.set_choice("limited")
    assert pl.choice == "limited"
    if spilled:
        assert torch.equal(pl.map(idx, first_token=RANK * T), slots)
    slots = pl.map(idx, first_token=RANK * T)
    for t in range(T):
        allowed = {main[int(e)] for e in idx[t]}
        for j in range(K):
            slot = int(slots[t, j])
            assert table[slot] == int(idx[t, j])
            assert slot // spr // rpn in allowed, (t, j, slot, allowed)


def logical_checks(ep, load, x, idx, rpn, a):
    """order="logical": a global plan (replicas on any node), agreed on ep,
    combines to the bits of the identity with sums that round, through hier
    and flat; an unknown order and order="logical" with wire="bf16" are
    refused."""
    gplan = epcomm.Placement.plan(load, SIZE, rpn, E + SIZE, num_groups=1)
    wr = torch.tensor([0.3, 0.7, 0.11]).expand(T, K).contiguous()
    xr = x * 1.37 + 0.013

    def logical_y(ctx, pl, algo):
        tab = pl.table
        rx, _, inf, _, hd = ctx.dispatch(xr, pl.map(idx, first_token=RANK * T), wr, algo=algo)
        g = 1 + tab[RANK * pl.slots_per_rank + inf.local_expert.long()].float() / 7
        return ctx.combine(rx * g.unsqueeze(1), hd, order="logical")[0], rx, hd

    with epcomm.Context(hidden=H, num_experts=E, max_topk=K, dtype=torch.float32,
                        ranks_per_node=a.ranks_per_node, transport=a.transport,
                        log_level="off") as ep_id:
        ident = epcomm.Placement(None, E, SIZE, rpn)
        ep_id.agree_placement(ident)
        y_id = logical_y(ep_id, ident, "hier")[0]
    ep.agree_placement(gplan)
    for algo in ("hier", "flat"):
        y, rx, hd = logical_y(ep, gplan, algo)
        assert torch.equal(y, y_id), (algo, (y - y_id).abs().max())
    for bad, what in (({"order": "sideways"}, "order"),
                      ({"order": "logical", "wire": "bf16"}, "order")):
        try:
            ep.combine(rx, hd, **bad)
            raise AssertionError("combine accepted %r" % (bad,))
        except epcomm.EpcInvalidArgument as e:
            assert what in str(e), e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks-per-node", type=int, default=0)
    ap.add_argument("--transport", default=None)
    a = ap.parse_args()
    rpn = a.ranks_per_node or SIZE
    x, idx = logical_inputs(RANK)
    load = torch.bincount(idx.view(-1), minlength=E).to(torch.float64)
    load = torch.from_numpy(comm.allreduce(load.numpy(), op=MPI.SUM))
    S = E + SIZE
    plan = epcomm.Placement.plan(load, num_ranks=SIZE, ranks_per_node=rpn, num_slots=S)
    eplb = epcomm.Placement.plan(load, num_ranks=SIZE, ranks_per_node=rpn, num_slots=S,
                                 algo="eplb")
    assert plan.load(load)[2] <= eplb.load(load)[2] + 1e-9
    assert plan.num_slots == S and plan.slots_per_rank == S // SIZE
    table = plan.table.tolist()
    assert sorted(set(table)) == list(range(E))
    with epcomm.Context(hidden=H, num_experts=S, max_topk=K, dtype=torch.float32,
                        ranks_per_node=a.ranks_per_node, transport=a.transport,
                        log_level="off") as ep:
        if SIZE > 1:  # a closed placement on rank 1: named there, the peers told
            closed = epcomm.Placement(table, E, SIZE, rpn)
            closed.close()
            try:
                ep.agree_placement(closed if RANK == 1 else plan)
                raise AssertionError("a closed placement on rank 1 was agreed")
            except epcomm.EpcInvalidArgument as e:
                assert RANK == 1 and "placement" in str(e), str(e)
            except epcomm.EpcPeerFailed as e:
                assert RANK != 1 and e.rank == 1, str(e)
        ep.agree_placement(plan)
        if SIZE > 1:
            t = list(table)
            if RANK == 0:
                t[0], t[-1] = t[-1], t[0]
            other = epcomm.Placement(t, E, SIZE, rpn)
            try:
                ep.agree_placement(other)
                raise AssertionError("a table differing on rank 0 was agreed")
            except epcomm.EpcMismatch:
                pass
        # weights: slot rows of [2, H] encoding the logical expert
        ident = epcomm.Placement(None, E, SIZE, rpn)
        old = torch.stack([torch.full((2, H), float(RANK * (E // SIZE) + i))
                           for i in range(E // SIZE)])
        if SIZE > 1:  # old_weights of the wrong shape on rank 1: named there, peers told
            try:
                ep.move_weights(ident, plan, old[:1] if RANK == 1 else old)
                raise AssertionError("bad old_weights on rank 1 were moved")
            except epcomm.EpcInvalidArgument as e:
                assert RANK == 1 and "old_weights" in str(e), str(e)
            except epcomm.EpcPeerFailed as e:
                assert RANK != 1 and e.rank == 1, str(e)
        new = ep.move_weights(ident, plan, old)
        mine = table[RANK * plan.slots_per_rank:(RANK + 1) * plan.slots_per_rank]
        assert torch.equal(new[:, 0, 0], torch.tensor(mine, dtype=torch.float32)), (new, mine)
        gain = new[:, 0, 0] % 3 + 1  # the expert of logical id e multiplies by 1 + e % 3

        w = torch.tensor([1.0, 0.5, 0.25]).expand(T, K).contiguous()
        slots = plan.map(idx, first_token=RANK * T)
        recv_x, recv_w, info, counts, handle = ep.dispatch(x, slots, w)
        # the reference: every rank's tokens mapped to slots
        want = {}
        for s in range(SIZE):
            xs, ids = logical_inputs(s)
            sl = plan.map(ids, first_token=s * T)
            for tok in range(T):
                for j in range(K):
                    slot = int(sl[tok, j])
                    assert table[slot] == int(ids[tok, j])
                    if slot // plan.slots_per_rank == RANK:
                        want.setdefault(slot % plan.slots_per_rank, []).append((s, tok, xs[tok]))
        for le in range(plan.slots_per_rank):
            assert counts[le] == len(want.get(le, [])), (le, counts, want)
        pos = 0
        for le in range(plan.slots_per_rank):
            for (s, tok, row) in want.get(le, []):
                assert int(info.src_rank[pos]) == s and int(info.src_token[pos]) == tok
                assert torch.equal(recv_x[pos], row)
                pos += 1
        out = recv_x.clone() * gain[info.local_expert.long()].unsqueeze(1)
        y, _ = ep.combine(out, handle)
        ref = torch.zeros(T, H)
        for tok in range(T):
            for j in range(K):
                ref[tok] += w[tok, j] * (int(idx[tok, j]) % 3 + 1) * x[tok]
        assert torch.equal(y, ref), (y - ref).abs().max()
        logical_checks(ep, load, x, idx, rpn, a)
        # spreading: token t takes replica (first_token + t + e) mod count of e
        plan.set_choice("spread")
        spread = plan.map(idx, first_token=RANK * T)
        for t in range(T):
            for j in range(K):
                e = int(idx[t, j])
                reps = plan.replicas(e).tolist()
                assert int(spread[t, j]) == reps[(RANK * T + t + e) % len(reps)], (t, j)
        # balanced: each expert's replicas within 1/8 (+2) of the least-loaded
        plan.set_choice("balanced")
        bal = plan.map(idx, first_token=RANK * T)
        assert torch.equal(bal, plan.map(idx, first_token=RANK * T))
        for e in range(E):
            reps = plan.replicas(e).tolist()
            got = [int((bal[idx == e] == s).sum()) for s in reps]
            assert sum(got) == int((idx == e).sum()), (e, got)
            assert max(got) <= min(got) + min(got) // 8 + 2, (e, got)
        try:
            plan.set_choice("far")
            raise AssertionError("an unknown choice was accepted")
        except epcomm.EpcInvalidArgument:
            pass
    spill_checks(load, idx, rpn)
    if RANK == 0:
        print("test_placement.py: all checks passed on %d ranks" % SIZE, flush=True)


if __name__ == "__main__":
    main()
