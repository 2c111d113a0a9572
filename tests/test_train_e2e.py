"""End to end on CPU (litgpt test_full style): prepare tiny synthetic data, train a few steps,
assert the exact checkpoint files and metric lines, resume, continue with --phase, kill -9 and
resume to the same weights, evaluate, export and reload to identical logits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tomllib
import torch
from safetensors.torch import load_file

from vlmem.cli import main

TINY = ["model.memory.kind=dual", "data.question_types=[]", "data.frames=6", "model.vision.image_size=32", "model.vision.patch_size=8", "model.pool=1",
        "train.batch_size=2", "train.log_every=1", "eval.frames=6", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    old = os.getcwd()
    os.chdir(root)
    assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "6", "--frames", "8", "--size", "32"]) == 0
    yield root
    os.chdir(old)


def _train(*args: str) -> int:
    return main(["train", *args])


def test_train_writes_exact_checkpoint_layout_then_resumes(workdir):
    sets = [*TINY, "run.name=e2e", "train.max_steps=4", "train.save_every=2"]
    assert _train("tiny/base", *[a for s in sets for a in ("--set", s)]) == 0
    run = workdir / "runs/e2e"
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    for step in ("000002", "000004"):
        for f in ("model/model.safetensors", "model/config.json", "model/tokenizer/tokenizer.json",
                  "model/tokenizer/tokenizer_config.json", "training_state/model.safetensors",
                  "training_state/optimizer.bin", "training_state/random_states_0.pkl",
                  "training_state/trainer_state.json"):
            assert f"checkpoints/{step}/{f}" in files
    assert {"recipe.lock.toml", "metrics.jsonl", "curves.png", "tokenizer/tokenizer.json"} <= set(files)
    assert os.readlink(run / "checkpoints/last") == "000004"
    assert not [f for f in files if ".tmp" in f]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    for x in lines:
        assert {"loss", "lr", "grad_norm", "tokens_per_s", "data_wait_frac"} <= set(x)
        assert x["loss"] > 0 and x["loss"] == x["loss"]
    lock = tomllib.loads((run / "recipe.lock.toml").read_text())
    assert lock["lock"]["seed"] == 0 and lock["train"]["max_steps"] == 4
    # the same command again refuses to overwrite; --resume on a finished run is a no-op that keeps it
    assert _train("tiny/base", *[a for s in sets for a in ("--set", s)]) == 2
    before = load_file(str(run / "checkpoints/last/model/model.safetensors"))
    assert _train("tiny/base", "--resume", *[a for s in sets for a in ("--set", s)]) == 0
    after = load_file(str(run / "checkpoints/last/model/model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    # resuming with another recipe is refused
    assert _train("tiny/base", "--resume", *[a for s in [*sets, "train.lr=0.5"] for a in ("--set", s)]) == 2


def test_phase_continues_from_previous_run_and_eval_export(workdir, capsys):
    base = [*TINY, "run.name=e2eph", "train.max_steps=2"]
    args = [a for s in base for a in ("--set", s)]
    assert _train("tiny/base", *args) == 0
    # phase 1: memory only, starting from the phase-0 run, with the feature cache
    assert _train("tiny/base", "--phase", "1", *args, "--set", "train.cache_features=true",
                  "--set", "train.trainable=[]") == 0
    run = workdir / "runs/e2eph-phase1"
    lock = tomllib.loads((run / "recipe.lock.toml").read_text())
    assert lock["train"]["phase"] == 1 and lock["train"]["init_from"] == "runs/e2eph"
    config = json.loads((run / "checkpoints/last/model/config.json").read_text())
    assert config["components"] == ["memory"]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["feature_cache_hits"] >= 0
    # frozen parts are unchanged from the phase-0 run, the memory changed
    p0 = load_file(str(workdir / "runs/e2eph/checkpoints/last/model/model.safetensors"))
    p1 = load_file(str(run / "checkpoints/last/model/model.safetensors"))
    frozen = [k for k in p0 if k.startswith(("projector.", "lm.", "vision."))]
    assert frozen and all(torch.equal(p0[k], p1[k]) for k in frozen)
    assert any(not torch.equal(p0[k], p1[k]) for k in p0 if k.startswith("memory."))

    assert main(["eval", "vsibench", "--run", str(run), "--max-samples", "8"]) == 0
    report = json.loads((run / "eval/vsibench.json").read_text())
    assert "official" in report and (run / "eval/vsibench.md").is_file()

    out = workdir / "exported"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    assert {"model.safetensors", "config.json", "recipe.lock.toml", "README.md"} <= {p.name for p in out.iterdir()}
    from vlmem.runs import load_trained

    _, a, tok = load_trained(run)
    _, b, _ = load_trained(out)
    frames = torch.randint(0, 255, (1, 6, 3, 32, 32), dtype=torch.uint8)
    geo = {"depth": torch.full((1, 6, 32, 32), 2.0), "intrinsics": torch.eye(3).expand(1, 6, 3, 3).clone() * 16,
           "poses": torch.eye(4).expand(1, 6, 4, 4).clone()}
    geo["intrinsics"][..., 2, 2] = 1
    ids = torch.tensor([[2, 5, 6, 7]])
    mask = torch.ones_like(ids)
    la = a(frames, ids, mask, geometry=geo)[1]
    lb = b(frames, ids, mask, geometry=geo)[1]
    assert torch.equal(la, lb)


def test_feature_cache_skips_decoding_and_matches_uncached_losses(workdir, monkeypatch):
    """With the cache on, a row whose video is cached is not decoded; the losses are the uncached run's."""
    from vlmem.data.dataset import QADataset

    decoded = []
    frames = QADataset._frames
    monkeypatch.setattr(QADataset, "_frames", lambda self, video: decoded.append(video) or frames(self, video))
    sets = [*TINY, "train.max_steps=6", 'train.init_from=""']
    losses = {}
    for cached in (False, True):
        decoded.clear()
        name = f"cache-{cached}"
        extra = [f"run.name={name}", f"train.cache_features={str(cached).lower()}"]
        assert _train("tiny/phase1", *[a for s in [*sets, *extra] for a in ("--set", s)]) == 0
        metrics = [json.loads(x) for x in (workdir / f"runs/{name}/metrics.jsonl").read_text().splitlines()]
        losses[cached] = [x["loss"] for x in metrics]
    hits = metrics[-1]["feature_cache_hits"]
    assert hits > 0 and len(decoded) == 6 * 2 - hits  # rows: steps x batch
    assert max(abs(a - b) for a, b in zip(losses[False], losses[True], strict=True)) <= 1e-5


