"""The batched scan under autograd: outputs and gradients within 1e-6 of stepping frame by frame,
and no per-frame zero-filled gradient of a tensor that holds every frame (a slice of one tensor of
all frames per frame made the backward quadratic in the number of frames)."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from tests.memory.test_scan_fast import make, prior_state, stepped
from vlmem.memory import DualMemory, EpisodicMemory, WorkingMemory

D, N = 16, 3


def _fwd_bwd(scan, mem, h, st0):
    mem.zero_grad()
    hg = h.clone().requires_grad_()
    out, st = scan(hg, st0)
    (out.square().sum() + st.as_dict().get("e_k", out).square().sum()).backward()
    return [out.detach(), hg.grad, *(p.grad for p in mem.parameters())]


@pytest.fixture
def float64():
    """1e-6 is a meaningful bound in float64 (float32 rounding alone reaches 1e-5 on these sums)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("cls", [DualMemory, WorkingMemory, EpisodicMemory])
@pytest.mark.parametrize("prior", [[0, 0], [1, 4], [7, 9]])
def test_fast_scan_outputs_and_gradients_within_1e6_of_stepping(float64, cls, prior):
    mem = make(cls)
    st0 = prior_state(mem, len(prior), prior)
    h = torch.randn(len(prior), 11, N, D)  # the rings wrap, the episodic buffer replaces
    fast = _fwd_bwd(mem.scan, mem, h, st0)
    ref = _fwd_bwd(lambda x, s: stepped(mem, x, s), mem, h, st0)
    for a, b in zip(fast, ref, strict=True):
        assert (a - b).abs().max() <= 1e-6


def _zero_fills_of_all_frames(mem, T):
    B = 2
    st0 = prior_state(mem, B, [5, 5])
    h = torch.randn(B, T, N, D, requires_grad=True)
    frames_numel = B * T * N * D  # the keys (or values) of all frames of the scan
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        out, _ = mem.scan(h, st0)
        out.square().sum().backward()
    big = 0
    for e in prof.events():
        if e.name in ("aten::fill_", "aten::zero_") and e.input_shapes and e.input_shapes[0]:
            numel = 1
            for s in e.input_shapes[0]:
                numel *= s
            big += numel >= frames_numel
    return big


@pytest.mark.parametrize("cls", [DualMemory, WorkingMemory])
def test_backward_does_not_zero_fill_all_frames_per_frame(cls):
    assert _zero_fills_of_all_frames(make(cls), 24) <= 2
