"""NoMemory: identity, for ablations. `step` returns h unchanged."""

from __future__ import annotations

import torch

from vlmem.memory.base import Memory, MemoryState


class NoMemory(Memory):
    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def init_state(self, batch_size, device=None, dtype=None, tokens_per_frame=None) -> MemoryState:
        return MemoryState(t=torch.zeros(batch_size, dtype=torch.long, device=device))

    def _step(self, h, state, return_info, inplace=False):
        return h, state.replace(t=state.t + 1), ({} if return_info else None)

    def scan(self, h, state=None, return_info=False):
        if h.dim() == 4 and h.shape[1] > 0:  # no per-frame loop needed
            if state is None:
                state = self.init_state(h.shape[0], h.device, h.dtype)
            state = state.replace(t=state.t + h.shape[1])
            return (h, state, {}) if return_info else (h, state)
        return super().scan(h, state, return_info)
