"""The salience gate: the seeds' MLP shape, gradient when closed, and it opens where writing helps."""

from __future__ import annotations

import torch
import torch.nn as nn

from vlmem.memory import DualMemory, EpisodicMemory

D, N = 32, 4


def _close(mem, p: float = 0.05) -> None:
    nn.init.zeros_(mem.salience_gate.mlp[-1].weight)
    nn.init.constant_(mem.salience_gate.mlp[-1].bias, float(torch.logit(torch.tensor(p))))


def test_gate_is_the_seeds_mlp():
    gate = EpisodicMemory(D, num_heads=4, L_e=4, use_salience_gate=True).salience_gate
    assert [type(m) for m in gate.mlp] == [nn.Linear, nn.ReLU, nn.Linear]
    assert gate.mlp[0].in_features == D and gate.mlp[-1].out_features == 1


def test_closed_gate_gets_gradient_and_is_skipped_in_eval():
    torch.manual_seed(0)
    mem = DualMemory(D, num_heads=4, L_w=2, L_e=4, dropout=0.0, use_salience_gate=True)
    _close(mem)
    out, _ = mem.scan(torch.randn(2, 5, N, D), mem.init_state(2))
    out.pow(2).mean().backward()
    assert mem.salience_gate.mlp[-1].bias.grad.abs() > 0  # closed (s = 0.05), still learning
    mem.eval()
    _, st, info = mem.scan(torch.randn(2, 5, N, D), mem.init_state(2), return_info=True)
    assert (info["e_slot"] == -1).all() and (st.e_fill == 0).all()  # eval: a closed gate writes nothing


def test_closed_gate_opens_when_writing_helps():
    """Each video repeats one content: only the episodic entries carry it to the later frames, so
    the gate must open (s from 0.05 to about 0.5 in 60 steps)."""
    torch.manual_seed(0)
    mem = EpisodicMemory(D, num_heads=4, L_e=8, dropout=0.0, use_salience_gate=True)
    _close(mem)
    opt = torch.optim.Adam(mem.parameters(), lr=1e-2)
    sal, losses = [], []
    for _ in range(60):
        c = torch.randn(8, 1, N, D)
        h = c + 0.1 * torch.randn(8, 4, N, D)
        out, _, info = mem.scan(h, mem.init_state(8), return_info=True)
        loss = (out[:, 1:] - c).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sal.append(float(info["salience"].mean()))
        losses.append(float(loss))
    assert sal[0] < 0.06 and sal[-1] > 0.3, (sal[0], sal[-1])
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), (losses[:5], losses[-5:])
