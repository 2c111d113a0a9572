"""Logging steps stay on the batched scan: `scan(..., return_info=True)` gives `step`'s info for
every frame (fill counts, slot weights, slot -> frame tables, episodic slots / replacements,
gate statistics) and exactly the outputs and state of a scan without info."""

import pytest
import torch

from tests.memory.test_scan_fast import LE, D, N, assert_same, make, prior_state
from vlmem.memory import DualMemory, EpisodicMemory, WorkingMemory

KINDS = {"dual": lambda: make(DualMemory), "dual_input": lambda: make(DualMemory, episodic_stores="input"),
         "working": lambda: make(WorkingMemory), "episodic": lambda: make(EpisodicMemory)}


def stepped_info(mem, h, st):
    outs, infos = [], []
    for t in range(h.shape[1]):
        m, st, info = mem.step(h[:, t], st, return_info=True)
        outs.append(m)
        infos.append(info)
    return torch.stack(outs, 1), st, {k: torch.stack([i[k] for i in infos], 1) for k in infos[0]}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("prior", [None, [0, 0], [1, 4], [0, 7], [7, 9]])
@pytest.mark.parametrize("T", [1, 4, LE + 3])
def test_scan_info_equals_stepping_and_keeps_the_batched_outputs(kind, prior, T):
    mem = KINDS[kind]()
    B = 2 if prior is None else len(prior)
    st0 = mem.init_state(B) if prior is None else prior_state(mem, B, prior)
    h = torch.randn(B, T, N, D)
    calls = []
    step = mem._step
    mem._step = lambda *a, **k: calls.append(1) or step(*a, **k)
    out, st, info = mem.scan(h, st0, return_info=True)
    assert calls == []  # no frame-by-frame fallback
    plain, plain_st = mem.scan(h, st0)
    assert torch.equal(out, plain)
    for k in st.keys():
        assert torch.equal(getattr(st, k), getattr(plain_st, k))
    del mem._step
    ref, _, ref_info = stepped_info(mem, h, st0)
    assert_same(out, ref)
    assert info.keys() == ref_info.keys()
    for k in info:
        assert info[k].shape == ref_info[k].shape, k
        assert info[k].dtype == ref_info[k].dtype, k
        assert_same(info[k], ref_info[k])


def test_salience_gate_still_steps_with_info():
    mem = make(DualMemory, use_salience_gate=True)
    out, _, info = mem.scan(torch.randn(2, 3, N, D), mem.init_state(2), return_info=True)
    assert out.shape == (2, 3, N, D) and info["salience"].shape == (2, 3)
