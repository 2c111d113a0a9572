"""`vlmem inspect-memory`: replay one video through a trained model and record, frame by
frame, what its memory holds, what it reads and what it writes.

    trace = trace_memory(memory, tokens)          # any vlmem.memory design, tokens [1, T, N, D]
    result = inspect_memory("runs/tiny-phase1", "synth_00003")   # model + video -> trace.json + PNGs

`trace_memory` depends only on the memory interface (`step(..., return_info=True)` and
the slot-index state keys), so it works on a memory built by hand. `inspect_memory` loads
the run, samples the video exactly as the dataset does (same frame indices, same resize,
same geometry), encodes the frames, traces the memory and writes `trace.json` and the
plots into a temporary folder renamed into place. See docs/inspect.md for every field.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from vlmem.errors import UsageError

TRACE_VERSION = 1
# info keys that have a dedicated place in a trace entry (everything else scalar goes to "stats")
_STRUCTURED = {"gate_mean", "gate_std", "w_fill", "e_fill", "w_attn", "e_attn", "w_frames", "e_frames",
               "e_slot", "e_replaced", "e_replace_sim", "slot_usage"}
_SLOT_MEMORIES = (("working", "w"), ("episodic", "e"))


# -- the trace (model independent) ---------------------------------------------------------
def memory_kind(memory) -> str:
    """The recipe `kind` of a memory module (`dual`, `working`, ..., `none`)."""
    from vlmem.memory import (
        DualMemory,
        EpisodicMemory,
        LarimarMemory,
        NoMemory,
        TitansMemory,
        WorkingMemory,
    )

    for cls, kind in ((DualMemory, "dual"), (WorkingMemory, "working"), (EpisodicMemory, "episodic"),
                      (TitansMemory, "titans"), (LarimarMemory, "larimar"), (NoMemory, "none")):
        if isinstance(memory, cls):
            return kind
    return type(memory).__name__


def memory_capacity(memory) -> dict[str, int]:
    """Slots per buffer: {"working": L_w, "episodic": L_e} (those present), {"slots": K} for
    Larimar, {} for Titans (a fast-weight matrix, no slots), {"memory": 0} for `none`."""
    kind = memory_kind(memory)
    if kind == "none":
        return {"memory": 0}
    if kind == "larimar":
        return {"slots": int(memory.K)}
    cap = {}
    if hasattr(memory, "L_w"):
        cap["working"] = int(memory.L_w)
    if hasattr(memory, "L_e"):
        cap["episodic"] = int(memory.L_e)
    return cap


def _floats(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.detach().float().cpu().reshape(-1)]


def _ints(x: torch.Tensor) -> list[int]:
    return [int(v) for v in x.detach().cpu().reshape(-1)]


def _entry(t: int, video_frame: int, kind: str, info: dict, state) -> dict:
    """One frame of the trace: slot contents after this frame's write, what it read, what it wrote."""
    e: dict = {"t": t, "video_frame": video_frame}
    for name, p in _SLOT_MEMORIES:  # slot sources after the write (state), -1 = empty
        if f"{p}_idx" in state:
            e[name] = _ints(state.__getattr__(f"{p}_idx")[0])
    read, attn = {}, {}
    for name, p in _SLOT_MEMORIES:  # what this frame read (before its write), aligned with the attention
        if f"{p}_frames" in info:
            read[name] = _ints(info[f"{p}_frames"][0])
            attn[name] = _floats(info[f"{p}_attn"][0])
    if read:
        e["read"], e["attention"] = read, attn
    if "e_slot" in info:
        slot, replaced = int(info["e_slot"][0]), bool(info["e_replaced"][0])
        e["episodic_write"] = {
            "slot": slot,  # -1: no write (salience gate)
            "replaced": replaced,
            "replaced_frame": int(info["e_frames"][0, slot]) if replaced else None,
            "similarity": float(info["e_replace_sim"][0]) if replaced else None,
        }
    if "gate_mean" in info:
        e["gate"] = {"mean": float(info["gate_mean"][0]), "std": float(info["gate_std"][0])}
    fill = {name: int(state.__getattr__(f"{p}_fill")[0]) for name, p in _SLOT_MEMORIES if f"{p}_fill" in state}
    if kind == "none":
        fill["memory"] = 0
    e["fill"] = fill
    if "slot_usage" in info:
        e["slot_usage"] = _floats(info["slot_usage"][0])
    stats = {k: float(v[0]) for k, v in info.items() if k not in _STRUCTURED and v.dim() == 1}
    if stats:
        e["stats"] = stats
    return e


