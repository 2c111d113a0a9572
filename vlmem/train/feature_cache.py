"""Frozen vision (+ fusion) outputs per video, so a step whose encoder is frozen skips it.

`FeatureCache` keeps them in RAM for one run. `DiskFeatureCache` keeps them on disk as one
safetensors file per video under `<folder>/<key>/`, where the key hashes the frozen weights
and the sampling settings: runs, ablation variants and processes that would compute the same
tokens share the files, and anything that changes them (other weights, frames, image size,
dtype) lands under another key. Files are written to a temp name and renamed (N concurrent
writers of one video leave one complete file), read memory-mapped (`safe_open`), and the folder
is kept under a size bound by deleting the least recently used files (mtime, touched on use).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import torch

FORMAT_VERSION = 1
ENCODER_MODULES = ("vision", "geometry_encoder", "fusion")  # what `encode_frames` runs
STORE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class FeatureCache:
    """In RAM, per process, per run: computed on first use."""

    def __init__(self):
        self.store: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def has(self, video: str) -> bool:
        return video in self.store

    def get(self, video: str, model) -> torch.Tensor | None:
        return self.store.get(video)

    def put(self, video: str, tokens: torch.Tensor) -> None:
        self.store[video] = tokens

    def bind(self, model) -> None:
        """Called before each lookup; the disk cache derives its key from the model here."""

    def tokens(self, model, batch: dict, media=None) -> torch.Tensor:
        """Tokens [B, T, N, D] of the batch's videos. `media(rows)`: a batch with the frames (+ geometry)
        of those rows only, for a batch collated without them (the loop decodes only uncached videos)."""
        from vlmem.model.vlm import encode_once_per_video

        self.bind(model)
        from vlmem.data.mixing import video_key

        videos = [video_key(r) for r in batch["rows"]]
        found = {v: self.get(v, model) for v in dict.fromkeys(videos)}
        missing = [i for i, v in enumerate(videos) if found[v] is None]
        if missing:  # rows of the same uncached video are encoded once
            self.misses += len(missing)
            if media is not None:
                part = media(missing)
            else:
                part = {"frames": batch["frames"][missing]}
                if "geometry" in batch:
                    part["geometry"] = {k: v[missing] for k, v in batch["geometry"].items()}
            with torch.no_grad():
                fresh = encode_once_per_video(model, part["frames"], part.get("geometry"),
                                              [videos[i] for i in missing])
            for j, i in enumerate(missing):
                if found[videos[i]] is None:
                    found[videos[i]] = fresh[j].detach()
                    self.put(videos[i], found[videos[i]])
        self.hits += len(videos) - len(missing)
        return torch.stack([found[v] for v in videos])


def encoder_fingerprint(model) -> str:
    """sha256 over the names, dtypes, shapes and bytes of the weights `encode_frames` uses."""
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    for module_name in ENCODER_MODULES:
        module = getattr(model, module_name, None)
        if module is None:
            continue
        for name, t in sorted(module.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{module_name}.{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class DiskFeatureCache(FeatureCache):
    """On disk under `folder/<key>/<video id>.safetensors`, shared by every run with the same key.

    `settings`: what besides the frozen weights decides the tokens (frames, image size, sampling,
    geometry source ...). `sources(video)`: the files the video's tokens are computed from; their
    path, size and mtime name the video's file, so a regenerated dataset is not served stale tokens.
    """

    def __init__(self, folder: str | Path, settings: dict, sources, store_dtype: str = "float32",
                 max_bytes: int = 0):
        super().__init__()
        self.root = Path(folder)
        self.settings = {**settings, "store_dtype": store_dtype, "format": FORMAT_VERSION}
        self.sources = sources
        self.store_dtype = STORE_DTYPES[store_dtype]
        self.max_bytes = max_bytes
        self.dir: Path | None = None
        self.key = ""
        self._names: dict[str, str] = {}
        self._bytes: int | None = None  # estimate of the whole folder's size, rescanned when over the bound
        self.evicted = 0

    def bind(self, model) -> None:
        if self.dir is not None:
            return
        payload = json.dumps({**self.settings, "weights": encoder_fingerprint(model),
                              "compute_dtype": str(model.projector_dtype)}, sort_keys=True)
        self.key = hashlib.sha256(payload.encode()).hexdigest()[:24]
        self.dir = self.root / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "key.json"
        if not info.is_file():  # what the key stands for, for a person looking at the folder
            _atomic_write_bytes(info, (json.dumps(json.loads(payload), indent=2) + "\n").encode())

    def path(self, video: str) -> Path:
        if video not in self._names:
            h = hashlib.sha256(f"{video}\n".encode())
            for src in self.sources(video):
                src = Path(src).resolve()
                st = src.stat() if src.exists() else None
                h.update(f"{src}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
            self._names[video] = h.hexdigest()[:32]
        return self.dir / f"{self._names[video]}.safetensors"

    def has(self, video: str) -> bool:
        return self.path(video).is_file()

    def get(self, video: str, model) -> torch.Tensor | None:
        from safetensors import safe_open

        path = self.path(video)
        try:
            with safe_open(str(path), framework="pt") as f:  # memory-mapped: reads only this tensor's pages
                tokens = f.get_tensor("tokens")
        except Exception:  # not there yet, evicted by another process meanwhile, or damaged outside vlmem: recompute
            return None
        try:  # LRU by mtime: a file in use is the last to be evicted
            os.utime(path)
        except OSError:
            pass
        return tokens.to(device=next(model.projector.parameters()).device, dtype=model.projector_dtype)

    def put(self, video: str, tokens: torch.Tensor) -> None:
        from safetensors.torch import save

        data = save({"tokens": tokens.to(device="cpu", dtype=self.store_dtype).contiguous()},
                    metadata={"video": video, "key": self.key})
        _atomic_write_bytes(self.path(video), data)
        if self.max_bytes:
            if self._bytes is None:
                self._bytes = _folder_bytes(self.root)
            self._bytes += len(data)
            if self._bytes > self.max_bytes:
                self._bytes, removed = evict(self.root, self.max_bytes)
                self.evicted += removed


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder + rename: readers see the old file, no file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _cache_files(root: Path) -> list[tuple[float, int, Path]]:
    out = []
    for path in root.glob("*/*.safetensors"):
        try:
            st = path.stat()
        except FileNotFoundError:  # evicted by another process
            continue
        out.append((st.st_mtime, st.st_size, path))
    return out


def _folder_bytes(root: Path) -> int:
    return sum(size for _, size, _ in _cache_files(root))


def evict(root: Path, max_bytes: int) -> tuple[int, int]:
    """Delete the least recently used files of the whole cache folder until it fits `max_bytes`.
    Returns (bytes left, files removed). Another process reading a removed file keeps its open copy."""
    files = sorted(_cache_files(root))
    total = sum(size for _, size, _ in files)
    removed = 0
    for _, size, path in files:
        if total <= max_bytes:
            break
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        total -= size
    return total, removed


def make_feature_cache(recipe, root: Path, spec, data_sources: dict[str, str | None] | None = None) -> FeatureCache:
    """The recipe's cache: on disk under `train.feature_cache_dir`, else in RAM. `data_sources`: a video
    key's `dataset` column (for a `{data_source}` template in `model.geometry.cached_dir`)."""
    t = recipe.train
    if not t.feature_cache_dir:
        return FeatureCache()
    root = Path(root)

    def sources(video: str) -> list[Path]:
        folder, _, name = video.rpartition("::")  # a mixed run's key names its folder (data/mixing.py)
        files = [(Path(folder) if folder else root) / name]
        stem = Path(name).stem
        if spec.geometry == "sensor":
            files.append((Path(folder) if folder else root) / "geometry" / f"{stem}.safetensors")
        elif spec.geometry == "cached":
            from vlmem.geometry import find_cached_geometry

            files.append(find_cached_geometry(spec.cached_dir, stem, (data_sources or {}).get(video)))
        return files

    settings = {"frames": spec.frames, "image_size": spec.image_size, "sampling": recipe.data.sampling,
                "geometry": spec.geometry}
    return DiskFeatureCache(t.feature_cache_dir, settings, sources, t.feature_cache_dtype,
                            int(t.feature_cache_max_gb * (1 << 30)))


