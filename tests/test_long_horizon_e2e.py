"""End to end from the CLI: stream data -> train a surprise-memory run one step -> `vlmem ask --json`
on a stream 10x the training length -> `vlmem eval stream` with its per-length report."""

import json
import os

import pytest


@pytest.fixture(scope="module")
def lh_run(tmp_path_factory):
    from vlmem.cli import main

    root = tmp_path_factory.mktemp("lh")
    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["prepare-data", "synthetic", "--out", "data/s", "--stream-rooms", "4,40", "--scenes", "4",
                     "--eval-streams", "1", "--frames", "4", "--stops", "4", "--size", "32"]) == 0
        sets = ["data.root=data/s", "data.frames=16",
                "eval.frames=16", "model.memory.kind=surprise", "model.context_frames=1", "train.max_steps=1",
                "train.batch_size=2", "train.cache_features=false", "run.output_dir=runs/lh"]
        recipe = os.path.join(old, "recipes/long_horizon/base.toml")
        assert main(["train", recipe, *[a for s in sets for a in ("--set", s)]]) == 0
        yield root
    finally:
        os.chdir(old)


def test_ask_and_eval_stream_from_the_cli(lh_run, capsys):
    from vlmem.cli import main

    capsys.readouterr()
    assert main(["ask", "--run", "runs/lh", "--video", "data/s/videos/eval_k0040_0000.mp4", "--json",
                 "How many chair(s) have you seen so far, in all the rooms of this walk?"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["memory"] == "surprise" and out["video_frames"] == out["frames_read"] == 160
    assert out["context_frames"] == 1 and len(out["answers"]) == 1 and out["answers"][0]["query_frame"] == 159

    assert main(["eval", "stream", "--run", "runs/lh", "--data", "data/s"]) == 0
    report = json.loads((lh_run / "runs/lh/eval/stream.json").read_text())
    assert set(report["by_length"]) == {"16", "160"}
    assert report["by_length"]["160"]["frames_read_per_stream"] == 160
    qs = {r["query_frame"] for r in report["records"] if r["num_frames"] == 160}
    assert qs <= {15, 79, 159} and 159 in qs
    assert (lh_run / "runs/lh/eval/stream_by_length.png").stat().st_size > 1000