def _summary(kind: str, capacity: dict, entries: list[dict]) -> dict:
    out: dict = {}
    if entries:
        last = entries[-1]
        out["final_fill"] = dict(last["fill"])
        out["fill_rate"] = {k: (last["fill"][k] / c if c else 0.0) for k, c in capacity.items() if k in last["fill"]}
    writes = [e["episodic_write"] for e in entries if "episodic_write" in e]
    if writes:
        out["episodic_writes"] = sum(w["slot"] >= 0 for w in writes)
        out["episodic_replacements"] = sum(w["replaced"] for w in writes)
        sims = [w["similarity"] for w in writes if w["replaced"]]
        out["mean_replace_similarity"] = float(np.mean(sims)) if sims else None
    if any("gate" in e for e in entries):
        out["gate_mean"] = float(np.mean([e["gate"]["mean"] for e in entries]))
    stats = sorted({k for e in entries for k in e.get("stats", {})})
    if stats:
        out["final_stats"] = {k: entries[-1].get("stats", {}).get(k) for k in stats}
    return out


def trace_memory(memory, tokens: torch.Tensor, frame_indices=None) -> dict:
    """Step `memory` over the frames of ONE video, tokens [1, T, N, D], recording every frame.

    Returns {"memory", "capacity", "num_frames", "tokens_per_frame", "frame_indices",
    "frames": [one entry per frame], "summary"}. `frame_indices` [T] are the video frame
    numbers the tokens came from (default 0..T-1); slot sources in the entries are positions
    t in 0..T-1 (map them with `frame_indices`). Runs under no_grad and leaves the module's
    train/eval mode alone (call `memory.eval()` first to switch off attention dropout)."""
    if tokens.dim() != 4 or tokens.shape[0] != 1:
        raise UsageError(f"trace_memory expects the tokens of one video, [1, T, N, D]; got {tuple(tokens.shape)}")
    T, N = int(tokens.shape[1]), int(tokens.shape[2])
    if T == 0:
        raise UsageError("trace_memory got a video with zero frames")
    frame_indices = list(range(T)) if frame_indices is None else [int(i) for i in frame_indices]
    if len(frame_indices) != T:
        raise UsageError(f"trace_memory: {len(frame_indices)} frame indices for {T} frames")
    kind = memory_kind(memory)
    entries = []
    with torch.no_grad():
        state = memory.init_state(1, tokens.device, tokens.dtype)
        for t in range(T):
            _, state, info = memory.step(tokens[:, t], state, return_info=True)
            entries.append(_entry(t, frame_indices[t], kind, info, state))
    capacity = memory_capacity(memory)
    return {"version": TRACE_VERSION, "memory": kind, "capacity": capacity, "num_frames": T,
            "tokens_per_frame": N, "frame_indices": frame_indices, "frames": entries,
            "summary": _summary(kind, capacity, entries)}


# -- the video, exactly as the dataset samples it -----------------------------------------------
def _scene_of(row: dict) -> str:
    return str(row.get("scene_name") or Path(row["video"]).stem)


def find_video_row(data_root: Path, scene: str) -> dict:
    """A qa.parquet row of `scene` (matched on scene_name or the video file stem); a scene with
    `videos/<scene>.mp4` but no questions gets a stand-in row. Unknown: UsageError naming a few."""
    from vlmem.data.dataset import read_qa_table

    data_root = Path(data_root)
    rows = read_qa_table(data_root)
    for r in rows:
        if scene in (_scene_of(r), Path(r["video"]).stem):
            return r
    if (data_root / "videos" / f"{scene}.mp4").is_file():
        return {"id": f"inspect-{scene}", "scene_name": scene, "video": f"videos/{scene}.mp4", "split": "",
                "question": "", "question_type": "", "ground_truth": "", "answer_kind": "open", "options": None}
    names = sorted({_scene_of(r) for r in rows} | {p.stem for p in (data_root / "videos").glob("*.mp4")})
    close = difflib.get_close_matches(scene, names, n=5, cutoff=0.5)
    shown = close + [n for n in names if n not in close][: max(0, 5 - len(close))]
    raise UsageError(f"--video {scene!r}: no such scene in {data_root} (no videos/{scene}.mp4); "
                     f"valid names include: {', '.join(shown)}" + (f" ({len(names)} in total)" if names else ""))


