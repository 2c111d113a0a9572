"""Properties shared by every memory: gradients, detach, dtypes, determinism, build_memory."""

from types import SimpleNamespace

import pytest
import torch

from vlmem.errors import ConfigError
from vlmem.memory import (
    DualMemory,
    EpisodicMemory,
    LarimarMemory,
    NoMemory,
    SurpriseMemory,
    TitansMemory,
    WorkingMemory,
    build_memory,
)

D, N = 16, 3


def all_memories():
    return {
        "dual": lambda: DualMemory(D, num_heads=4, L_w=2, L_e=3),
        "dual_salience": lambda: DualMemory(D, num_heads=4, L_w=2, L_e=3, use_salience_gate=True,
                                            salience_threshold=0.0),
        "working": lambda: WorkingMemory(D, num_heads=4, L_w=2),
        "episodic": lambda: EpisodicMemory(D, num_heads=4, L_e=3),
        "titans": lambda: TitansMemory(D, num_heads=2),
        "titans_update": lambda: TitansMemory(D, num_heads=2, update="titans"),
        "larimar": lambda: LarimarMemory(D, slots=4),
        "surprise": lambda: SurpriseMemory(D, num_heads=4, L=3, threshold=0.0),
        "none": lambda: NoMemory(D),
    }


@pytest.mark.parametrize("name", list(all_memories()))
def test_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    mem = all_memories()[name]()
    h = torch.randn(2, 5, N, D, requires_grad=True)  # several frames: episodic reads need a non-empty E
    out, st = mem.scan(h, mem.init_state(2))
    loss = out.pow(2).sum() + sum(mem.aux_losses(st).values(), torch.zeros(()))
    loss.backward()
    for pname, p in mem.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"
    assert h.grad is not None and torch.isfinite(h.grad).all()


@pytest.mark.parametrize("name", ["dual", "titans", "larimar", "episodic", "surprise"])
def test_state_detach_cuts_graph(name):
    torch.manual_seed(0)
    mem = all_memories()[name]()
    h = torch.randn(2, 4, N, D, requires_grad=True)
    _, st = mem.scan(h[:, :2], mem.init_state(2))
    st = st.detach()
    assert all(not v.requires_grad for v in st.as_dict().values())
    out, _ = mem.scan(h[:, 2:], st)
    out.sum().backward()
    assert h.grad[:, :2].abs().sum() == 0 and h.grad[:, 2:].abs().sum() > 0


@pytest.mark.parametrize("name", list(all_memories()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtypes(name, dtype):
    torch.manual_seed(0)
    mem = all_memories()[name]().to(dtype).eval()
    h = torch.randn(2, 5, N, D, dtype=dtype)
    with torch.no_grad():
        out, st = mem.scan(h, mem.init_state(2, None, dtype))
    assert out.dtype == dtype and out.shape == h.shape and torch.isfinite(out.float()).all()
    if name in ("titans", "titans_update"):
        assert st.S.dtype == torch.float32  # fast weights accumulate in float32
    if name == "larimar":
        assert st.M.dtype == torch.float32 and torch.isfinite(st.kl).all()


@pytest.mark.parametrize("name", list(all_memories()))
def test_deterministic_with_fixed_seed(name):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        mem = all_memories()[name]()
        h = torch.randn(2, 4, N, D)
        outs.append(mem.scan(h, mem.init_state(2))[0])  # training mode: dropout uses the seeded RNG too
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", ["dual", "titans_update", "larimar", "surprise"])
def test_state_is_bounded(name):
    mem = all_memories()[name]().eval()
    with torch.no_grad():
        _, s1 = mem.scan(torch.randn(2, 4, N, D), mem.init_state(2))
        _, s2 = mem.scan(torch.randn(2, 12, N, D), mem.init_state(2))
    assert s1.nbytes() == s2.nbytes()
    assert all(torch.is_tensor(v) for v in s2.as_dict().values())


def cfg(**kw):
    base = dict(kind="dual", num_heads=8, L_w=8, L_e=32, dropout=0.1, episodic_stores="fused",
                use_salience_gate=False, salience_threshold=0.5, titans_heads=4, titans_update="simple",
                titans_decay=0.95, titans_momentum=0.9, titans_lr=0.1, larimar_slots=32, larimar_noise=0.1,
                larimar_kl_weight=0.1)
    base.update(kw)
    return SimpleNamespace(**base)


def test_build_memory_kinds_and_names():
    kinds = {"dual": DualMemory, "working": WorkingMemory, "episodic": EpisodicMemory, "titans": TitansMemory,
             "larimar": LarimarMemory, "surprise": SurpriseMemory, "none": NoMemory}
    for kind, cls in kinds.items():
        assert type(build_memory(cfg(kind=kind), 64)) is cls
    mem = build_memory(cfg(L_w=4, L_e=6, num_heads=2), 32)
    assert (mem.L_w, mem.L_e, mem.num_heads) == (4, 6, 2)
    names = set(dict(mem.named_parameters()))
    for n in ["working_attention.in_proj_weight", "working_attention.out_proj.weight",
              "episodic_attention.in_proj_weight", "memory_fusion_mlp.0.weight", "memory_fusion_mlp.2.weight"]:
        assert n in names
    assert isinstance(mem.working_attention, torch.nn.MultiheadAttention) and mem.working_attention.batch_first


def test_build_memory_errors_name_key_and_choices():
    with pytest.raises(ConfigError, match=r"model\.memory\.kind.*dual"):
        build_memory(cfg(kind="lstm"), 64)
    with pytest.raises(ConfigError, match="num_heads"):
        build_memory(cfg(num_heads=5), 64)
    with pytest.raises(ConfigError, match="titans_heads"):
        build_memory(cfg(kind="titans", titans_heads=3), 64)
    with pytest.raises(ConfigError, match="episodic_stores"):
        build_memory(cfg(episodic_stores="both"), 64)
    with pytest.raises(ConfigError, match="titans_update"):
        build_memory(cfg(kind="titans", titans_update="fast"), 64)


def test_memory_package_is_standalone():
    import subprocess
    import sys
    code = ("import sys, vlmem.memory; bad=[m for m in sys.modules if m.startswith(('vlmem.model','vlmem.data',"
            "'vlmem.train'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
