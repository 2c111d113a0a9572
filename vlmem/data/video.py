"""Video IO: H.264 writing (PyAV), frame reading (decord, PyAV fallback, image folders, single images), frame sampling.

Sampling follows lmms-eval / VLM-3R exactly: `uniform` is
`np.linspace(0, num_frames - 1, n, dtype=int)`, i.e. evenly spaced float positions
TRUNCATED (not rounded) to ints; a video shorter than `n` frames repeats indices
instead of failing. `stream` is a contiguous window `[start, start + n)`.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from vlmem.errors import DataError, UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SAMPLING_MODES = ("uniform", "stream")


# -- sampling -----------------------------------------------------------------
def sample_frame_indices(num_frames: int, n: int, mode: str = "uniform", start: int = 0) -> np.ndarray:
    """Indices of `n` frames out of `num_frames` (int64, non-decreasing, all in range).

    uniform: `np.linspace(0, num_frames - 1, n, dtype=int)` as lmms-eval's `load_video`
             (truncation toward zero); fewer frames than `n` repeats indices.
    stream:  the contiguous window `start, start + 1, ..., start + n - 1`; `start` is
             clamped so the window fits; a video shorter than `n` repeats its last frame.
    """
    num_frames, n = int(num_frames), int(n)
    if n < 1:
        raise UsageError(f"cannot sample {n} frames: need at least 1")
    if num_frames < 1:
        raise DataError("cannot sample frames from a video with no frames")
    if mode == "uniform":
        return np.linspace(0, num_frames - 1, n, dtype=int).astype(np.int64)
    if mode == "stream":
        start = min(max(int(start), 0), max(num_frames - n, 0))
        return np.minimum(np.arange(start, start + n, dtype=np.int64), num_frames - 1)
    raise UsageError(f"unknown frame sampling mode {mode!r}: expected one of {SAMPLING_MODES}")


# -- writing ------------------------------------------------------------------
def write_video(path: Path, frames: np.ndarray, fps: float = 8.0, crf: int = 10, preset: str = "medium") -> Path:
    """Write uint8 RGB frames [F, H, W, 3] to an H.264 (yuv420p) mp4, atomically.

    yuv420p needs even sizes: an odd height/width is padded by repeating the last
    row/column, so the decoded video is then 1 px larger. `crf` 10 keeps flat colours
    within a few levels. Returns `path`.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise UsageError(f"write_video({path}): expected frames [F, H, W, 3] with F >= 1, got {frames.shape}")
    with VideoWriter(path, fps, crf, preset) as writer:
        writer.write(frames)
    return path


class VideoWriter:
    """`write_video` a chunk at a time (a stream of any length never sits in memory whole):
    `with VideoWriter(path, fps) as w: w.write(frames [n, H, W, 3])`. The file appears,
    atomically, when the block ends without an error; every chunk has the first one's size."""

    def __init__(self, path: Path, fps: float = 8.0, crf: int = 10, preset: str = "medium"):
        self.path, self.fps, self.crf, self.preset = Path(path), fps, crf, preset
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}{self.path.suffix or '.mp4'}")
        self.container = self.stream = None
        self.frames = 0

    def __enter__(self) -> VideoWriter:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        return self

    def write(self, frames: np.ndarray) -> None:
        import av

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise UsageError(f"write_video({self.path}): expected frames [F, H, W, 3] with F >= 1, got {frames.shape}")
        if frames.dtype != np.uint8:
            raise UsageError(f"write_video({self.path}): expected uint8 frames, got {frames.dtype}")
        _, h, w, _ = frames.shape
        if h % 2 or w % 2:
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self.stream.width, self.stream.height = frames.shape[2], frames.shape[1]
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": str(self.crf), "preset": self.preset}
            self.stream.codec_context.thread_count = 1
        elif (frames.shape[2], frames.shape[1]) != (self.stream.width, self.stream.height):
            raise UsageError(f"write_video({self.path}): frame size changed to {frames.shape[1:3]}")
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        self.frames += len(frames)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.stream is not None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
            self.container.close()
            if exc_type is None:
                if self.stream is None:
                    raise UsageError(f"write_video({self.path}): no frames written")
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()


# -- reading ------------------------------------------------------------------
def _decord():
    try:
        import decord
    except ImportError:
        return None
    decord.logging.set_level(decord.logging.QUIET)  # no ffmpeg noise: vlmem names the file and problem itself
    return decord


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: video not found")