def load_video(recipe, data_root: Path, row: dict, frames: int):
    """(frames uint8 [T, 3, S, S], geometry dict of [T, ...] tensors or None, video frame indices [T])
    through QADataset, i.e. the same sampling, resize and geometry as training and eval."""
    from vlmem.data.dataset import QADataset, SampleSpec
    from vlmem.data.video import sample_frame_indices, video_num_frames

    m = recipe.model
    spec = SampleSpec.for_model(m, frames)
    dataset = QADataset(Path(data_root), [row], spec, tokenizer=None)
    dataset.validate()
    sample = dataset[0]
    idx = sample_frame_indices(video_num_frames(Path(data_root) / row["video"]), frames)  # what QADataset read
    return sample["frames"], sample.get("geometry"), [int(i) for i in idx]


# -- plots (matplotlib, Agg) ------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _scene_suffix(trace: dict) -> str:
    return f": {trace['scene']}" if trace.get("scene") else ""


def _slot_panels(trace: dict) -> list[tuple[str, int]]:
    return [(name, trace["capacity"][name]) for name, _ in _SLOT_MEMORIES if name in trace["capacity"]]


def _annotate(ax, values: np.ndarray, mask: np.ndarray | None = None, light: np.ndarray | None = None,
              limit: int = 640) -> None:
    """Write each cell's value (skipping `mask`), black on `light` cells, white elsewhere."""
    if values.size > limit:
        return
    size = 7 if values.size <= 200 else 5
    for (i, j), v in np.ndenumerate(values):
        if mask is None or not mask[i, j]:
            dark = light is not None and light[i, j]
            ax.text(j, i, str(v), ha="center", va="center", fontsize=size, color="black" if dark else "white")


