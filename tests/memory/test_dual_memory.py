"""DualMemory / WorkingMemory / EpisodicMemory against the per-video Python-list oracle."""

import pytest
import torch
import torch.nn.functional as F

from tests.memory.oracle import oracle_scan, padded_scan
from vlmem.errors import UsageError
from vlmem.memory import DualMemory, EpisodicMemory, WorkingMemory

D, H, N, LW, LE = 16, 4, 3, 3, 5


def make(cls=DualMemory, seed=0, **kw):
    torch.manual_seed(seed)
    if cls is DualMemory:
        kw = {"L_w": LW, "L_e": LE, **kw}
    elif cls is WorkingMemory:
        kw = {"L_w": LW, **kw}
    else:
        kw = {"L_e": LE, **kw}
    return cls(D, num_heads=H, **kw).eval()


@pytest.mark.parametrize("T", [1, 2, LW, LW + 1, LE, LE + 4])  # single frame, < L_w, L_w..L_e, > L_e
@pytest.mark.parametrize("stores", ["fused", "input"])
def test_dual_matches_oracle_all_lengths(T, stores):
    mem = make(episodic_stores=stores)
    h = torch.randn(2, T, N, D)
    with torch.no_grad():
        out, st = mem.scan(h, mem.init_state(2, None, torch.float32))
        ref = oracle_scan(mem, h)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert int(st.w_fill[0]) == min(T, LW) and int(st.e_fill[0]) == min(T, LE)


