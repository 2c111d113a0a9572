"""vlmem.data.video: H.264 round trip, sampling semantics (lmms-eval), frame folders, errors."""

from __future__ import annotations

import numpy as np
import pytest

from vlmem.data.video import read_frames, sample_frame_indices, video_num_frames, write_video
from vlmem.errors import DataError, UsageError


def _frames(n: int = 6, h: int = 32, w: int = 32) -> np.ndarray:
    """Big flat colour blocks that move, like the synthetic renders."""
    f = np.zeros((n, h, w, 3), dtype=np.uint8)
    f[:, : h // 2, : w // 2] = (220, 40, 40)
    f[:, h // 2 :, :] = (40, 80, 230)
    f[:, : h // 2, w // 2 :] = (250, 230, 40)
    for i in range(n):
        f[i, 2 + i : 8 + i, 4:12] = (35, 35, 35)
    return f


def test_uniform_matches_lmms_eval_truncation():
    # lmms-eval: np.linspace(0, total_frame_num - 1, max_frames_num, dtype=int)
    for total, n in [(10, 4), (100, 32), (7, 7), (33, 8), (1, 3)]:
        expected = np.linspace(0, total - 1, n, dtype=int)
        np.testing.assert_array_equal(sample_frame_indices(total, n), expected)
    np.testing.assert_array_equal(sample_frame_indices(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(sample_frame_indices(8, 3), [0, 3, 7])  # 3.5 truncates to 3
    np.testing.assert_array_equal(sample_frame_indices(3, 8), [0, 0, 0, 0, 1, 1, 1, 2])  # short video repeats


def test_stream_window():
    np.testing.assert_array_equal(sample_frame_indices(20, 4, "stream", start=5), [5, 6, 7, 8])
    np.testing.assert_array_equal(sample_frame_indices(10, 4, "stream", start=8), [6, 7, 8, 9])  # clamped to fit
    np.testing.assert_array_equal(sample_frame_indices(3, 5, "stream"), [0, 1, 2, 2, 2])
    with pytest.raises(UsageError):
        sample_frame_indices(10, 4, "random")
    with pytest.raises(UsageError):
        sample_frame_indices(10, 0)
    with pytest.raises(DataError):
        sample_frame_indices(0, 4)


@pytest.mark.parametrize("backend", [None, "av"])
def test_write_read_round_trip(tmp_path, backend):
    frames = _frames()
    path = write_video(tmp_path / "v.mp4", frames, fps=8)
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    assert video_num_frames(path) == len(frames)
    got = read_frames(path, [0, 2, 5], backend=backend)
    assert got.shape == (3, 32, 32, 3) and got.dtype == np.uint8
    err = np.abs(got.astype(int) - frames[[0, 2, 5]].astype(int)).mean()
    assert err < 6, err


def test_decord_and_av_agree(tmp_path):
    pytest.importorskip("decord")
    path = write_video(tmp_path / "v.mp4", _frames(8), fps=8)
    idx = [7, 1, 1, 4]
    a, b = read_frames(path, idx, backend="decord"), read_frames(path, idx, backend="av")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_odd_size_is_padded(tmp_path):
    frames = _frames(3, 31, 33)
    path = write_video(tmp_path / "odd.mp4", frames, fps=8)
    got = read_frames(path, [0, 1, 2])
    assert got.shape == (3, 32, 34, 3)
    # colour edges at odd positions straddle 2x2 chroma blocks: a bit more error than even-aligned ones
    assert np.abs(got[:, :31, :33].astype(int) - frames.astype(int)).mean() < 8


def test_frame_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames" / "scene"
    folder.mkdir(parents=True)
    frames = _frames(4)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png")
    (folder / "notes.txt").write_text("ignored")
    assert video_num_frames(folder) == 4
    got = read_frames(folder, [3, 0])
    np.testing.assert_array_equal(got, frames[[3, 0]])


def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(DataError, match="missing.mp4"):
        read_frames(missing, [0])
    with pytest.raises(DataError, match="missing.mp4"):
        video_num_frames(missing)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01not a video" * 50)
    for backend in (None, "av"):
        with pytest.raises(DataError, match="corrupt.mp4"):
            read_frames(corrupt, [0], backend=backend)
    with pytest.raises(DataError, match="corrupt.mp4"):
        video_num_frames(corrupt)
    path = write_video(tmp_path / "short.mp4", _frames(3), fps=8)
    for backend in (None, "av"):
        with pytest.raises(DataError, match="short.mp4"):
            read_frames(path, [0, 5], backend=backend)
    with pytest.raises(UsageError):
        write_video(tmp_path / "bad.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32))


def test_pyav_fallback_when_decord_cannot_decode(tmp_path, monkeypatch):
    """decord fails on some files it opens (e.g. 'DECORDArrayCopyFromTo: The size must exactly match' on
    small frame sizes): vlmem reads the frames with PyAV instead of aborting."""
    import types

    from vlmem.data import video as video_mod
    from vlmem.errors import DataError

    path = tmp_path / "v.mp4"
    frames = np.random.default_rng(0).integers(0, 255, (5, 24, 24, 3), dtype=np.uint8)
    write_video(path, frames, fps=4)

    class BrokenReader:
        def __init__(self, *a, **k):
            pass

        def __len__(self):
            return 5

        def get_batch(self, idx):
            raise RuntimeError("Check failed: from_size == to_size (2304 vs. 1728)")

    fake = types.SimpleNamespace(VideoReader=BrokenReader, cpu=lambda i: None)
    monkeypatch.setattr(video_mod, "_decord", lambda: fake)
    got = read_frames(path, [0, 2, 4])
    assert np.array_equal(got, read_frames(path, [0, 2, 4], backend="av"))
    with pytest.raises(DataError, match="cannot decode frames"):
        read_frames(path, [0], backend="decord")  # asked for decord explicitly: no fallback

    def unopenable(*a, **k):
        raise RuntimeError("cannot open")

    monkeypatch.setattr(video_mod, "_decord", lambda: types.SimpleNamespace(VideoReader=unopenable, cpu=lambda i: 0))
    assert video_mod.video_num_frames(path) == 5
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="bad.mp4.*decord also failed"):
        read_frames(tmp_path / "bad.mp4", [0])