def plot_occupancy(trace: dict, path: Path) -> Path:
    """Frames x slots heatmaps of the source frame each slot holds after the frame's write."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    panels, T = _slot_panels(trace), trace["num_frames"]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.2 + sum(0.35 * L + 1.0 for _, L in panels), 1.2 + 0.3 * T),
                             squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    for ax, (name, L) in zip(axes[0], panels, strict=True):
        held = np.array([e[name] for e in trace["frames"]], dtype=float)
        empty = held < 0
        im = ax.imshow(np.ma.masked_where(empty, held), cmap=cmap, vmin=0, vmax=max(T - 1, 1), aspect="auto",
                       interpolation="nearest")
        _annotate(ax, held.astype(int), empty, held > 0.75 * max(T - 1, 1))
        if name == "episodic":  # outline the slot written at each frame (red: replaced an entry)
            for e in trace["frames"]:
                w = e.get("episodic_write", {})
                if w.get("slot", -1) >= 0:
                    ax.add_patch(Rectangle((w["slot"] - 0.5, e["t"] - 0.5), 1, 1, fill=False, lw=1.5,
                                           edgecolor="red" if w["replaced"] else "white"))
        if name == "working":
            for e in trace["frames"]:
                ax.add_patch(Rectangle((e[name].index(e["t"]) - 0.5, e["t"] - 0.5), 1, 1, fill=False, lw=1.0,
                                       edgecolor="white"))
        ax.set_title(f"{name} ({L} slots)" + ("\nred box: replaced (most similar)" if name == "episodic" else ""),
                     fontsize=9)
        ax.set_xlabel("slot")
        ax.set_ylabel("frame t")
        ax.set_xticks(range(L))
        fig.colorbar(im, ax=ax, label="source frame t held", fraction=0.08)
    fig.suptitle(f"slot occupancy after each frame{_scene_suffix(trace)}", fontsize=10)
    return _save(fig, path)


def plot_attention(trace: dict, path: Path) -> Path:
    """Frames x slots attention mass (what frame t read, before its write); the number in a cell
    is the source frame of that slot at read time; grey = empty slot."""
    plt = _plt()
    panels, T = _slot_panels(trace), trace["num_frames"]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.2 + sum(0.35 * L + 1.0 for _, L in panels), 1.2 + 0.3 * T),
                             squeeze=False)
    for ax, (name, L) in zip(axes[0], panels, strict=True):
        mass = np.array([e["attention"][name] for e in trace["frames"]], dtype=float)
        src = np.array([e["read"][name] for e in trace["frames"]], dtype=int)
        vmax = max(float(mass.max()), 1e-6)
        im = ax.imshow(np.ma.masked_where(src < 0, mass), cmap=plt.get_cmap("magma").with_extremes(bad="#d9d9d9"),
                       vmin=0, vmax=vmax, aspect="auto", interpolation="nearest")
        _annotate(ax, src, src < 0, mass > 0.6 * vmax)
        ax.set_title(f"{name} attention mass (cell: source frame)", fontsize=9)
        ax.set_xlabel("slot")
        ax.set_ylabel("frame t (reading)")
        ax.set_xticks(range(L))
        fig.colorbar(im, ax=ax, label="attention mass", fraction=0.08)
    return _save(fig, path)


def plot_gate(trace: dict, path: Path) -> Path:
    """Fusion gate g mean ± std against frame, and the fill counts of both buffers."""
    plt = _plt()
    t = [e["t"] for e in trace["frames"]]
    mean = np.array([e["gate"]["mean"] for e in trace["frames"]])
    std = np.array([e["gate"]["std"] for e in trace["frames"]])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax.plot(t, mean, marker="o", ms=3, label="mean g")
    ax.fill_between(t, mean - std, mean + std, alpha=0.3, label="± std")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame t")
    ax.set_title("fusion gate g (1 = working, 0 = episodic)", fontsize=9)
    ax.legend(fontsize=7)
    _plot_fill(ax2, trace)
    return _save(fig, path)


def _plot_fill(ax, trace: dict) -> None:
    t = [e["t"] for e in trace["frames"]]
    for name, L in _slot_panels(trace):
        line, = ax.plot(t, [e["fill"][name] for e in trace["frames"]], marker="o", ms=3, label=f"{name} fill")
        ax.axhline(L, ls="--", lw=0.8, color=line.get_color())
    ax.set_xlabel("frame t")
    ax.set_title("filled slots after each frame (dashed: capacity)", fontsize=9)
    ax.legend(fontsize=7)


def plot_curves(trace: dict, path: Path) -> Path | None:
    """Per-frame scalars for designs without a fusion gate: fill counts (working / episodic only),
    Titans' fast-weight norm and write gate, Larimar's KL, utilisation and read error."""
    plt = _plt()
    stats = sorted({k for e in trace["frames"] for k in e.get("stats", {})})
    has_fill = bool(_slot_panels(trace))
    n = len(stats) + has_fill
    if not n:
        return None
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.0), squeeze=False)
    t = [e["t"] for e in trace["frames"]]
    if has_fill:
        _plot_fill(axes[0][0], trace)
    for ax, key in zip(axes[0][int(has_fill):], stats, strict=True):
        ax.plot(t, [e.get("stats", {}).get(key, math.nan) for e in trace["frames"]], marker="o", ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("frame t")
    fig.suptitle(f"{trace['memory']} memory{_scene_suffix(trace)}", fontsize=10)
    return _save(fig, path)


def plot_slot_usage(trace: dict, path: Path) -> Path:
    """Larimar: frames x slots share of the accumulated address mass."""
    plt = _plt()
    usage = np.array([e["slot_usage"] for e in trace["frames"]], dtype=float)
    fig, ax = plt.subplots(figsize=(1.5 + 0.3 * usage.shape[1], 1.2 + 0.3 * usage.shape[0]))
    im = ax.imshow(usage, cmap="magma", vmin=0, aspect="auto", interpolation="nearest")
    ax.set_xlabel("memory slot")
    ax.set_ylabel("frame t")
    ax.set_title("larimar slot usage (share of address mass so far)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.08)
    return _save(fig, path)


def plot_slot_frames(trace: dict, frames: torch.Tensor, path: Path, per_row: int = 8) -> Path:
    """The frame images each slot holds after the last frame: one block per buffer, `per_row` slots a row."""
    plt = _plt()
    images = frames.permute(0, 2, 3, 1).cpu().numpy()  # [T, H, W, 3] uint8
    last = trace["frames"][-1]
    blocks = []  # (buffer name, slot, source t)
    for name, L in _slot_panels(trace):
        blocks.append([(name, j, last[name][j]) for j in range(L)])
    rows = sum(math.ceil(len(b) / per_row) for b in blocks)
    cols = min(per_row, max(len(b) for b in blocks))
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols, 1.55 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    r = 0
    for block in blocks:
        for i, (name, j, src) in enumerate(block):
            ax = axes[r + i // per_row][i % per_row]
            if src >= 0:
                ax.imshow(images[src], interpolation="nearest")
                ax.set_title(f"{name[0]}{j}: t={src} (#{trace['frame_indices'][src]})", fontsize=7)
            else:
                ax.imshow(np.full((8, 8, 3), 217, dtype=np.uint8))
                ax.set_title(f"{name[0]}{j}: empty", fontsize=7)
        r += math.ceil(len(block) / per_row)
    fig.suptitle("what each slot holds after the last frame (w = working, e = episodic; #video frame)", fontsize=8)
    return _save(fig, path)


def write_plots(trace: dict, frames: torch.Tensor | None, out: Path) -> list[Path]:
    """Every plot that applies to the trace's memory design, into folder `out`."""
    out = Path(out)
    written: list[Path] = []
    kind = trace["memory"]
    if kind == "none":
        return written
    if _slot_panels(trace):
        written.append(plot_occupancy(trace, out / "occupancy.png"))
        written.append(plot_attention(trace, out / "attention.png"))
        if frames is not None:
            written.append(plot_slot_frames(trace, frames, out / "slots_final.png"))
    if any("gate" in e for e in trace["frames"]):
        written.append(plot_gate(trace, out / "gate.png"))
    else:
        p = plot_curves(trace, out / "curves.png")
        if p is not None:
            written.append(p)
    if any("slot_usage" in e for e in trace["frames"]):
        written.append(plot_slot_usage(trace, out / "slot_usage.png"))
    return written


