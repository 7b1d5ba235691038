# mpirun -np 4 python3 examples/readme_example.py
import torch
import epcomm

with epcomm.Context(hidden=64, num_experts=8, dtype=torch.float32) as ep:
    moe = epcomm.MoE(ep, topk=2)  # torch gate, one Linear per local expert
    x = torch.randn(32, 64)
    opt = torch.optim.SGD(moe.parameters(), lr=0.01)
    for step in range(3):
        y = moe(x)  # dispatch -> experts -> combine, differentiable
        loss = (y - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()  # combine's backward dispatches, dispatch's combines
        opt.step()
    # the same by hand: route, dispatch, compute, combine
    idx, w = moe.route(x)
    recv_x, recv_w, info, counts, handle = ep.dispatch(x, idx, w.detach())
    y, _ = ep.combine(recv_x * 2, handle)  # weighted sum: here 2 * x
    assert torch.allclose(y, 2 * x * w.detach().sum(1, keepdim=True), atol=1e-5)
    print("rank %d: loss %.4f, %d rows received" % (ep.rank, loss, recv_x.shape[0]))
