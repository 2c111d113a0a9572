import pytest
import torch

from vlmem.memory import LarimarMemory, TitansMemory

D, N = 32, 4


@pytest.mark.parametrize("update", ["simple", "titans"])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_titans_two_halves_match_full_pass(update, chunk_size):
    torch.manual_seed(0)
    mem = TitansMemory(D, num_heads=4, update=update, chunk_size=chunk_size)
    h = torch.randn(2, 10, N, D)
    full, s_full = mem.scan(h, mem.init_state(2))
    a, s = mem.scan(h[:, :5], mem.init_state(2))
    b, s = mem.scan(h[:, 5:], s.detach())
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s.S, s_full.S, atol=1e-5, rtol=1e-5)


def test_titans_simple_rule_closed_form():
    torch.manual_seed(0)
    mem = TitansMemory(D, num_heads=2)
    h = torch.randn(1, N, D)
    st = mem.init_state(1)
    _, st1, info = mem.step(h, st, return_info=True)
    k = torch.nn.functional.normalize(mem.to_k(h).view(1, N, 2, D // 2).transpose(1, 2), dim=-1)
    v = mem.to_v(h).view(1, N, 2, D // 2).transpose(1, 2)
    a = torch.sigmoid(mem.write_gate(h)).transpose(1, 2)
    torch.testing.assert_close(st1.S, (k * a[..., None]).transpose(-1, -2) @ v)
    assert info["s_norm"].shape == (1,) and 0 < float(info["write_gate_mean"]) < 1


def test_titans_surprise_update_reduces_error():
    """The titans rule is gradient descent on ||k S - v||^2: repeating a frame lowers the error."""
    torch.manual_seed(0)
    mem = TitansMemory(D, num_heads=4, update="titans", lr=0.5, momentum=0.0, decay=1.0)
    h = torch.randn(1, N, D)
    st = mem.init_state(1)
    errs = []
    for _ in range(6):
        m, st, info = mem.step(h, st, return_info=True)
        errs.append(float(info["surprise_norm"]))
    assert errs[-1] < errs[0]


def test_larimar_reads_back_written_patterns():
    torch.manual_seed(0)
    mem = LarimarMemory(D, slots=32, noise=0.01)
    st = mem.init_state(2)
    z = torch.randn(2, 20, D)  # 20 items <= 32 slots, written in 5 frames of 4
    for i in range(5):
        st = mem.write_codes(z[:, 4 * i:4 * i + 4], st)
    z_read, _ = mem.read_codes(z, st)
    rel = (z_read - z).norm() / z.norm()
    assert rel < 0.05, rel
    assert torch.isfinite(st.kl).all() and (st.kl > 0).all()
    u = mem.utilisation(st)
    assert ((u > 0) & (u <= 1)).all()


def test_larimar_kl_finite_and_aux_loss():
    torch.manual_seed(0)
    mem = LarimarMemory(D, slots=8)
    out, st, info = mem.scan(torch.randn(2, 6, N, D).bfloat16().float(), mem.init_state(2), return_info=True)
    assert torch.isfinite(info["kl"]).all() and info["slot_usage"].shape == (2, 6, 8)
    aux = mem.aux_losses(st)
    assert set(aux) == {"memory_kl"} and torch.isfinite(aux["memory_kl"])
    torch.testing.assert_close(info["slot_usage"][:, -1].sum(-1), torch.ones(2))


@pytest.mark.parametrize("update", ["simple", "titans"])
def test_titans_batched_scan_equals_stepping(update):
    torch.manual_seed(0)
    mem = TitansMemory(D, num_heads=4, update=update, chunk_size=2)
    h = torch.randn(2, 6, N, D)
    out, st = mem.scan(h, mem.init_state(2))
    s = mem.init_state(2)
    ref = []
    for t in range(6):
        m, s = mem.step(h[:, t], s)
        ref.append(m)
    torch.testing.assert_close(out, torch.stack(ref, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(st.S, s.S, atol=1e-5, rtol=1e-5)
    out_i, _, info = mem.scan(h, mem.init_state(2), return_info=True)  # info path steps frame by frame
    torch.testing.assert_close(out_i, out, atol=1e-5, rtol=1e-5)
    assert info["s_norm"].shape == (2, 6)


def test_larimar_refinement_steps_reach_the_least_squares_address():
    """Ridge addressing + `steps` refinements approach the exact pseudo-inverse address z M^+."""
    torch.manual_seed(0)
    errs = []
    for steps in (0, 3):
        mem = LarimarMemory(D, slots=8, steps=steps, ridge=0.3)  # a large ridge: a visible bias to refine
        st = mem.init_state(2)
        z = torch.randn(2, 5, D)
        exact = z @ torch.linalg.pinv(st.M)
        errs.append(float((mem.address(z, st.M) - exact).norm() / exact.norm()))
    assert errs[1] < 0.2 * errs[0], errs


def test_larimar_alpha_moves_a_fraction_of_the_posterior_step():
    torch.manual_seed(0)
    z = torch.randn(2, 4, D)
    full, part = LarimarMemory(D, slots=8), LarimarMemory(D, slots=8, alpha=0.2)
    part.load_state_dict(full.state_dict())
    st = full.init_state(2)
    a, b = full.write_codes(z, st), part.write_codes(z, st)
    torch.testing.assert_close(b.M - st.M, 0.2 * (a.M - st.M))
    torch.testing.assert_close(b.U - st.U, 0.2 * (a.U - st.U))
    assert (torch.linalg.eigvalsh(b.U) > 0).all()


def test_larimar_knobs_from_the_recipe():
    from vlmem.memory import build_memory
    from vlmem.recipe import load_recipe, shipped_recipes_dir

    cfg = load_recipe(str(shipped_recipes_dir() / "larimar.toml")).model.memory
    mem = build_memory(cfg, 32)
    assert (mem.steps, mem.alpha) == (3, 0.2)  # the seed's