# -- outputs ---------------------------------------------------------------------------------
def write_outputs(trace: dict, frames: torch.Tensor | None, out: Path) -> list[Path]:
    """trace.json + plots into a temporary sibling folder, then renamed to `out` (replacing a
    previous inspect-memory output; any other existing folder is refused)."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "trace.json").is_file())):
        raise UsageError(f"--out {out} exists and is not an inspect-memory output (no trace.json); "
                         "choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        (tmp / "trace.json").write_text(json.dumps(trace, indent=1) + "\n")
        names = ["trace.json", *(p.name for p in write_plots(trace, frames, tmp))]
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / n for n in names]


def _slot_list(sources: list[int]) -> str:
    """"0 1 2 · · ·" for short buffers; a long run of trailing empty slots as "·×N"."""
    used = len(sources)
    while used and sources[used - 1] < 0:
        used -= 1
    cells = ["·" if s < 0 else str(s) for s in sources[:used]]
    empty = len(sources) - used
    return " ".join(cells + (["·"] * empty if empty <= 3 else [f"·×{empty}"]))


def print_summary(trace: dict, console) -> None:
    """One table row per frame with the columns that apply to the memory design."""
    from rich.table import Table

    frames, kind, cap = trace["frames"], trace["memory"], trace["capacity"]
    head = (f"[bold]{trace.get('scene', '')}[/bold]  memory={kind}  capacity={cap}  "
            f"frames={trace['num_frames']}  tokens/frame={trace['tokens_per_frame']}")
    console.print(head)
    if kind == "none":
        console.print("memory kind 'none' keeps nothing between frames: nothing to inspect "
                      "(trace.json records fill 0 for every frame)")
        return
    slots = [name for name, _ in _SLOT_MEMORIES if name in cap]
    table = Table(title=f"{kind} memory, frame by frame"
                  + (" (slot lists: source frame t of each slot, · empty)" if slots else ""))
    table.add_column("t", justify="right")
    table.add_column("frame", justify="right")
    for name in slots:
        table.add_column(name)
    has_write = any("episodic_write" in e for e in frames)
    if has_write:
        table.add_column("episodic write")
    if any("gate" in e for e in frames):
        table.add_column("gate", justify="right")
    for name in slots:
        table.add_column(f"top {name[0]}-attn")
    usage = any("slot_usage" in e for e in frames)
    if usage:
        table.add_column("top slot usage")
    stats = sorted({k for e in frames for k in e.get("stats", {})})
    for k in stats:
        table.add_column(k, justify="right")
    for e in frames:
        cells = [str(e["t"]), str(e["video_frame"])]
        cells += [_slot_list(e[name]) for name in slots]
        if has_write:
            w = e.get("episodic_write", {})
            if w.get("slot", -1) < 0:
                cells.append("-")
            elif w["replaced"]:
                cells.append(f"e{w['slot']} was t{w['replaced_frame']} cos {w['similarity']:.3f}")
            else:
                cells.append(f"e{w['slot']} new")
        if "gate" in e:
            cells.append(f"{e['gate']['mean']:.3f}±{e['gate']['std']:.3f}")
        for name in slots:
            mass, src = e["attention"][name], e["read"][name]
            j = int(np.argmax(mass))
            cells.append(f"t{src[j]} {mass[j]:.2f}" if src[j] >= 0 and mass[j] > 0 else "-")
        if usage:
            u = e["slot_usage"]
            cells.append(f"s{int(np.argmax(u))} {max(u):.2f}")
        cells += [f"{e.get('stats', {}).get(k, math.nan):.4g}" for k in stats]
        table.add_row(*cells)
    console.print(table)
    s = trace["summary"]
    if "fill_rate" in s and s["fill_rate"]:
        console.print("fill rate: " + ", ".join(f"{k} {s['final_fill'][k]}/{cap[k]} ({v:.0%})"
                                                for k, v in s["fill_rate"].items()))
    if "episodic_replacements" in s:
        sim = s["mean_replace_similarity"]
        console.print(f"episodic: {s['episodic_writes']} writes, {s['episodic_replacements']} replacements"
                      + (f" (mean cosine {sim:.3f})" if sim is not None else ""))


# -- the command -------------------------------------------------------------------------------
def inspect_memory(run: Path, video: str, data: Path | None = None, frames: int = 0, out: Path | None = None,
                   console=None) -> dict:
    """`vlmem inspect-memory`: load the run, replay scene `video` of the dataset (default: the
    recipe's data.root) with `frames` frames (default eval.frames, else data.frames), write
    trace.json and the plots to `out` (default RUN/inspect/<scene>/). Returns
    {"trace": ..., "out": Path, "files": [Path, ...]}."""
    from vlmem.runs import load_run_recipe, load_trained

    run = Path(run)
    recipe = load_run_recipe(run)  # cheap: check the scene and frames before loading any weights
    data_root = Path(data or recipe.data.root)
    n_frames = int(frames or recipe.eval.frames or recipe.data.frames)
    if n_frames < 1:
        raise UsageError(f"--frames {frames}: need at least 1 frame")
    row = find_video_row(data_root, video)
    recipe, model, _ = load_trained(run)
    images, geometry, idx = load_video(recipe, data_root, row, n_frames)
    model.eval()
    with torch.no_grad():
        geo = {k: v.unsqueeze(0) for k, v in geometry.items()} if geometry is not None else None
        tokens = model.encode_frames(images.unsqueeze(0), geo)
        trace = trace_memory(model.memory, tokens, idx)
    scene = _scene_of(row)
    trace = {"run": str(run), "data": str(data_root), "scene": scene, "video": row["video"], **trace}
    out_dir = Path(out) if out else run / "inspect" / scene
    files = write_outputs(trace, images, out_dir)
    if console is not None:
        print_summary(trace, console)
    return {"trace": trace, "out": out_dir, "files": files}