def fill_feature_cache(recipe, splits: tuple[str, ...] = ()) -> dict:
    """Encode every video of the recipe's split(s) into `train.feature_cache_dir` ahead of training,
    with the weights training will freeze (`train.init_from`). Under `accelerate launch` each process
    takes every N-th video. Returns counts: videos, written, present, evicted."""
    from accelerate import PartialState

    from vlmem.data.dataset import QADataset, SampleSpec, collate, read_qa_table, select_rows
    from vlmem.errors import UsageError
    from vlmem.model.build import build_model, dataset_texts, load_tokenizer
    from vlmem.train.checkpoint import load_model_weights, resolve_model_dir
    from vlmem.train.params import configure_trainable, frozen_encoder

    t, m = recipe.train, recipe.model
    if not t.feature_cache_dir:
        raise UsageError("cache-features needs train.feature_cache_dir (a folder shared by runs), e.g. "
                         "--set train.feature_cache_dir=cache/features")
    root = Path(recipe.data.root)
    all_rows = read_qa_table(root)
    rows = []
    for split in splits or (recipe.data.train_split,):
        rows += select_rows(all_rows, root / "qa.parquet", split, recipe.data.question_types, recipe.data.max_samples)
    spec = SampleSpec.for_model(m, recipe.data.frames)
    init_dir = resolve_model_dir(Path(t.init_from)) if t.init_from else None
    tokenizer = load_tokenizer(recipe, texts=dataset_texts(all_rows) if init_dir is None else None, saved=init_dir)
    dataset = QADataset(root, rows, spec, tokenizer)
    dataset.validate()
    model = build_model(recipe, tokenizer)
    if init_dir is not None:
        load_model_weights(model, init_dir, merge_memory_lora=True)
    components = configure_trainable(model, recipe)
    if not frozen_encoder(model, components):
        raise UsageError(f"train.phase = {t.phase} trains {sorted(components & {'vision', 'fusion'})}: their outputs "
                         "change every step, so there is nothing to cache (train.cache_features applies when vision "
                         "and fusion are frozen)")
    state = PartialState()
    model.to(state.device).eval()
    first_row: dict[str, int] = {}
    for i, r in enumerate(rows):
        first_row.setdefault(r["video"], i)
    mine = sorted(first_row)[state.process_index::state.num_processes]
    cache = make_feature_cache(recipe, root, spec, {r["video"]: r.get("dataset") for r in rows})
    cache.bind(model)
    todo = [first_row[v] for v in mine if not cache.has(v)]
    step = max(1, t.batch_size)
    for k in range(0, len(todo), step):
        batch = collate([dataset.sample(i) for i in todo[k:k + step]])
        batch["frames"] = batch["frames"].to(state.device)
        if "geometry" in batch:
            batch["geometry"] = {name: v.to(state.device) for name, v in batch["geometry"].items()}
        cache.tokens(model, batch)
    return {"videos": len(mine), "written": len(todo), "present": len(mine) - len(todo),
            "evicted": getattr(cache, "evicted", 0), "folder": str(getattr(cache, "dir", "")),
            "process": state.process_index}