def test_bad_inputs_fail_before_training(workdir, capsys):
    args = [a for s in [*TINY, "run.name=bad", "train.max_steps=1"] for a in ("--set", s)]
    assert _train("tiny/phase1", *args, "--set", 'train.init_from="runs/does-not-exist"') == 1
    assert "does-not-exist" in capsys.readouterr().err
    assert _train("tiny/base", *args, "--set", 'data.root="nope"') == 2
    assert "qa.parquet" in capsys.readouterr().err
    assert not (workdir / "runs/bad").exists()


def test_sigkill_mid_run_then_resume_matches_uninterrupted(workdir):
    sets = [*TINY, "train.max_steps=6", "train.save_every=1", "model.memory.dropout=0.1"]

    def cmd(name, *extra):
        return [sys.executable, "-m", "vlmem", "train", "tiny/base", *extra,
                *[a for s in [*sets, f"run.name={name}"] for a in ("--set", s)]]

    env = {**os.environ, "VLMEM_NO_PROGRESS": "1"}
    subprocess.run(cmd("straight"), check=True, env=env, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd("killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = workdir / "runs/killed/checkpoints/000003"
    deadline = time.time() + 300
    while not target.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.exists(), "the run did not reach its third checkpoint"
    subprocess.run(cmd("killed", "--resume"), check=True, env=env, capture_output=True, timeout=600)
    a = load_file(str(workdir / "runs/straight/checkpoints/last/model/model.safetensors"))
    b = load_file(str(workdir / "runs/killed/checkpoints/last/model/model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    steps = [json.loads(x)["step"] for x in (workdir / "runs/killed/metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
