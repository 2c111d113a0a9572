"""`vlmem eval stream`: score long-horizon streams at their query times (VSC-style), by stream length.

Each stream video is read once through the memory (`vlmem.ask.stream_answers`); a question with
`query_frame` q is answered right after frame q from the memory state at that point, so the 10% /
50% / 100% questions of a stream cost one scan. A model without memory answers each query time
from data.frames frames sampled uniformly over frames 0..q instead.

Scores (x100): `stream_counting` mean relative accuracy (VSI-Bench's MRA), `stream_recall` accuracy
(VSI-Bench's MC matching); overall = mean of the two. Broken down by stream length (frames) and
by query position (10% / 50% / 100%), with the per-frame time and the process RSS after each
length's streams. Writes <out>/stream.json, stream.md and stream_by_length.png.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

STREAM_TYPES = ("stream_counting", "stream_recall")


def rss_mb() -> float:
    """The process's resident set size now (MiB); the lifetime peak where /proc is missing."""
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_record(rec: dict) -> float:
    """0..1: MRA for counting, exact option letter for recall (VSI-Bench's parsing)."""
    from vlmem.eval.vsibench import official_mc, official_numeric

    if rec["answer_kind"] == "mc":
        return official_mc(rec["prediction"], rec["ground_truth"])[1]
    return official_numeric(rec["prediction"], rec["ground_truth"])[1]


def query_position(rec: dict) -> str:
    """'10%' / '50%' / '100%': the query fraction nearest to the share of the stream read when the
    question is asked (a 4-room stream asks its "10%" question after its first room, at 25%)."""
    from vlmem.data.stream import QUERY_FRACTIONS

    share = (int(rec["query_frame"]) + 1) / max(int(rec["num_frames"]), 1)
    return f"{round(100 * min(QUERY_FRACTIONS, key=lambda f: abs(f - share)))}%"


def _mean(values) -> float | None:
    values = list(values)
    return 100 * sum(values) / len(values) if values else None


def score_streams(records: list[dict], perf: dict | None = None) -> dict:
    """The report dict; `perf` {length: {"ms_per_frame", "rss_mb"}} is carried into it."""
    by_type, by_length, by_query = defaultdict(list), defaultdict(lambda: defaultdict(list)), defaultdict(list)
    for rec in records:
        s = rec["score"] = score_record(rec)
        by_type[rec["question_type"]].append(s)
        by_length[int(rec["num_frames"])][rec["question_type"]].append(s)
        if rec["question_type"] == "stream_counting":
            by_query[query_position(rec)].append(s)
    per_type = {t: _mean(by_type[t]) for t in STREAM_TYPES if by_type[t]}
    overall = sum(per_type.values()) / len(per_type) if per_type else None
    lengths = {}
    for n in sorted(by_length):
        types = {t: _mean(by_length[n][t]) for t in STREAM_TYPES if by_length[n][t]}
        lengths[str(n)] = {**types, "overall": sum(types.values()) / len(types),
                           "questions": sum(len(v) for v in by_length[n].values()), **(perf or {}).get(n, {})}
    queries = {k: _mean(by_query[k]) for k in sorted(by_query, key=lambda k: int(k[:-1]))}
    return {"official": {"overall": overall, "per_type": per_type,
                         "metrics": {f"frames_{n}": v["overall"] for n, v in lengths.items()}},
            "by_length": lengths, "counting_by_query": queries, "counts": {"total": len(records)},
            "records": records}


def evaluate_stream(run: Path, data: Path | None = None, out: Path | None = None, split: str | None = None,
                    max_streams: int = 0, fps: float = 0.0, console=None, **load_options) -> dict:
    """Answer every stream question of a split (the first `max_streams` streams of each length if > 0),
    score, write the report; returns the result."""
    import time

    from vlmem.ask import Question, check_model, sampling_for, stream_answers
    from vlmem.data.dataset import read_qa_table
    from vlmem.progress import progress_bar
    from vlmem.runs import load_trained

    recipe, model, tokenizer = load_trained(run, **load_options)
    check_model(model)
    data_root = Path(data or recipe.data.root)
    rows = read_qa_table(data_root, split or recipe.eval.split, STREAM_TYPES)
    videos: dict[str, list[dict]] = {}
    for r in rows:
        videos.setdefault(r["video"], []).append(r)
    if max_streams:
        kept, per_length = {}, defaultdict(int)
        for v, rs in videos.items():
            n = rs[0]["num_frames"]
            if per_length[n] < max_streams:
                per_length[n] += 1
                kept[v] = rs
        videos = kept
    records, perf = [], defaultdict(lambda: {"ms_per_frame": [], "rss_mb": 0.0})
    warm_up(model, recipe)
    t0 = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("eval stream", total=len(videos))
        for video, rs in videos.items():
            path = data_root / video
            questions = [Question(r["question"], list(r["options"]) if r.get("options") else None, r.get("query_frame"),
                                  r["id"], extra={k: r.get(k) for k in ("question_type", "ground_truth", "answer_kind",
                                                                        "num_frames", "scene_name")}) for r in rs]
            recs, stats = stream_answers(model, tokenizer, recipe, path, questions, sampling_for(recipe, path, fps),
                                         recipe.eval.max_new_tokens)
            n = int(rs[0]["num_frames"] or stats["video_frames"])
            for rec in recs:
                rec["num_frames"] = n
            records += recs
            perf[n]["ms_per_frame"].append(stats["ms_per_frame"])
            perf[n]["frames_read"] = stats["frames_read"]
            perf[n]["rss_mb"] = max(perf[n]["rss_mb"], rss_mb())
            progress.advance(task)
    perf_out = {n: {"ms_per_frame": sum(p["ms_per_frame"]) / len(p["ms_per_frame"]), "rss_mb": p["rss_mb"],
                    "frames_read_per_stream": p["frames_read"], "streams": len(p["ms_per_frame"])}
                for n, p in perf.items()}
    result = score_streams(records, perf_out)
    result.update(run=str(run), data=str(data_root), memory=recipe.model.memory.kind,
                  sampling=sampling_for(recipe, data_root / next(iter(videos)), fps).note if videos else "",
                  seconds=time.perf_counter() - t0)
    out_dir = Path(out) if out else Path(run) / "eval"
    result["report_files"] = {k: str(v) for k, v in write_stream_report(result, out_dir).items()}
    if console is not None:
        console.print(render_markdown(result))
    return result


