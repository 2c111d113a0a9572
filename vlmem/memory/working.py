"""Working memory: FIFO of the last `L_w` frames, read by multi-head attention.

    M_w = working_attention(Q=H_t, K=V=tokens of the frames in W_t)
    W_{t+1} = last L_w frames of W_t + [H_t]

The buffer is a ring of L_w slots holding the *projected* keys/values of each
frame (projected once, when written). Slot order is irrelevant to attention;
`w_idx` records which frame each slot holds.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vlmem.memory.base import (
    Memory,
    MemoryState,
    attend_buffer,
    check_heads,
    ensure_tokens,
    project_kv,
    project_q,
    write_index,
    write_slot,
)


def working_state(B: int, H: int, L: int, hd: int, N: int, device, dtype) -> dict[str, torch.Tensor]:
    return dict(
        w_k=torch.zeros(B, H, L, N, hd, device=device, dtype=dtype),
        w_v=torch.zeros(B, H, L, N, hd, device=device, dtype=dtype),
        w_fill=torch.zeros(B, dtype=torch.long, device=device),
        w_next=torch.zeros(B, dtype=torch.long, device=device),
        w_idx=torch.full((B, L), -1, dtype=torch.long, device=device),
    )


def working_write(mha: nn.MultiheadAttention, h: torch.Tensor, st: MemoryState, L: int,
                  inplace: bool = False) -> dict[str, torch.Tensor]:
    """Append frame h [B, N, D] (FIFO, drop the oldest when full). Returns updated fields."""
    N = h.shape[1]
    k, v = project_kv(mha, h)
    slot = st.w_next
    return dict(
        w_k=write_slot(ensure_tokens(st.w_k, N, 3, "working memory"), slot, k, inplace),
        w_v=write_slot(ensure_tokens(st.w_v, N, 3, "working memory"), slot, v, inplace),
        w_fill=torch.clamp(st.w_fill + 1, max=L),
        w_next=(slot + 1) % L,
        w_idx=write_index(st.w_idx, slot, st.t),
    )


class WorkingMemory(Memory):
    """The working branch of DualMemory alone ("working only" ablation): output M_w."""

    def __init__(self, dim: int, num_heads: int = 8, L_w: int = 8, dropout: float = 0.1,
                 tokens_per_frame: int | None = None):
        super().__init__()
        check_heads(dim, num_heads, "num_heads")
        self.dim, self.num_heads, self.L_w = dim, num_heads, L_w
        self.tokens_per_frame = tokens_per_frame
        self.working_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def init_state(self, batch_size, device=None, dtype=None, tokens_per_frame=None) -> MemoryState:
        N = tokens_per_frame or self.tokens_per_frame or 0
        dtype = dtype or torch.get_default_dtype()
        return MemoryState(t=torch.zeros(batch_size, dtype=torch.long, device=device),
                           **working_state(batch_size, self.num_heads, self.L_w, self.dim // self.num_heads, N,
                                           device, dtype))

    def _step(self, h, state, return_info, inplace=False):
        q = project_q(self.working_attention, h)
        m, mass = attend_buffer(self.working_attention, q, state.w_k, state.w_v, state.w_fill, return_info)
        info = None
        if return_info:
            info = dict(w_fill=state.w_fill.clone(), w_attn=mass, w_frames=state.w_idx.clone())
        upd = working_write(self.working_attention, h, state, self.L_w, inplace)
        return m, state.replace(t=state.t + 1, **upd), info
