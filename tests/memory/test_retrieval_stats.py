"""Retrieval statistics in the training metrics: attention entropy and top-slot age per read."""

from __future__ import annotations

import math

import torch

from vlmem.memory import DualMemory
from vlmem.train.metrics import memory_stats, plot_curves, retrieval_stats


def test_entropy_and_age_by_hand():
    # one video, 3 reads over 2 slots: empty buffer, one slot (frame 0), two slots split 1:3
    mass = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.25, 0.75]]])
    frames = torch.tensor([[[-1, -1], [0, -1], [0, 1]]])
    stats = retrieval_stats(mass, frames, "episodic")
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert math.isclose(stats["mem/episodic_attn_entropy"], (0.0 + h) / 2, rel_tol=1e-5)
    assert math.isclose(stats["mem/episodic_top_age"], ((1 - 0) + (2 - 1)) / 2)  # slot of frame 1 read at frame 2


def test_dual_memory_info_gives_retrieval_metrics(tmp_path):
    torch.manual_seed(0)
    mem = DualMemory(16, num_heads=2, L_w=2, L_e=3, dropout=0.0)
    _, _, info = mem.scan(torch.randn(2, 6, 4, 16), mem.init_state(2), return_info=True)
    cfg = type("Cfg", (), {"L_w": 2, "L_e": 3})()
    stats = memory_stats(info, cfg)
    for name, cap in (("working", 2), ("episodic", 3)):
        assert 0 < stats[f"mem/{name}_attn_entropy"] <= math.log(cap) + 1e-5
        assert stats[f"mem/{name}_top_age"] >= 1  # a read sees only earlier frames
    assert stats["mem/working_top_age"] <= 2  # the working buffer holds the last 2 frames
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(f'{{"step": {s}, "loss": 1.0, "lr": 0.1, '
                           f'"mem/episodic_attn_entropy": {stats["mem/episodic_attn_entropy"]}}}\n' for s in (1, 2)))
    assert plot_curves(log, tmp_path / "curves.png").stat().st_size > 0
