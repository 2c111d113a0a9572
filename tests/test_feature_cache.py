"""The disk feature cache: shared by cache instances (runs, processes), keyed by the frozen weights,
atomic under concurrent writers, bounded by LRU eviction, filled ahead by `vlmem cache-features`."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest
import torch
import torch.nn as nn

from vlmem.cli import main
from vlmem.train.feature_cache import DiskFeatureCache, FeatureCache, evict


class _Encoder(nn.Module):
    """The parts of MemoryVLM the cache touches: a vision module, a projector, encode_frames."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.vision = nn.Linear(3, 4)
        nn.init.constant_(self.vision.weight, scale)
        nn.init.zeros_(self.vision.bias)
        self.projector = nn.Linear(4, 4)
        self.calls = 0

    @property
    def projector_dtype(self):
        return torch.float32

    def encode_frames(self, frames, geometry=None):
        self.calls += frames.shape[0]
        x = frames.float().mean((3, 4))  # [B,T,3]
        return self.vision(x)[:, :, None, :].expand(-1, -1, 2, -1)  # [B,T,2,4]


def _batch(videos):
    frames = torch.stack([torch.full((3, 3, 2, 2), 10 * (i + 1)) for i in range(len(videos))]).to(torch.uint8)
    return {"frames": frames, "rows": [{"video": v} for v in videos]}


def _cache(folder, **kw):
    return DiskFeatureCache(folder, {"frames": 3}, lambda video: [], **kw)


def test_second_instance_reads_what_the_first_wrote(tmp_path):
    model = _Encoder()
    first = _cache(tmp_path).tokens(model, _batch(["a", "b", "a"]))
    assert model.calls == 2  # a repeated video is encoded once
    other = _cache(tmp_path)  # another run / process
    again = other.tokens(model, _batch(["a", "b", "a"]))
    assert model.calls == 2 and other.hits == 3 and torch.equal(first, again)
    assert torch.equal(first, FeatureCache().tokens(model, _batch(["a", "b", "a"])))  # as the RAM cache
    assert len(list(other.dir.glob("*.safetensors"))) == 2 and not list(other.dir.glob(".*tmp"))
    assert json.loads((other.dir / "key.json").read_text())["frames"] == 3


def test_key_follows_the_frozen_weights_and_store_dtype(tmp_path):
    a, b = _cache(tmp_path), _cache(tmp_path)
    a.bind(_Encoder(1.0))
    b.bind(_Encoder(2.0))
    assert a.dir != b.dir
    half = _cache(tmp_path, store_dtype="bfloat16")
    half.bind(_Encoder(1.0))
    assert half.dir != a.dir
    model = _Encoder(1.0)
    exact = _cache(tmp_path).tokens(model, _batch(["a"]))
    approx = half.tokens(model, _batch(["a"]))
    assert approx.dtype == torch.float32 and torch.allclose(exact, approx, rtol=1e-2)


def test_changed_source_file_is_not_served_stale_tokens(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"1")
    cache = DiskFeatureCache(tmp_path / "c", {}, lambda v: [video])
    cache.bind(_Encoder())
    before = cache.path("v")
    os.utime(video, ns=(0, 10**9))
    fresh = DiskFeatureCache(tmp_path / "c", {}, lambda v: [video])
    fresh.bind(_Encoder())
    assert fresh.path("v") != before


def test_eviction_removes_least_recently_used(tmp_path):
    model = _Encoder()
    cache = _cache(tmp_path)
    cache.tokens(model, _batch(["a", "b", "c"]))
    paths = {v: cache.path(v) for v in "abc"}
    for i, v in enumerate("bca"):  # a used last, b first
        os.utime(paths[v], (1000 + i, 1000 + i))
    size = paths["a"].stat().st_size
    left, removed = evict(tmp_path, 2 * size)
    assert removed == 1 and not paths["b"].exists() and paths["a"].exists() and left == 2 * size
    bounded = _cache(tmp_path, max_bytes=size)  # a write over the bound evicts as it goes
    bounded.tokens(model, _batch(["d"]))
    assert len(list(tmp_path.glob("*/*.safetensors"))) == 1 and bounded.evicted == 2
    assert bounded.tokens(model, _batch(["a"])).shape == (1, 3, 2, 4)  # an evicted video is recomputed


def _write_many(folder, rounds):
    cache = _cache(folder)
    model = _Encoder()
    for _ in range(rounds):
        cache.bind(model)
        cache.put("v", model.encode_frames(_batch(["v"])["frames"])[0])


def test_concurrent_writers_leave_one_complete_file(tmp_path):
    _cache(tmp_path).bind(_Encoder())  # create the key folder
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(tmp_path, 20)) for _ in range(4)]
    for p in procs:
        p.start()
    reader = _cache(tmp_path)
    model = _Encoder()
    reads = 0
    deadline = time.time() + 60
    while any(p.is_alive() for p in procs) and time.time() < deadline:
        reader.bind(model)
        got = reader.get("v", model)
        if got is not None:  # never a torn file: either absent or the whole tensor
            assert got.shape == (3, 2, 4)
            reads += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert reader.get("v", model).shape == (3, 2, 4)
    assert [p.name for p in reader.dir.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture
def synth(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "4", "--frames", "8", "--size", "32"]) == 0
    return tmp_path


SETS = ["data.question_types=[]", "data.frames=4", "model.vision.image_size=32", "model.pool=1", 'train.init_from=""',
        "train.batch_size=2", "train.max_steps=2", "train.log_every=1", "train.feature_cache_dir=cache/f"]


def _sets(extra=()):
    return [a for s in [*SETS, *extra] for a in ("--set", s)]


def test_cache_features_fills_ahead_and_training_only_reads(synth, monkeypatch, capsys):
    from vlmem.data.dataset import QADataset

    assert main(["cache-features", "tiny/phase1", *_sets()]) == 0
    assert "encoded" in capsys.readouterr().out
    files = list((synth / "cache/f").glob("*/*.safetensors"))
    assert len(files) >= 2
    decoded = []
    frames = QADataset._frames
    monkeypatch.setattr(QADataset, "_frames", lambda self, video: decoded.append(video) or frames(self, video))
    assert main(["train", "tiny/phase1", *_sets(["run.name=cached"])]) == 0
    assert decoded == []  # every video came from the disk cache
    metrics = [json.loads(x) for x in (synth / "runs/cached/metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["feature_cache_hits"] == 4
    # without the folder the command says what to set (usage error, exit 2)
    assert main(["cache-features", "tiny/phase1", *_sets(['train.feature_cache_dir=""'])]) == 2
    assert "train.feature_cache_dir" in capsys.readouterr().err
