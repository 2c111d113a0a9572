"""Decode the training loop's batches in DataLoader worker processes (`data.num_workers`).

The loop decides which samples each micro-batch holds (a pure function of seed and step);
this module only decodes and collates them, in that order, `num_workers` processes ahead of
the model. The batches, and so the weights they train, are the same for 0 or N workers, and
a resumed run starts the stream at its step.
"""

from __future__ import annotations

from functools import partial

import torch

from vlmem.data.dataset import collate
from vlmem.errors import VlmemError


class StepBatches:
    """The index lists of steps [start, stop), `micro(step)` -> that step's micro-batches, made lazily
    (the DataLoader draws them only as far ahead as its workers prefetch)."""

    def __init__(self, micro, start: int, stop: int, per_step: int):
        self.micro, self.start, self.stop, self.per_step = micro, start, stop, per_step

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield from self.micro(step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.per_step


class _Samples(torch.utils.data.Dataset):
    """dataset.sample(i, media); a user-facing error travels back as a value, so the main process
    raises it as itself (a DataLoader would wrap it in a worker traceback)."""

    def __init__(self, dataset, media: bool):
        self.dataset, self.media = dataset, media

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        try:
            return {**self.dataset.sample(i, self.media), "index": i}
        except VlmemError as exc:
            return {"error": exc, "index": i}


def _collate(samples: list[dict], pad_id: int) -> dict:
    for s in samples:
        if "error" in s:
            return {"error": s["error"]}
    batch = collate(samples, pad_id=pad_id)
    batch["indices"] = [s["index"] for s in samples]
    return batch


def batch_loader(dataset, index_lists, media: bool, pad_id: int, num_workers: int = 0,
                 prefetch_factor: int = 2) -> torch.utils.data.DataLoader:
    """Batches of `index_lists` in order. Workers persist for the loader's life, so each keeps its
    decoded-video LRU (`QADataset`) warm across epochs. The loader has its own generator: a DataLoader
    iterator draws its workers' base seed from it, and drawing it from the global RNG would shift the
    random stream (dropout ...) of a resumed run against the uninterrupted one."""
    return torch.utils.data.DataLoader(
        _Samples(dataset, media), batch_sampler=index_lists, collate_fn=partial(_collate, pad_id=pad_id),
        num_workers=num_workers, prefetch_factor=prefetch_factor if num_workers else None,
        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0))


def next_batch(batches, device=None) -> dict:
    """The next batch (on `device`), raising a worker's user-facing error as itself."""
    batch = next(batches)
    if "error" in batch:
        raise batch["error"]
    if device is not None and torch.device(device).type != "cpu":
        for key in ("frames", "input_ids", "labels", "attention_mask"):
            if key in batch:
                batch[key] = batch[key].to(device, non_blocking=True)
        if "geometry" in batch:
            batch["geometry"] = {k: v.to(device, non_blocking=True) for k, v in batch["geometry"].items()}
    return batch