def video_num_frames(path: Path) -> int:
    """Frames in a video file (decord, else PyAV) or image files in a frame folder."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return len(_image_files(path))
    if path.suffix.lower() in IMAGE_EXTENSIONS:  # a single image (PixMo rows) is a one-frame video
        return 1
    decord = _decord()
    if decord is not None:
        try:
            return len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1))
        except Exception:  # decord raises DECORDError / RuntimeError: PyAV may still read it
            pass
    return _av_num_frames(path)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _av_num_frames(path: Path) -> int:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for packet in container.demux(stream) if packet.size)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read video ({_short(exc)})") from None


def _check_indices(path: Path, indices: np.ndarray, total: int) -> None:
    if len(indices) and (indices.min() < 0 or indices.max() >= total):
        raise DataError(f"{path}: frame indices {indices.min()}..{indices.max()} out of range for {total} frames")


def read_frames(path: Path, indices, backend: str | None = None) -> np.ndarray:
    """Frames `indices` of a video (or of a folder of .jpg/.png, sorted by name) as uint8 [n, H, W, 3].

    backend: "decord", "av" or None (decord when importable, else PyAV).
    A missing, corrupt or too-short input raises DataError naming the file.
    """
    path = Path(path)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    _check_exists(path)
    if path.is_dir():
        return _read_image_folder(path, indices)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return _read_images([path], indices, path)
    if backend not in (None, "decord", "av"):
        raise UsageError(f"unknown video backend {backend!r}: expected 'decord' or 'av'")
    decord = _decord() if backend in (None, "decord") else None
    if backend == "decord" and decord is None:
        raise UsageError("video backend 'decord' requested but decord is not installed")
    if decord is not None:
        try:
            frames = _read_decord(decord, path, indices)
        except DataError as exc:
            if backend == "decord":
                raise
            return _read_av_after_decord(path, indices, exc)
        if frames is not None:
            return frames
    return _read_av(path, indices)


def _read_decord(decord, path: Path, indices: np.ndarray) -> np.ndarray:
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:
        raise DataError(f"{path}: cannot read video ({_short(exc)})") from None
    _check_indices(path, indices, len(vr))
    try:
        return vr.get_batch(indices.tolist()).asnumpy()
    except Exception as exc:
        raise DataError(f"{path}: cannot decode frames ({_short(exc)})") from None


def _read_av_after_decord(path: Path, indices: np.ndarray, decord_error: DataError) -> np.ndarray:
    """decord failed (some codecs and frame sizes it cannot copy out): PyAV decodes the same frames.
    When PyAV fails too, the error names both."""
    try:
        return _read_av(path, indices)
    except DataError as exc:
        raise DataError(f"{exc} (decord also failed: {decord_error})") from None


def _read_av(path: Path, indices: np.ndarray) -> np.ndarray:
    import av

    wanted = set(indices.tolist())
    last = int(indices.max()) if len(indices) else -1
    decoded: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            count = 0
            for i, frame in enumerate(container.decode(stream)):
                count = i + 1
                if i in wanted:
                    decoded[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read video ({_short(exc)})") from None
    if len(indices) and last >= count:
        raise DataError(f"{path}: frame indices {indices.min()}..{last} out of range for {count} frames")
    if not len(indices):
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack([decoded[i] for i in indices.tolist()])


def _read_image_folder(folder: Path, indices: np.ndarray) -> np.ndarray:
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder}: no .jpg/.png frames in folder")
    return _read_images(files, indices, folder)


def _read_images(files: list[Path], indices: np.ndarray, where: Path) -> np.ndarray:
    """Images `files[i]` for i in `indices` as uint8 [n, H, W, 3] (all the same size)."""
    from PIL import Image

    _check_indices(where, indices, len(files))
    out = []
    for i in indices.tolist():
        try:
            with Image.open(files[i]) as img:
                out.append(np.asarray(img.convert("RGB")))
        except Exception as exc:
            raise DataError(f"{files[i]}: cannot read image ({_short(exc)})") from None
    if len({a.shape for a in out}) > 1:
        raise DataError(f"{where}: frames have different sizes")
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), dtype=np.uint8)


def video_rate(path: Path) -> float | None:
    """Frames per second of a video file from its container (None when unknown, or for a frame folder)."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS:
        return None
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read video ({_short(exc)})") from None


def iter_frames(path: Path, keep=None, chunk: int = 16):
    """Decode a video (or frame folder) front to back, yielding `(indices, frames)` chunks of at most
    `chunk` kept frames (uint8 [n, H, W, 3]); `keep(i) -> bool` picks frames (default all). Only one
    chunk is in memory at a time, whatever the video's length. PyAV decodes frame by frame."""
    path = Path(path)
    _check_exists(path)
    keep = keep or (lambda i: True)
    idx: list[int] = []
    buf: list[np.ndarray] = []
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS:
        files = _image_files(path) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{path}: no .jpg/.png frames in folder")
        source = ((i, None) for i in range(len(files)))
    else:
        source = _av_frames(path)
    for i, frame in source:
        if not keep(i):
            continue
        idx.append(i)
        buf.append(frame if frame is not None else _read_images(files, np.array([i]), path)[0])
        if len(buf) == chunk:
            yield np.array(idx), np.stack(buf)
            idx, buf = [], []
    if buf:
        yield np.array(idx), np.stack(buf)


def _av_frames(path: Path):
    """(index, rgb frame) of every frame, decoded one at a time with PyAV."""
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot read video ({_short(exc)})") from None
    with container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        i = 0
        try:
            for frame in container.decode(stream):
                yield i, frame.to_ndarray(format="rgb24")
                i += 1
        except Exception as exc:
            raise DataError(f"{path}: cannot decode frame {i} ({_short(exc)})") from None
