"""Two gloo processes on the CPU give the same loss curve as one process with the doubled batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vlmem.cli import main

SETS = ["data.question_types=[]", "train.max_steps=3", "train.log_every=1", "data.frames=6", "model.vision.image_size=32", "model.pool=1"]


def _sets(extra):
    return [a for s in [*SETS, *extra] for a in ("--set", s)]


@pytest.mark.skipif(shutil.which("accelerate") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate")),
                    reason="accelerate launcher not installed")
def test_two_processes_match_one_process_with_double_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "4", "--frames", "8", "--size", "32"]) == 0
    assert main(["train", "tiny/base", *_sets(["train.batch_size=4", "run.name=one"])]) == 0
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = {**os.environ, "VLMEM_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "-m", "vlmem", "train", "tiny/base",
                           *_sets(["train.batch_size=2", "run.name=two"])], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = [json.loads(x) for x in (tmp_path / "runs/one/metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "runs/two/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    lock = (tmp_path / "runs/two/recipe.lock.toml").read_text()
    assert "world_size = 2" in lock
