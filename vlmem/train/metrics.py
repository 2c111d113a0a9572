"""metrics.jsonl (one JSON object per logged step) and the end-of-run curves.png."""

from __future__ import annotations

import json
import math
from pathlib import Path

RETRIEVAL_KEYS = ("attn_entropy", "top_age")  # per-read retrieval statistics (retrieval_stats)


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint so the file matches an uninterrupted run."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def log(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def memory_stats(info: dict | None, cfg) -> dict[str, float]:
    """Scalars for metrics.jsonl from a memory's per-frame info ([B, T, ...] tensors)."""
    if not info:
        return {}
    out: dict[str, float] = {}
    if "w_fill" in info:
        out["mem/fill_working"] = float(info["w_fill"][:, -1].float().mean() / cfg.L_w)
    if "e_fill" in info:
        out["mem/fill_episodic"] = float(info["e_fill"][:, -1].float().mean() / cfg.L_e)
    if "e_replaced" in info:
        replaced = info["e_replaced"].bool()
        out["mem/episodic_replacements"] = float(replaced.sum(1).float().mean())
        if "e_replace_sim" in info and replaced.any():
            out["mem/replace_similarity"] = float(info["e_replace_sim"][replaced].float().mean())
    for branch, name in (("w", "working"), ("e", "episodic")):
        if f"{branch}_attn" in info and f"{branch}_frames" in info:
            out.update(retrieval_stats(info[f"{branch}_attn"], info[f"{branch}_frames"], name))
    for key in ("gate_mean", "gate_std", "s_norm", "write_gate_mean", "kl", "utilisation", "read_error", "salience"):
        if key in info:
            out[f"mem/{key}"] = float(info[key].float().mean())
    return out


def retrieval_stats(mass, frames, name: str) -> dict[str, float]:
    """How a slot memory reads, from the attention it already computes: `mass` [B, T, L] is the
    attention mass of each slot at each frame's read (mean over heads and query tokens), `frames`
    [B, T, L] the frame each slot holds (-1: empty). Over the reads with a non-empty buffer:
    `mem/<name>_attn_entropy`, the entropy (nats) of the mass over the slots (0: one slot read,
    log(fill): uniform), and `mem/<name>_top_age`, the frames since the most attended slot was written
    (the frame index of a scan from a fresh state is the read's time)."""
    mass = mass.float()
    total = mass.sum(-1)
    read = total > 0
    if not bool(read.any()):
        return {}
    p = mass / total.clamp_min(1e-12)[..., None]
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
    src = frames.gather(-1, p.argmax(-1, keepdim=True))[..., 0]
    now = frames.new_tensor(range(frames.shape[1]))[None, :]
    aged = read & (src >= 0)
    out = {f"mem/{name}_attn_entropy": float(entropy[read].mean())}
    if bool(aged.any()):
        out[f"mem/{name}_top_age"] = float((now - src)[aged].float().mean())
    if not math.isfinite(out[f"mem/{name}_attn_entropy"]):
        del out[f"mem/{name}_attn_entropy"]
    return out


def read_metrics(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: Path, out: Path) -> Path | None:
    """Loss, lr, memory fill rates, gate statistics and held-out scores (train.eval_every) against step."""
    lines = read_metrics(metrics_path)
    records = [r for r in lines if "loss" in r]
    held_out = [r for r in lines if any(k.startswith("eval/") and k != "eval/questions" for k in r)]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", ["loss"]), ("learning rate", ["lr"]),
              ("memory fill", sorted({k for r in records for k in r if k.startswith("mem/fill")})),
              ("memory gate / stats", sorted({k for r in records for k in r if k.startswith("mem/") and "fill" not in k
                                              and not k.endswith(RETRIEVAL_KEYS)})),
              ("memory retrieval", sorted({k for r in records for k in r if k.endswith(RETRIEVAL_KEYS)}))]
    panels = [(title, keys, records) for title, keys in panels if keys]
    if held_out:
        keys = sorted({k for r in held_out for k in r if k.startswith("eval/") and k != "eval/questions"})
        panels.append(("held-out score (%)", keys, held_out))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    for ax, (title, keys, rows) in zip(axes if len(panels) > 1 else [axes], panels, strict=True):
        for key in keys:
            ax.plot([r["step"] for r in rows], [r.get(key, float("nan")) for r in rows], label=key,
                    marker="o" if rows is held_out else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1 or title != keys[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
