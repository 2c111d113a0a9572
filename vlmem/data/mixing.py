"""Several prepared folders in one run (`data.roots` + `data.weights`).

Each global sample slot of optimizer step `s` draws its folder by weight: the choices of
steps `[b*BLOCK, (b+1)*BLOCK)` are one `rng([seed, MIX, b]).choice(p=weights)` matrix. The
k-th draw of folder f takes entry k of f's own stream of seeded epoch permutations. Both are
pure functions of (seed, step): counting the earlier draws of each folder replays only the
folder choices, a block at a time (a resume at step 100k replays ~100 matrices), so a
resumed run (or a fresh sampler asked for any step) gets exactly the samples of an
uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlmem.data.dataset import QADataset

MIX = 0x6D6978  # "mix": separates these streams from the single-folder epoch order
BLOCK = 1024  # steps whose folder choices are drawn together


def training_roots(recipe) -> list[Path]:
    """The training folders: data.roots, or [data.root] for a single-folder run."""
    return [Path(r) for r in recipe.data.roots] or [Path(recipe.data.root)]


def video_key(row: dict) -> str:
    """A video's identity across folders (two folders may both hold videos/scene0.mp4)."""
    return f"{row['_root']}::{row['video']}" if "_root" in row else row["video"]


class MixedDataset:
    """The concatenation of one QADataset per folder; rows carry their folder under `_root`."""

    def __init__(self, datasets: list[QADataset]):
        self.datasets = datasets
        for ds in datasets:
            for row in ds.rows:
                row["_root"] = str(ds.root)
        self.sizes = [len(ds) for ds in datasets]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)

    def __len__(self) -> int:
        return int(sum(self.sizes))

    def validate(self, all_videos: bool = False) -> None:
        for ds in self.datasets:
            ds.validate(all_videos=all_videos)

    def sample(self, i: int, media: bool = True) -> dict:
        f = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.datasets[f].sample(int(i - self.offsets[f]), media)

    def __getitem__(self, i: int) -> dict:
        return self.sample(i)


class MixSampler:
    """Global sample indices (into a MixedDataset) of each optimizer step."""

    def __init__(self, seed: int, sizes: list[int], weights: list[float], per_step: int):
        self.seed, self.sizes, self.per_step = seed, list(sizes), per_step
        p = np.asarray(weights if weights else sizes, dtype=np.float64)
        self.p = p / p.sum()
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        self._blocks = 0  # draws of each folder over the first _blocks blocks
        self._counts = np.zeros(len(sizes), dtype=np.int64)
        self._block: tuple[int, np.ndarray] | None = None
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def _choices(self, block: int) -> np.ndarray:
        """[BLOCK, per_step] folder of every slot of the block's steps."""
        if self._block is None or self._block[0] != block:
            rng = np.random.default_rng([self.seed, MIX, block])
            self._block = (block, rng.choice(len(self.sizes), size=(BLOCK, self.per_step), p=self.p))
        return self._block[1]

    def folders(self, step: int) -> np.ndarray:
        """Which folder each slot of `step` draws from."""
        return self._choices(step // BLOCK)[step % BLOCK]

    def _draws_before(self, step: int) -> np.ndarray:
        block, row = divmod(step, BLOCK)
        if block < self._blocks:
            self._blocks, self._counts = 0, np.zeros_like(self._counts)
        while self._blocks < block:
            self._counts += np.bincount(self._choices(self._blocks).ravel(), minlength=len(self.sizes))
            self._blocks += 1
        return self._counts + np.bincount(self._choices(block)[:row].ravel(), minlength=len(self.sizes))

    def _permutation(self, folder: int, epoch: int) -> np.ndarray:
        key = (folder, epoch)
        if key not in self._perms:
            # only the current epoch of each folder is needed again
            self._perms = {k: v for k, v in self._perms.items() if k[0] != folder or k[1] > epoch}
            self._perms[key] = np.random.default_rng([self.seed, MIX, folder, epoch]).permutation(self.sizes[folder])
        return self._perms[key]

    def step_indices(self, step: int) -> np.ndarray:
        drawn = self._draws_before(step)
        out = np.empty(self.per_step, dtype=np.int64)
        for j, f in enumerate(self.folders(step)):
            epoch, i = divmod(int(drawn[f]), self.sizes[f])
            drawn[f] += 1
            out[j] = self.offsets[f] + self._permutation(int(f), epoch)[i]
        return out
