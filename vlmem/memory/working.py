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
import torch.nn.functional as F

from vlmem.memory.base import (
    Memory,
    MemoryState,
    attend_buffer,
    check_heads,
    ensure_tokens,
    frame_queries,
    project_kv,
    project_q,
    read_heads,
    slot_mass,
    take_slots,
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
        w_k=write_slot(ensure_tokens(st.w_k, N, 3, "working memory"), slot, k, inplace, every=True),
        w_v=write_slot(ensure_tokens(st.w_v, N, 3, "working memory"), slot, v, inplace, every=True),
        w_fill=torch.clamp(st.w_fill + 1, max=L),
        w_next=(slot + 1) % L,
        w_idx=write_index(st.w_idx, slot, st.t),
    )


def working_scan(mha: nn.MultiheadAttention, h: torch.Tensor, st: MemoryState, L: int, fill: list[int],
                 info: bool = False) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The working reads of all frames of h [B, T, N, D], the fields after writing them all, as
    `T` x (read, `working_write`) would give, and with `info` the per-frame info of `step`
    (w_fill, w_attn, w_frames, each [B, T, ...]; else {}). `fill`: st.w_fill on the host.

    The reads depend on h and the state only, so keys / values of all frames are projected at once
    and frame t reads a window of [old entries, oldest first; frames of h], concatenated from
    per-entry tensors under autograd (a slice of one tensor of all frames would cost a zero-filled
    gradient of that whole tensor per frame: quadratic in T), else as a view of that tensor; the
    ring buffer is built once at the end. Fill counts follow from the frame index.
    Relies on the ring's invariant: until it is full, slots [0, fill) hold the entries and
    w_next = fill (init_state, the writes and reset keep it)."""
    B, T, N, _ = h.shape
    dev = h.device
    w_k, w_v = (ensure_tokens(b, N, 3, "working memory") for b in (st.w_k, st.w_v))
    H = mha.num_heads
    q = frame_queries(mha, h)
    # [B, H, T, N, hd]: all frames' tokens projected as one sequence
    k, v = (x.unflatten(2, (T, N)).to(w_k.dtype) for x in project_kv(mha, h.flatten(1, 2)))
    roll = (st.w_next[:, None] + torch.arange(L, device=dev)) % L  # slots, oldest entry first
    old_k, old_v = (take_slots(b, roll, 2) for b in (w_k, w_v))
    lo, hi = min(fill), max(fill)  # only the last `hi` old entries can be valid
    seq_k, seq_v = (torch.cat([o[:, :, L - hi:], x], 2) if hi else x for o, x in ((old_k, k), (old_v, v)))
    if k.requires_grad:  # per-entry tensors [B, H, N, hd]: unbind's backward stacks their gradients once
        seq_k, seq_v = seq_k.unbind(2), seq_v.unbind(2)
    first = 0 if hi else 1  # all buffers empty: frame 0 reads nothing (zeros, outside the graph)
    heads = []  # per frame, before the out-projection (done once for all frames below)
    masses = [h.new_zeros(B, L, dtype=torch.float32)] * first
    for t in range(first, T):
        n_lo, n_hi = min(lo + t, L), min(hi + t, L)
        window = slice(hi + t - n_hi, hi + t)
        if k.requires_grad:  # [B, H, n_hi * N, hd]
            kt, vt = (torch.cat(s[window], 2) for s in (seq_k, seq_v))
        else:  # no backward: a view, no copy
            kt, vt = (s[:, :, window].reshape(B, H, n_hi * N, -1) for s in (seq_k, seq_v))
        mask = valid = None
        if n_lo != n_hi:  # window positions before a video's first entry are masked
            n = torch.clamp(st.w_fill + t, max=L)
            valid = torch.arange(n_hi, device=dev)[None, :] >= (n_hi - n)[:, None]
            mask = (valid | (n[:, None] == 0))  # empty videos attend to anything, zeroed below
            mask = mask[:, :, None].expand(B, n_hi, N).reshape(B, 1, 1, n_hi * N)
        heads.append(read_heads(mha, q[t], kt, vt, mask))
        if info:  # window position j holds sequence entry hi + t - n_hi + j, in ring slot (that - hi + w_next) % L
            slots = (st.w_next[:, None] + torch.arange(t - n_hi, t, device=dev)[None, :]) % L
            mass = slot_mass(q[t], kt, valid, n_hi)
            masses.append(mass.new_zeros(B, L).scatter_add(1, slots, mass))
    reads = [h.new_zeros(B, N, h.shape[3])] * first
    if heads:
        out = F.linear(torch.stack(heads, 1), mha.out_proj.weight, mha.out_proj.bias)
        if first == 0 and lo == 0:  # frame 0 of a video with an empty buffer reads zeros
            empty = (st.w_fill == 0)[:, None] & (torch.arange(T, device=dev) == 0)[None, :]
            out = torch.where(empty[:, :, None, None], torch.zeros_like(out), out)
        reads += out.unbind(1)
    # ring slot s ends up holding position T + ((s - w_next - T) mod L) of [old entries; frames of h]
    pos = T + (torch.arange(L, device=dev)[None, :] - st.w_next[:, None] - T) % L
    new_idx = st.t[:, None] + torch.arange(T, device=dev)
    frame_info = {}
    if info:
        idx, frames = st.w_idx, []
        for t in range(T):  # the slot -> frame table before each write, as `step` reports it
            frames.append(idx)
            idx = write_index(idx, (st.w_next + t) % L, st.t + t)
        frame_info = dict(w_fill=torch.clamp(st.w_fill[:, None] + torch.arange(T, device=dev), max=L),
                          w_attn=torch.stack(masses, 1), w_frames=torch.stack(frames, 1))
    return reads, dict(
        w_k=take_slots(torch.cat([old_k, k], 2), pos, 2),
        w_v=take_slots(torch.cat([old_v, v], 2), pos, 2),
        w_fill=torch.clamp(st.w_fill + T, max=L),
        w_next=(st.w_next + T) % L,
        w_idx=take_slots(torch.cat([take_slots(st.w_idx, roll, 1), new_idx], 1), pos, 1),
    ), frame_info


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

    def _scan_fast(self, h, state, return_info=False):
        reads, upd, info = working_scan(self.working_attention, h, state, self.L_w, state.w_fill.tolist(),
                                        return_info)
        out = torch.stack(reads, 1), state.replace(t=state.t + h.shape[1], **upd)
        return (*out, info) if return_info else out

    def _scan_fast_info(self, h, state):
        return self._scan_fast(h, state, return_info=True)
