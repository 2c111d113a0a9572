"""Several prepared folders in one run (`data.roots` + `data.weights`).

Each global sample slot of optimizer step `s` draws its folder with
`rng([seed, MIX, s]).choice(p=weights)`; the k-th draw of folder f takes entry k of
f's own stream of seeded epoch permutations. Both are pure functions of (seed, step):
counting the earlier draws of each folder replays the cheap folder choices only, so a
resumed run (or a fresh sampler asked for any step) gets exactly the samples of an
uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlmem.data.dataset import QADataset

MIX = 0x6D6978  # "mix": separates these streams from the single-folder epoch order


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

    def validate(self) -> None:
        for ds in self.datasets:
            ds.validate()

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
        self._next = 0  # draws of each folder over steps [0, _next)
        self._counts = np.zeros(len(sizes), dtype=np.int64)
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def folders(self, step: int) -> np.ndarray:
        """Which folder each slot of `step` draws from."""
        rng = np.random.default_rng([self.seed, MIX, step])
        return rng.choice(len(self.sizes), size=self.per_step, p=self.p)

    def _draws_before(self, step: int) -> np.ndarray:
        if step < self._next:
            self._next, self._counts = 0, np.zeros_like(self._counts)
        while self._next < step:
            self._counts += np.bincount(self.folders(self._next), minlength=len(self.sizes))
            self._next += 1
        return self._counts.copy()

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