def warm_up(model, recipe) -> None:
    """Two blank frames through the model and its memory, so the first stream's per-frame time
    does not carry the first call's one-off costs."""
    import torch

    from vlmem.ask import CHUNK, StreamReader

    size = recipe.model.vision.image_size
    StreamReader(model, 1).push([0], torch.zeros(1, min(2, CHUNK), 3, size, size, dtype=torch.uint8))


def render_markdown(result: dict) -> str:
    from vlmem.eval.report import _fmt, _md_table

    head = ["stream frames", "questions", "counting (MRA)", "recall (acc)", "overall", "ms / frame", "RSS MiB"]
    rows = [[n, str(v["questions"]), _fmt(v.get("stream_counting")), _fmt(v.get("stream_recall")),
             _fmt(v["overall"]), _fmt(v.get("ms_per_frame")), _fmt(v.get("rss_mb"))]
            for n, v in result["by_length"].items()]
    o = result["official"]
    rows.append(["all", str(result["counts"]["total"]), _fmt(o["per_type"].get("stream_counting")),
                 _fmt(o["per_type"].get("stream_recall")), _fmt(o["overall"]), "", ""])
    q = result["counting_by_query"]
    return "\n".join([f"# stream results ({result.get('memory', '?')} memory)", "",
                      f"Run `{result.get('run')}`, data `{result.get('data')}`; {result.get('sampling', '')}.", "",
                      _md_table(head, rows), "", "Counting by query time (share of the stream read):", "",
                      _md_table(list(q), [[_fmt(v) for v in q.values()]]) if q else "(no counting questions)", ""])


def write_stream_report(result: dict, out_dir: Path) -> dict[str, Path]:
    from vlmem.eval.report import _atomic_write, _jsonable

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "stream.json", "md": out_dir / "stream.md", "png": out_dir / "stream_by_length.png"}
    _atomic_write(files["json"], json.dumps(_jsonable(result), indent=2))
    _atomic_write(files["md"], render_markdown(result))
    plot_by_length({result.get("memory", "model"): result}, files["png"])
    return files


def plot_by_length(results: dict[str, dict | list[dict]], path: Path) -> Path:
    """Score (overall), ms per frame and RSS against stream length, one line per name; a list of
    results (seeds) is drawn as its mean with min-max error bars. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, res in results.items():
        runs = res if isinstance(res, list) else [res]
        lengths = sorted({int(n) for r in runs for n in r["by_length"]})
        for ax, key in zip(axes, ("overall", "ms_per_frame", "rss_mb"), strict=True):
            vals = np.array([[r["by_length"].get(str(n), {}).get(key, np.nan) for n in lengths] for r in runs],
                            dtype=float)
            mean = np.nanmean(vals, 0)
            err = [mean - np.nanmin(vals, 0), np.nanmax(vals, 0) - mean]
            ax.errorbar(lengths, mean, yerr=err if len(runs) > 1 else None, marker="o", capsize=3, label=name)
    from matplotlib.ticker import NullLocator, ScalarFormatter

    all_lengths = sorted({int(n) for res in results.values() for r in (res if isinstance(res, list) else [res])
                          for n in r["by_length"]})
    for ax, title in zip(axes, ("score (x100)", "ms per frame", "RSS after the streams (MiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_xticks(all_lengths)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("stream length (frames)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def compare(run_dirs: dict[str, list[Path]], out: Path) -> dict:
    """Collect `eval/stream.json` of several runs ({name: [run per seed]}) into one plot and one
    markdown table (mean over seeds per length). Returns {name: {length: mean overall}}."""
    from vlmem.eval.report import _atomic_write, _fmt, _md_table

    loaded = {name: [json.loads((Path(d) / "eval" / "stream.json").read_text()) for d in dirs
                     if (Path(d) / "eval" / "stream.json").is_file()] for name, dirs in run_dirs.items()}
    loaded = {k: v for k, v in loaded.items() if v}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_by_length(loaded, out / "long_horizon.png")
    lengths = sorted({int(n) for rs in loaded.values() for r in rs for n in r["by_length"]})
    table, means = [], {}
    for name, rs in loaded.items():
        cells = []
        for n in lengths:
            vals = [r["by_length"][str(n)][key] for r in rs if str(n) in r["by_length"]
                    for key in ("overall",)]
            ms = [r["by_length"][str(n)].get("ms_per_frame") for r in rs if str(n) in r["by_length"]]
            rss = [r["by_length"][str(n)].get("rss_mb") for r in rs if str(n) in r["by_length"]]
            mean = sum(vals) / len(vals) if vals else None
            means.setdefault(name, {})[n] = mean
            cells.append(f"{_fmt(mean)} ({_fmt(sum(ms) / len(ms) if ms else None)} ms, "
                         f"{_fmt(max(rss) if rss else None)} MiB)")
        table.append([name, str(len(rs)), *cells])
    md = _md_table(["memory", "seeds", *[f"{n} frames" for n in lengths]], table)
    _atomic_write(out / "long_horizon.md", "Score x100 (ms per frame, RSS MiB), mean over seeds\n\n" + md + "\n")
    return means
