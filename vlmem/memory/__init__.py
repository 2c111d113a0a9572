"""Memory zoo: recurrences over video frames with batched, tensor-only state.

    from vlmem.memory import build_memory
    mem = build_memory(cfg.model.memory, dim)
    state = mem.init_state(B, device, dtype)
    outs, state = mem.scan(h, state)          # h [B, T, N, D]

Standalone: imports nothing from vlmem's model / data / train packages.
"""

from __future__ import annotations

from vlmem.errors import ConfigError
from vlmem.memory.base import Memory, MemoryState
from vlmem.memory.dual import DualMemory
from vlmem.memory.episodic import EpisodicMemory
from vlmem.memory.larimar import LarimarMemory
from vlmem.memory.none import NoMemory
from vlmem.memory.surprise import SurpriseMemory
from vlmem.memory.titans import TitansMemory
from vlmem.memory.working import WorkingMemory

MEMORY_KINDS = ("dual", "working", "episodic", "titans", "larimar", "surprise", "none")

__all__ = ["Memory", "MemoryState", "DualMemory", "WorkingMemory", "EpisodicMemory", "TitansMemory",
           "LarimarMemory", "SurpriseMemory", "NoMemory", "build_memory", "MEMORY_KINDS"]

_DEFAULTS = dict(num_heads=8, L_w=8, L_e=32, dropout=0.1, episodic_stores="fused", use_salience_gate=False,
                 salience_threshold=0.5, titans_heads=4, titans_update="simple", titans_decay=0.95,
                 titans_momentum=0.9, titans_lr=0.1, larimar_slots=32, larimar_noise=0.1, larimar_kl_weight=0.1, gate_init=None,
                 larimar_steps=0, larimar_alpha=1.0, surprise_threshold=0.25,
                 surprise_loss_weight=0.1)


def build_memory(cfg, dim: int) -> Memory:
    """Build the memory described by a recipe's `[model.memory]` section (any object with
    the field names as attributes; missing fields take their defaults)."""
    c = {k: getattr(cfg, k, v) for k, v in _DEFAULTS.items()}
    kind = getattr(cfg, "kind", "dual")
    if kind not in MEMORY_KINDS:
        raise ConfigError(f"model.memory.kind={kind!r} is unknown; valid choices: {', '.join(MEMORY_KINDS)}")
    if kind == "dual":
        return DualMemory(dim, c["num_heads"], c["L_w"], c["L_e"], c["dropout"], c["episodic_stores"],
                          c["use_salience_gate"], c["salience_threshold"], gate_init=c["gate_init"])
    if kind == "working":
        return WorkingMemory(dim, c["num_heads"], c["L_w"], c["dropout"])
    if kind == "episodic":
        if c["episodic_stores"] not in ("fused", "input"):
            raise ConfigError(f"model.memory.episodic_stores={c['episodic_stores']!r}; valid choices: fused, input")
        return EpisodicMemory(dim, c["num_heads"], c["L_e"], c["dropout"], c["use_salience_gate"],
                              c["salience_threshold"])
    if kind == "titans":
        return TitansMemory(dim, c["titans_heads"], c["titans_update"], c["titans_decay"], c["titans_momentum"],
                            c["titans_lr"])
    if kind == "larimar":
        return LarimarMemory(dim, c["larimar_slots"], c["larimar_noise"], c["larimar_kl_weight"],
                             steps=c["larimar_steps"], alpha=c["larimar_alpha"])
    if kind == "surprise":
        return SurpriseMemory(dim, c["num_heads"], c["L_e"], c["surprise_threshold"], c["surprise_loss_weight"],
                              c["dropout"])
    return NoMemory(dim)
