"""The batched scan (`_scan_fast`: working reads of all frames at once, episodic appends without
per-frame buffer copies) against the frame-by-frame `step` path and the oracle: outputs, every
field of the final state and the gradients, from fresh, carried and mixed-fill states."""

import pytest
import torch

from tests.memory.oracle import oracle_scan
from vlmem.memory import DualMemory, EpisodicMemory, WorkingMemory

D, H, N, LW, LE = 16, 4, 3, 3, 5
TOL = 1e-5


def make(cls, **kw):
    torch.manual_seed(0)
    sizes = {DualMemory: {"L_w": LW, "L_e": LE}, WorkingMemory: {"L_w": LW}, EpisodicMemory: {"L_e": LE}}[cls]
    return cls(D, num_heads=H, dropout=0.0, **sizes, **kw)


def stepped(mem, h, st):
    """The old behaviour: one `step` per frame (buffers written out of place / in place)."""
    outs = []
    for t in range(h.shape[1]):
        m, st = mem.step(h[:, t], st)
        outs.append(m)
    return torch.stack(outs, 1), st


def prior_state(mem, B, frames):
    """A carried state where video b has seen frames[b] frames (fill counts differ, rings wrap)."""
    st, M = mem.init_state(B, tokens_per_frame=N), max(frames)
    with torch.no_grad():
        for t in range(M):
            st = mem.reset(st, torch.tensor([t == M - f for f in frames]))
            _, st = mem.step(torch.randn(B, N, D), st)
    return mem.reset(st, torch.tensor([f == 0 for f in frames]))


def assert_same(a, b):
    assert (a - b).abs().max() <= TOL if a.is_floating_point() else torch.equal(a, b)


@pytest.mark.parametrize("kind", ["dual", "dual_input", "working", "episodic"])
@pytest.mark.parametrize("prior", [None, [0, 0], [2, 2], [1, 4], [0, 7], [7, 9]])
@pytest.mark.parametrize("T", [1, 4, LE + 3])
def test_fast_scan_equals_stepping(kind, prior, T):
    mem = {"dual": lambda: make(DualMemory), "dual_input": lambda: make(DualMemory, episodic_stores="input"),
           "working": lambda: make(WorkingMemory), "episodic": lambda: make(EpisodicMemory)}[kind]()
    B = 2 if prior is None else len(prior)
    st0 = mem.init_state(B) if prior is None else prior_state(mem, B, prior)  # None: lazily sized buffers
    h = torch.randn(B, T, N, D)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            out, st = mem.scan(h, st0)
            ref, ref_st = stepped(mem, h, st0)
        assert_same(out, ref)
        assert st.keys() == ref_st.keys()
        for k in st.keys():
            assert_same(getattr(st, k), getattr(ref_st, k))
    grads = []
    for scan in (mem.scan, lambda x, s: stepped(mem, x, s)):
        mem.zero_grad()
        hg = h.clone().requires_grad_()
        out = scan(hg, st0)[0]
        if out.requires_grad:  # not when every read is of an empty buffer
            out.square().sum().backward()
        grads.append([out.requires_grad, hg.grad, *(p.grad for p in mem.parameters())])
    assert grads[0][0] == grads[1][0]
    for a, b in zip(grads[0][1:], grads[1][1:], strict=True):
        assert (a is None and b is None) or assert_same(a, b) is None


@pytest.mark.parametrize("stores", ["fused", "input"])
def test_fast_scan_matches_oracle(stores):
    mem = make(DualMemory, episodic_stores=stores).eval()
    h = torch.randn(3, LE + 2, N, D)
    with torch.no_grad():
        assert (mem.scan(h, mem.init_state(3))[0] - oracle_scan(mem, h)).abs().max() <= TOL


@pytest.mark.parametrize("T", [LE, LE + 3])  # appends only; then replacements
def test_fast_scan_syncs_once_per_scan(monkeypatch, T):
    """The fill counts come to the host once per scan; no frame adds a sync."""
    mem = make(DualMemory)
    st = prior_state(mem, 2, [1, 3])
    calls = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append(1) or tolist(self))
    monkeypatch.setattr(torch.Tensor, "__int__", lambda self: pytest.fail("per-frame host sync"))
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: pytest.fail("per-frame host sync"))
    mem.scan(torch.randn(2, T, N, D), st)
    assert len(calls) == 1
