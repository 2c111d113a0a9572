"""PlainDecoder / TRMDecoder: shapes, answer-only loss, gradient flow, TRM recursion, tiny overfit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlmem.errors import ConfigError
from vlmem.model.decoders import (
    PlainDecoder,
    TRMDecoder,
    build_decoder,
    strip_eos,
    teacher_forcing_batch,
)

V, H = 16, 32
PAD, BOS, EOS = 0, 1, 2
ANSWERS = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [6, 5]]




def _batch(hidden=H, seed=0):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(4, 5, hidden, generator=g)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 3:] = False
    ids, labels = teacher_forcing_batch(ANSWERS, BOS, EOS, PAD)
    return ctx, mask, ids, labels


def _make(kind, **kw):
    torch.manual_seed(0)
    if kind == "plain":
        return build_decoder("plain", V, **{"hidden": H, "layers": 2, "heads": 4, **kw})
    return build_decoder("trm", V, **{"hidden": H, "layers": 2, "heads": 4, "n": 2, "T": 2, **kw})


KINDS = ["plain", "trm"]


def test_teacher_forcing_layout():
    ids, labels = teacher_forcing_batch([[5, 6], [7]], BOS, EOS, PAD)
    assert ids.tolist() == [[BOS, 5, 6], [BOS, 7, PAD]]
    assert labels.tolist() == [[5, 6, EOS], [7, EOS, -100]]
    ids, labels = teacher_forcing_batch([[5, 6, 7]], BOS, EOS, PAD, length=3)
    assert ids.tolist() == [[BOS, 5, 6]] and labels.tolist() == [[5, 6, EOS]]
    assert strip_eos(torch.tensor([[5, EOS, EOS], [4, 4, 4]]), EOS) == [[5], [4, 4, 4]]


@pytest.mark.parametrize("kind", KINDS)
def test_shapes(kind):
    ctx, mask, ids, labels = _batch()
    m = _make(kind, **({"halting": True, "deep_supervision": 2} if kind == "trm" else {}))
    out = m(ctx, mask, ids, labels)
    assert out["logits"].shape == (4, ids.shape[1], V)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    if kind == "trm":
        assert out["halt_loss"].dim() == 0
    assert m(ctx, mask, ids)["loss"] is None
    gen = m.generate(ctx, mask, max_new_tokens=6, bos_id=BOS, eos_id=EOS)
    assert gen.dtype == torch.long and gen.shape[0] == 4 and gen.shape[1] <= 6
    if kind == "trm":
        assert gen.shape[1] == 6


@pytest.mark.parametrize("kind", KINDS)
def test_loss_only_on_answer_tokens(kind):
    ctx, mask, ids, labels = _batch()
    m = _make(kind).eval()
    out = m(ctx, mask, ids, labels)
    valid = labels != -100
    manual = F.cross_entropy(out["logits"][valid], labels[valid])
    torch.testing.assert_close(out["loss"], manual)

    # Inputs at positions whose label is -100 (padded answer slots, padded context) change nothing.
    ids2 = ids.clone()
    ids2[~valid] = 9
    ctx2 = ctx.clone()
    ctx2[~mask] = 100.0
    out2 = m(ctx2, mask, ids2, labels)
    torch.testing.assert_close(out2["loss"], out["loss"])
    torch.testing.assert_close(out2["logits"][valid], out["logits"][valid])

    # Changing an answer label changes the loss.
    labels3 = labels.clone()
    labels3[0, 1] = 3
    assert not torch.allclose(m(ctx, mask, ids, labels3)["loss"], out["loss"])


def test_plain_is_causal_over_answer():
    ctx, mask, ids, _ = _batch()
    m = _make("plain").eval()
    a = m(ctx, mask, ids)["logits"]
    ids2 = ids.clone()
    ids2[:, 2:] = 4
    b = m(ctx, mask, ids2)["logits"]
    torch.testing.assert_close(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2:], b[:, 2:])


def test_trm_never_reads_answer_values():
    ctx, mask, ids, labels = _batch()
    m = _make("trm").eval()
    a = m(ctx, mask, ids, labels)
    b = m(ctx, mask, torch.full_like(ids, 7), labels)
    torch.testing.assert_close(a["logits"], b["logits"])
    c = m(ctx, mask, None, labels)  # labels alone fix the number of slots
    torch.testing.assert_close(a["logits"], c["logits"])


@pytest.mark.parametrize(
    "kind,kw",
    [("plain", {}), ("plain", {"tie_embeddings": False}), ("trm", {"halting": True, "deep_supervision": 2})],
)
def test_gradients_reach_all_parameters(kind, kw):
    ctx, mask, ids, labels = _batch()
    m = _make(kind, **kw)
    m(ctx, mask, ids, labels)["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    if kind == "plain":
        assert (m.head.weight is m.tok_emb.weight) == kw.get("tie_embeddings", True)


def _graph_size(t: torch.Tensor) -> int:
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return len(seen)


def test_trm_only_last_recursion_builds_graph():
    ctx, mask, ids, labels = _batch()
    sizes = {}
    for T in (1, 3):
        m = _make("trm", T=T, n=2)
        sizes[T] = _graph_size(m(ctx, mask, ids, labels)["loss"])
    assert sizes[1] == sizes[3]  # the T-1 extra recursions ran under no_grad
    # ... while n (inside the graded recursion) does grow the graph.
    assert _graph_size(_make("trm", T=1, n=3)(ctx, mask, ids, labels)["loss"]) > sizes[1]

    # Deep supervision detaches (y, z): the graph holds one recursion per step, not a chain.
    one = _graph_size(_make("trm", T=1, n=2, deep_supervision=1)(ctx, mask, ids, labels)["loss"])
    three = _make("trm", T=1, n=2, deep_supervision=3)(ctx, mask, ids, labels)["loss"]
    assert _graph_size(three) < 3.5 * one

    # The context gets a gradient (through the last recursion only).
    ctx_g = ctx.clone().requires_grad_(True)
    _make("trm", T=3)(ctx_g, mask, ids, labels)["loss"].backward()
    assert ctx_g.grad is not None and ctx_g.grad[mask].abs().sum() > 0
    assert ctx_g.grad[~mask].abs().sum() == 0


def test_trm_minimal_recursion_and_halting():
    ctx, mask, ids, labels = _batch()
    m = _make("trm", T=1, n=1)
    out = m(ctx, mask, ids, labels)
    assert out["logits"].shape == (4, ids.shape[1], V) and "halt_loss" not in out
    out["loss"].backward()
    m = _make("trm", T=1, n=1, deep_supervision=3, halting=True).eval()
    out = m(ctx, mask, ids, labels)
    # q head starts at bias -5 (official init): nothing is correct yet, so the BCE is small.
    assert 0 < out["halt_loss"].item() < 0.1
    with torch.no_grad():
        m.q_head.bias.fill_(5.0)  # halts after the first supervision step
    gen = m.generate(ctx, mask, max_new_tokens=4, bos_id=BOS, eos_id=EOS)
    assert gen.shape == (4, 4)


def test_trm_generate_fills_after_eos():
    ctx, mask, _, _ = _batch()
    m = _make("trm").eval()
    with torch.no_grad():
        m.head.weight.zero_()

    # All logits equal -> argmax is token 0 everywhere; force slot 1 to eos through a hook.
    def hook(mod, inp, out):
        out = out.clone()
        out[:, 1, EOS] = 1.0
        return out

    h = m.head.register_forward_hook(hook)
    gen = m.generate(ctx, mask, max_new_tokens=4, bos_id=BOS, eos_id=EOS)
    h.remove()
    assert gen.tolist() == [[0, EOS, EOS, EOS]] * 4
    assert strip_eos(gen, EOS) == [[0]] * 4


def test_build_decoder_errors_and_kinds():
    assert isinstance(build_decoder("plain", V, hidden=H, layers=1), PlainDecoder)
    assert isinstance(build_decoder("trm", V, hidden=H, layers=1), TRMDecoder)
    with pytest.raises(ConfigError, match="plain, trm"):
        build_decoder("lstm", V)
    with pytest.raises(ConfigError, match="n must be >= 1"):
        build_decoder("trm", V, hidden=H, n=0)
    with pytest.raises(ConfigError, match="divisible"):
        build_decoder("plain", V, hidden=30, heads=4)


def test_deterministic_with_seed():
    ctx, mask, ids, labels = _batch()
    for kind in KINDS:
        a = _make(kind)(ctx, mask, ids, labels)["loss"]
        b = _make(kind)(ctx, mask, ids, labels)["loss"]
        assert a.item() == b.item()


@pytest.mark.parametrize(
    "kind,kw",
    [("plain", {}), ("trm", {"n": 2, "T": 2, "deep_supervision": 2, "halting": True})],
)
def test_overfit_four_pairs(kind, kw):
    ctx, mask, ids, labels = _batch(hidden=64)
    torch.manual_seed(0)
    m = build_decoder(kind, V, hidden=64, layers=2, heads=4, **kw)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(200):
        out = m(ctx, mask, ids, labels)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        if out["loss"].item() < 0.05:
            break
    assert out["loss"].item() < 0.1
    m.eval()
    gen = m.generate(ctx, mask, max_new_tokens=ids.shape[1], bos_id=BOS, eos_id=EOS)
    assert strip_eos(gen, EOS) == ANSWERS
