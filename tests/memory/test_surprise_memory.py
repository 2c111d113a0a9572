"""The surprise-driven memory: writes follow prediction error, the buffer stays bounded, the
predictor learns from its own loss, and per-frame work does not grow with the frames seen."""

import torch

from vlmem.memory import SurpriseMemory

D, N = 16, 3


def _events(segments: int, length: int, seed: int = 0) -> torch.Tensor:
    """[1, segments*length, N, D]: `segments` constant stretches (events) with tiny noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(segments, 1, N, D, generator=g).expand(segments, length, N, D)
    return (base + 0.01 * torch.randn(segments, length, N, D, generator=g)).reshape(1, -1, N, D)


def test_writes_happen_at_event_boundaries_only():
    torch.manual_seed(0)
    mem = SurpriseMemory(D, num_heads=4, L=8, threshold=0.25).eval()
    h = _events(4, 5)
    with torch.no_grad():
        _, st, info = mem.scan(h, mem.init_state(1), return_info=True)
    boundaries = info["boundary"][0].nonzero().flatten().tolist()
    assert boundaries == [0, 5, 10, 15]
    assert int(st.e_fill[0]) == 4 and st.e_idx[0, :4].tolist() == [0, 5, 10, 15]


def test_buffer_bounded_and_keeps_turning_over():
    torch.manual_seed(0)
    mem = SurpriseMemory(D, num_heads=4, L=3, threshold=0.25).eval()
    with torch.no_grad():
        _, short = mem.scan(_events(2, 3), mem.init_state(1))
        _, long = mem.scan(_events(40, 3, seed=1), mem.init_state(1))
    assert short.nbytes() == long.nbytes()
    assert int(long.e_fill[0]) == 3
    assert int(long.e_idx[0].max()) >= 39 * 3  # the latest event replaced an older entry


def test_prediction_loss_trains_the_predictor():
    torch.manual_seed(0)
    mem = SurpriseMemory(D, num_heads=4, L=4, threshold=0.25, loss_weight=1.0)
    # A predictable stream: frame t+1 = a fixed rotation of frame t.
    rot = torch.linalg.qr(torch.randn(D, D))[0]
    x = [torch.randn(1, N, D)]
    for _ in range(11):
        x.append(x[-1] @ rot)
    h = torch.stack(x, 1)
    opt = torch.optim.Adam(mem.predictor.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        _, st = mem.scan(h, mem.init_state(1))
        loss = mem.aux_losses(st)["memory_prediction"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]


def test_batched_videos_are_independent():
    torch.manual_seed(0)
    mem = SurpriseMemory(D, num_heads=4, L=4, threshold=0.25).eval()
    a, b = _events(3, 4), _events(6, 2, seed=2)
    with torch.no_grad():
        both, _ = mem.scan(torch.cat([a, b]), mem.init_state(2))
        alone, _ = mem.scan(a, mem.init_state(1))
    torch.testing.assert_close(both[:1], alone)


def test_per_frame_cost_constant_in_frames_seen():
    """The attention reads at most L slots: FLOPs of one step after 10 frames == after 500 frames."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    mem = SurpriseMemory(D, num_heads=4, L=4, threshold=0.0).eval()

    def flops_after(frames):
        with torch.no_grad():
            _, st = mem.scan(torch.randn(1, frames, N, D), mem.init_state(1))
            counter = FlopCounterMode(display=False)
            with counter:
                mem.step(torch.randn(1, N, D), st)
        return counter.get_total_flops()

    assert flops_after(10) == flops_after(500) > 0


def test_info_marks_replacements():
    torch.manual_seed(0)
    mem = SurpriseMemory(D, num_heads=4, L=2, threshold=0.25).eval()
    with torch.no_grad():
        _, _, info = mem.scan(_events(4, 2), mem.init_state(1), return_info=True)
    assert info["boundary"][0].tolist() == [True, False] * 4
    assert info["e_replaced"][0].tolist() == [False, False, False, False, True, False, True, False]
    assert (info["e_replace_sim"][0][info["e_replaced"][0]] > 0).all()