@pytest.mark.parametrize("cls", [WorkingMemory, EpisodicMemory])
def test_single_branch_matches_oracle(cls):
    mem = make(cls)
    h = torch.randn(3, LE + 3, N, D)
    with torch.no_grad():
        out, _ = mem.scan(h, mem.init_state(3))
        torch.testing.assert_close(out, oracle_scan(mem, h), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(padded_scan(mem, h), oracle_scan(mem, h), atol=1e-5, rtol=1e-5)


def test_mixed_fill_counts_are_masked_like_unpadded_videos():
    """Videos of different lengths packed in one batch (reset mid-way) equal separate unpadded runs."""
    mem = make()
    T = 10
    h = torch.randn(3, T, N, D)
    starts = {0: 0, 1: 2, 2: 7}  # video b restarts at frame starts[b]
    st = mem.init_state(3)
    outs = []
    with torch.no_grad():
        for t in range(T):
            done = torch.tensor([starts[b] == t for b in range(3)])
            st = mem.reset(st, done)
            m, st = mem.step(h[:, t], st)
            outs.append(m)
        out = torch.stack(outs, 1)
        for b in range(3):
            s = starts[b]
            ref = oracle_scan(mem, h[b:b + 1, s:])
            torch.testing.assert_close(out[b:b + 1, s:], ref, atol=1e-5, rtol=1e-5)


def test_fifo_capacity_and_order():
    mem = make(WorkingMemory)
    st = mem.init_state(2)
    h = torch.randn(2, 7, N, D)
    for t in range(7):
        _, st = mem.step(h[:, t], st)
        assert int(st.w_fill[0]) == min(t + 1, LW)
    frames = st.w_idx[0]
    assert sorted(frames.tolist()) == [4, 5, 6]  # oldest dropped first
    # each slot holds the projected keys of the frame it names
    from vlmem.memory.base import project_kv
    for slot, f in enumerate(frames.tolist()):
        k, _ = project_kv(mem.working_attention, h[:, f])
        torch.testing.assert_close(st.w_k[:, :, slot], k)


def test_similarity_replacement_picks_most_similar():
    mem = make(EpisodicMemory)
    st = mem.init_state(1)
    base = torch.randn(LE, N, D)
    for t in range(LE):
        _, st = mem.step(base[t][None], st)
    target = 3
    probe = base[target] + 0.01 * torch.randn(N, D)
    sims = F.cosine_similarity(base.flatten(1), probe.flatten()[None], dim=-1)
    assert int(sims.argmax()) == target
    _, st2, info = mem.step(probe[None], st, return_info=True)
    assert int(info["e_slot"][0]) == target and bool(info["e_replaced"][0])
    assert abs(float(info["e_replace_sim"][0]) - float(sims[target])) < 1e-5
    assert int(st2.e_idx[0, target]) == LE  # frame index of the replacement
    assert torch.equal(st2.e_idx[0, :target], st.e_idx[0, :target])


def test_gated_fusion_bounds():
    mem = make()
    h = torch.randn(2, 6, N, D) * 3
    st = mem.init_state(2)
    captured = {}
    hook = mem.memory_fusion_mlp.register_forward_hook(lambda m, i, o: captured.update(inp=i[0], g=torch.sigmoid(o)))
    with torch.no_grad():
        for t in range(6):
            m, st, info = mem.step(h[:, t], st, return_info=True)
            g = captured["g"]
            m_w, m_e = captured["inp"].split(D, -1)
            assert (g > 0).all() and (g < 1).all()
            lo, hi = torch.minimum(m_w, m_e), torch.maximum(m_w, m_e)
            assert (m >= lo - 1e-6).all() and (m <= hi + 1e-6).all()
            assert 0 < float(info["gate_mean"].min()) < 1
    hook.remove()


def test_empty_buffers_read_zeros_and_zero_frames_error():
    mem = make()
    m, st = mem.step(torch.randn(2, N, D), mem.init_state(2))
    assert torch.equal(m, torch.zeros_like(m))  # frame 0: both buffers empty
    with pytest.raises(UsageError, match="zero frames"):
        mem.scan(torch.randn(2, 0, N, D), mem.init_state(2))


def test_batch_isolation_and_reset():
    mem = make()
    h = torch.randn(2, 9, N, D)
    h2 = h.clone()
    h2[1] = torch.randn(9, N, D)
    with torch.no_grad():
        a, sa = mem.scan(h, mem.init_state(2))
        b, _ = mem.scan(h2, mem.init_state(2))
        assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
        st = mem.reset(sa, torch.tensor([False, True]))
        assert int(st.w_fill[1]) == 0 and int(st.e_fill[1]) == 0 and (st.w_idx[1] == -1).all()
        assert torch.equal(st.w_k[0], sa.w_k[0]) and int(st.t[0]) == 9 and int(st.t[1]) == 0
        # after the reset, video 1 behaves like a fresh video
        c, _ = mem.scan(h[:, :4], st)
        torch.testing.assert_close(c[1:], oracle_scan(mem, h[1:, :4]), atol=1e-5, rtol=1e-5)


def test_info_keys_and_frame_indices():
    mem = make()
    out, st, info = mem.scan(torch.randn(2, 12, N, D), mem.init_state(2), return_info=True)
    for k in ["gate_mean", "gate_std", "w_fill", "e_fill", "w_attn", "e_attn", "w_frames", "e_frames",
              "e_slot", "e_replaced", "e_replace_sim"]:
        assert k in info and info[k].shape[:2] == (2, 12)
    mass = info["w_attn"][:, 5].sum(-1)
    torch.testing.assert_close(mass, torch.ones(2))  # full buffer: mass sums to one
    assert sorted(st.w_idx[0].tolist()) == [9, 10, 11]
    assert (st.e_idx >= 0).all() and bool(info["e_replaced"][:, LE:].all())


def test_salience_gate_controls_writes():
    mem = make(use_salience_gate=True, salience_threshold=2.0)  # sigmoid < 2: never writes
    _, st, info = mem.scan(torch.randn(2, 4, N, D), mem.init_state(2), return_info=True)
    assert int(st.e_fill.max()) == 0 and (info["e_slot"] == -1).all() and "salience" in info
    mem = make(use_salience_gate=True, salience_threshold=0.0)
    _, st = mem.scan(torch.randn(2, 4, N, D), mem.init_state(2))
    assert (st.e_fill == 4).all()


def test_training_mode_dropout_only_in_training():
    mem = make(dropout=0.5)
    h = torch.randn(2, 4, N, D)
    mem.train()
    a, _ = mem.scan(h, mem.init_state(2))
    b, _ = mem.scan(h, mem.init_state(2))
    assert not torch.allclose(a, b)
    mem.eval()
    with torch.no_grad():
        torch.testing.assert_close(mem.scan(h, mem.init_state(2))[0], oracle_scan(mem, h), atol=1e-5, rtol=1e-5)


def test_grad_path_and_info_path_match_oracle():
    """With autograd on, writes are out of place; with return_info the read uses explicit weights."""
    mem = make(dropout=0.0).train()
    h = torch.randn(3, LE + 2, N, D)
    out, _ = mem.scan(h, mem.init_state(3))
    out_i, _, info = mem.scan(h, mem.init_state(3), return_info=True)
    with torch.no_grad():
        ref = oracle_scan(mem, h)
    torch.testing.assert_close(out.detach(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_i.detach(), ref, atol=1e-5, rtol=1e-5)
    # mixed fill counts with explicit weights: reset video 2 mid-way
    st = mem.init_state(3)
    for t in range(4):
        _, st = mem.step(h[:, t], st)
    st = mem.reset(st, torch.tensor([False, False, True]))
    m, _, info = mem.step(h[:, 4], st, return_info=True)
    assert torch.equal(m[2], torch.zeros_like(m[2])) and float(info["w_attn"][2].sum()) == 0
    torch.testing.assert_close(info["w_attn"][0].sum(), torch.tensor(1.0))


def test_state_scan_does_not_mutate_callers_state():
    mem = make()
    h = torch.randn(2, 4, N, D)
    with torch.no_grad():
        _, st = mem.scan(h, mem.init_state(2))
        before = {k: v.clone() for k, v in st.items()}
        a, _ = mem.scan(h, st)
        b, _ = mem.scan(h, st)
    assert all(torch.equal(before[k], v) for k, v in st.items()) and torch.equal(a, b)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.9])
def test_gate_init_sets_the_starting_gate(p):
    """gate_init = p starts the working branch's share g near p (default init: near 1/2)."""
    h = torch.randn(4, 6, N, D)

    def mean_gate(mem):
        with torch.no_grad():
            _, st = mem.scan(h, mem.init_state(4))
        return float(st.g_sum.mean() / 6)

    assert abs(mean_gate(make(gate_init=p)) - p) < 0.1
    assert abs(mean_gate(make()) - 0.5) < 0.15
    with pytest.raises(UsageError, match="gate_init"):
        make(gate_init=1.0)
