"""Eval encodes each video once per batch, and answers exactly as encoding every row would."""

from __future__ import annotations

import torch

from vlmem.eval.generate import _encode_once_per_video


class _Counting:
    def __init__(self):
        self.calls = []

    def encode_frames(self, frames, geometry=None):
        self.calls.append(frames.shape[0])
        return frames.float().mean((2, 3, 4))[..., None, None] + torch.zeros(1, 1, 2, 3)


def test_each_video_encoded_once_and_rows_get_their_own_video():
    frames = torch.stack([torch.full((2, 3, 4, 4), v) for v in (1, 1, 2, 1, 3, 3)]).to(torch.uint8)
    geometry = {"depth": torch.arange(6).float()[:, None].expand(6, 2)}
    rows = [{"video": f"v{v}"} for v in (1, 1, 2, 1, 3, 3)]
    model = _Counting()
    tokens = _encode_once_per_video(model, {"frames": frames, "rows": rows, "geometry": geometry})
    assert model.calls == [3]
    expected = model.encode_frames(frames)
    assert torch.equal(tokens, expected)


def test_feature_cache_encodes_a_repeated_uncached_video_once():
    from vlmem.train.loop import FeatureCache

    frames = torch.stack([torch.full((2, 3, 4, 4), v) for v in (1, 1, 2)]).to(torch.uint8)
    rows = [{"video": f"v{v}"} for v in (1, 1, 2)]
    model, cache = _Counting(), FeatureCache()
    first = cache.tokens(model, {"frames": frames, "rows": rows})
    assert model.calls == [2] and cache.misses == 3
    again = cache.tokens(model, {"frames": frames, "rows": rows})
    assert model.calls == [2] and cache.hits == 3 and torch.equal(first, again)
