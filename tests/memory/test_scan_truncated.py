"""`Memory.scan_truncated`: same values as `scan`, gradients cut between chunks (TBPTT)."""

import torch

from vlmem.memory.dual import DualMemory


def test_truncated_scan_matches_scan_and_cuts_gradients_between_chunks():
    torch.manual_seed(0)
    mem = DualMemory(16, num_heads=2, L_w=2, L_e=3, dropout=0.0)
    h = torch.randn(2, 6, 3, 16, requires_grad=True)
    full, _ = mem.scan(h, mem.init_state(2, tokens_per_frame=3))
    chunked, _, info = mem.scan_truncated(h, mem.init_state(2, tokens_per_frame=3), chunk=4, return_info=True)
    torch.testing.assert_close(chunked, full)
    assert info["gate_mean"].shape == (2, 6)
    chunked[:, 4:].sum().backward()  # the second chunk's outputs
    assert h.grad[:, :4].abs().sum() == 0  # ... do not reach the first chunk's frames
    assert h.grad[:, 4:].abs().sum() > 0
