"""data.num_workers: the same batches in the same order with 0 or N DataLoader workers, so the
weights are identical, and a run resumed from a checkpoint ends where the uninterrupted one does."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from vlmem.cli import main
from vlmem.data.loader import StepBatches, batch_loader, next_batch
from vlmem.errors import DataError

SETS = ["model.memory.kind=dual", "data.question_types=[]", "data.frames=4", "model.vision.image_size=32", "model.pool=1",
        "train.batch_size=2", "train.log_every=1", "train.max_steps=4", "train.save_every=2"]


def _train(name, workers, *extra):
    sets = [*SETS, f"run.name={name}", f"data.num_workers={workers}"]
    return main(["train", "tiny/base", *[a for s in sets for a in ("--set", s)], *extra])


def _weights(run):
    return load_file(str(run / "checkpoints/last/model/model.safetensors"))


def test_workers_train_to_the_same_weights_and_resume_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLMEM_NO_PROGRESS", "1")
    assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "4", "--frames", "8", "--size", "32"]) == 0
    assert _train("w0", 0) == 0
    assert _train("w2", 2) == 0
    a, b = _weights(tmp_path / "runs/w0"), _weights(tmp_path / "runs/w2")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # roll the 2-worker run back to its step-2 checkpoint (as a kill after it would leave it) and resume
    # it with another worker count: the data order is a pure function of (seed, step)
    ckpts = tmp_path / "runs/w2/checkpoints"
    shutil.rmtree(ckpts / "000004")
    os.remove(ckpts / "last")
    os.symlink("000002", ckpts / "last")
    assert _train("w2", 1, "--resume") == 0
    c = _weights(tmp_path / "runs/w2")
    assert all(torch.equal(a[k], c[k]) for k in a)
    metrics = [json.loads(x) for x in (tmp_path / "runs/w2/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and all(0 <= m["data_wait_frac"] <= 1 for m in metrics)


class _Data:
    def __init__(self, bad=-1):
        self.bad = bad

    def __len__(self):
        return 10

    def sample(self, i, media=True):
        if i == self.bad:
            raise DataError(f"videos/{i}.mp4: has no frames")
        return {"id": str(i), "row": {"video": f"v{i}"}, "frames": torch.full((1, 3, 2, 2), i, dtype=torch.uint8)}


def _micro(step):
    return [[(2 * step) % 10, (2 * step + 1) % 10]]


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_yields_the_sampler_order_from_any_start_step(workers):
    loader = batch_loader(_Data(), StepBatches(_micro, 3, 8, 1), media=True, pad_id=0, num_workers=workers)
    assert len(loader) == 5
    got = [b["indices"] for b in loader]
    assert got == [_micro(s)[0] for s in range(3, 8)]


def test_a_worker_error_is_raised_as_itself():
    it = iter(batch_loader(_Data(bad=3), StepBatches(_micro, 0, 3, 1), media=True, pad_id=0, num_workers=2))
    assert next_batch(it)["indices"] == [0, 1]
    with pytest.raises(DataError, match="videos/3.mp4"):
        next_batch(it)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_leaves_the_global_rng_alone(workers):
    """A resumed run restores the RNG, then starts the loader: the loader must not draw from it."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    it = iter(batch_loader(_Data(), StepBatches(_micro, 0, 2, 1), media=True, pad_id=0, num_workers=workers))
    next_batch(it)
    assert torch.equal(torch.rand(3), expected)
