"""`vlmem ask` at any length, run by hand (not collected by pytest):

    python tests/benchmarks/bench_ask.py [--rooms 4,40,400,1250] [--kinds none,dual,surprise] [--run RUN]

Renders synthetic streams (8 frames per tour room, 32 px; 4 rooms = the long-horizon training
length of 32 frames, so 4 / 40 / 400 / 1250 rooms = 1x / 10x / 100x / ~300x, 1250 rooms =
10,000 frames), then answers one question per stream with `vlmem ask`'s library path
(`vlmem.ask.stream_answers`), each (kind, length) in a FRESH process so its peak RSS
(ru_maxrss) is its own. Lengths are interleaved (short, long, short, long ...) over `--repeat`
rounds; the table gives the median per-frame time and peak RSS per length, and their ratios to
the shortest stream measured in the same run. Untrained weights (the tiny long-horizon model of
recipes/ablate/long_horizon.toml) unless --run names a trained run: cost does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

QUESTION = "How many chair(s) have you seen so far, in all the rooms of this walk?"


def child(kind: str, video: str, run: str) -> None:
    """One measurement: build / load the model, stream the video, print JSON."""
    import resource

    import torch

    torch.set_num_threads(1)
    from vlmem.ask import Question, sampling_for, stream_answers

    if run:
        from vlmem.runs import load_trained

        recipe, model, tok = load_trained(Path(run))
    else:
        from vlmem.model.build import build_model, load_tokenizer
        from vlmem.recipe import load_recipe

        recipe = load_recipe(str(ROOT / "recipes/ablate/long_horizon.toml"),
                             [f"model.memory.kind={kind}"] + (["model.context_frames=0"] if kind == "none" else []))
        tok = load_tokenizer(recipe, texts=[QUESTION, "0 1 2 3 4 5 6 7 8 9"])
        model = build_model(recipe, tok).eval()
    from vlmem.eval.stream import warm_up

    warm_up(model, recipe)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _, stats = stream_answers(model, tok, recipe, Path(video), [Question(QUESTION)], sampling_for(recipe, Path(video)),
                              max_new_tokens=4)
    stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats["rss_before_mb"] = before
    print(json.dumps(stats))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", default="4,40,400,1250")
    ap.add_argument("--kinds", default="none,dual,surprise")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--run", default="")
    ap.add_argument("--data", default="", help="reuse a folder written by an earlier call")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.run)
        return
    from vlmem.data.stream import prepare_stream, stream_name

    rooms = [int(x) for x in args.rooms.split(",")]
    data = Path(args.data or tempfile.mkdtemp(prefix="bench_ask_")) / "streams"
    if not (data / "manifest.json").is_file():
        prepare_stream(data, rooms, streams=0, eval_streams=1, frames=8, size=32, stops=8)
    videos = {k: data / "videos" / f"{stream_name('eval', k, 0)}.mp4" for k in rooms}
    results: dict[tuple[str, int], list[dict]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLMEM_NO_PROGRESS": "1"}
    for rnd in range(args.repeat):
        for kind in args.kinds.split(","):
            for k in rooms:
                cmd = [sys.executable, __file__, "--child", kind, str(videos[k])] + (["--run", args.run] if args.run else [])
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
                stats = json.loads(out.strip().splitlines()[-1])
                results.setdefault((kind, k), []).append(stats)
                print(f"round {rnd} {kind:8s} {k * 8:6d} frames: {stats['ms_per_frame']:.2f} ms/frame, "
                      f"peak RSS {stats['peak_rss_mb']:.0f} MiB, read {stats['frames_read']}", flush=True)
    print("\n| memory | frames | x train length | read | ms / frame (median) | ratio | peak RSS MiB | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.kinds.split(","):
        base_ms = base_rss = None
        for k in rooms:
            rs = results[(kind, k)]
            ms = statistics.median(r["ms_per_frame"] for r in rs)
            rss = statistics.median(r["peak_rss_mb"] for r in rs)
            base_ms, base_rss = base_ms or ms, base_rss or rss
            print(f"| {kind} | {k * 8} | {k * 8 / 32:g} | {rs[0]['frames_read']} | {ms:.2f} | {ms / base_ms:.2f} | "
                  f"{rss:.0f} | {rss / base_rss:.2f} |")


if __name__ == "__main__":
    main()
