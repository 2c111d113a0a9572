"""Episodic memory: `L_e` long-term entries, read by multi-head attention.

    M_e = episodic_attention(Q=H_t, K=V=tokens of the entries in E_t)
    write x_t (M_t by default, H_t with episodic_stores="input"):
        if |E| < L_e: append
        else:         replace argmax_j cos(vec(x_t), vec(E_j))   (flattened over N*D)

Slots hold the projected keys/values (projected once, when written) and the unit
vector of the raw entry (for the cosine rule). `e_idx` records the source frame.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.errors import ConfigError
from vlmem.memory.base import (
    Memory,
    MemoryState,
    attend,
    attend_buffer,
    check_heads,
    ensure_tokens,
    frame_queries,
    project_kv,
    project_q,
    slot_mass,
    take_slots,
    write_index,
    write_slot,
)


def episodic_state(B: int, H: int, L: int, hd: int, N: int, device, dtype) -> dict[str, torch.Tensor]:
    D = H * hd
    return dict(
        e_k=torch.zeros(B, H, L, N, hd, device=device, dtype=dtype),
        e_v=torch.zeros(B, H, L, N, hd, device=device, dtype=dtype),
        e_unit=torch.zeros(B, L, N * D, device=device, dtype=dtype),
        e_fill=torch.zeros(B, dtype=torch.long, device=device),
        e_idx=torch.full((B, L), -1, dtype=torch.long, device=device),
    )


def episodic_write(mha: nn.MultiheadAttention, x: torch.Tensor, st: MemoryState, L: int,
                   write: torch.Tensor | None = None, inplace: bool = False,
                   private: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Write x [B, N, D] (append, or replace the most cosine-similar entry when full).
    `write` [B] bool (salience gate) disables the write per video. `private`: the state's buffers
    belong to the calling scan, so the unit vectors (never differentiated, read by no autograd node)
    are written in place even under autograd, not copied per frame.
    Returns (updated state fields, info: e_slot, e_replaced, e_replace_sim)."""
    B, N, D = x.shape
    e_unit = ensure_tokens(st.e_unit, N * D, 2, "episodic memory")
    u = F.normalize(x.detach().reshape(B, N * D).float(), dim=-1).to(e_unit.dtype)
    sims = torch.einsum("bld,bd->bl", e_unit.float(), u.float())  # [B, L]
    valid = torch.arange(L, device=x.device)[None, :] < st.e_fill[:, None]
    best_sim, best = sims.masked_fill(~valid, float("-inf")).max(-1)
    full = st.e_fill >= L
    slot = torch.where(full, best, st.e_fill)
    every = write is None  # every video writes: no host sync in write_slot
    if write is not None:
        slot = torch.where(write, slot, torch.full_like(slot, -1))
    replaced = full & (slot >= 0)
    k, v = project_kv(mha, x)
    upd = dict(
        e_k=write_slot(ensure_tokens(st.e_k, N, 3, "episodic memory"), slot, k, inplace, every),
        e_v=write_slot(ensure_tokens(st.e_v, N, 3, "episodic memory"), slot, v, inplace, every),
        e_unit=write_slot(e_unit[:, None, :, None], slot, u[:, None, None], inplace or private, every)[:, 0, :, 0],
        e_fill=torch.clamp(st.e_fill + (slot >= 0).long(), max=L),
        e_idx=write_index(st.e_idx, slot, st.t),
    )
    info = dict(e_slot=slot, e_replaced=replaced,
                e_replace_sim=torch.where(replaced, best_sim, torch.zeros_like(best_sim)))
    return upd, info


class EpisodicScan:
    """The episodic branch over the frames of one scan when every frame writes (no salience gate),
    so the fill counts follow from the frame index (`fill`: st.e_fill on the host).

    Under autograd, while no buffer is full every write is an append: a read sees [old filled
    slots; entries written so far], concatenated at read time, instead of a copy of the whole slot
    buffer per write (out of place under autograd, which keeps every copy). From the first
    replacement on, the slot buffers are built once and `episodic_write` updates them frame by
    frame. Without autograd the slot buffers are a private copy from the start, written in place."""

    def __init__(self, mha: nn.MultiheadAttention, st: MemoryState, L: int, fill: list[int], N: int,
                 info: bool = False):
        self.mha, self.st, self.L = mha, st, L
        self.info = [] if info else None  # per frame: `step`'s episodic info (`frame_info`)
        self.idx = st.e_idx  # the slot -> frame table before the next append (kept for the info only)
        self.lo, self.hi = min(fill), max(fill)
        self.old_k, self.old_v = (ensure_tokens(b, N, 3, "episodic memory") for b in (st.e_k, st.e_v))
        B, H, hd = self.old_k.shape[0], self.old_k.shape[1], self.old_k.shape[4]
        # the old filled slots as read by every frame, sliced once (each slice's backward zero-fills
        # a gradient of the whole buffer)
        self.old_kv = tuple(b[:, :, :self.hi].reshape(B, H, self.hi * N, hd) for b in (self.old_k, self.old_v))
        self.keys, self.values, self.written = [], [], []
        self.slots = None  # the state's episodic fields, once some buffer is full
        self.n = 0  # frames written
        if not torch.is_grad_enabled():  # no autograd: a private copy of the buffers, written in place
            self.slots = MemoryState(t=st.t, **self.fields())  # (a read then is a view, not a concatenation)

    def read(self, q: torch.Tensor) -> torch.Tensor:
        B, H, N, hd = q.shape
        i, hi = self.n, self.hi
        L = self.L
        if self.slots is not None:
            s = self.slots
            span = (min(self.lo + i, L), min(hi + i, L))  # every frame writes: fill = min(fill0 + i, L)
            if self.info is not None:
                valid = torch.arange(L, device=q.device)[None, :] < s.e_fill[:, None]
                self.mass = slot_mass(q, s.e_k.reshape(B, H, L * N, hd), valid, L)
            return attend_buffer(self.mha, q, s.e_k, s.e_v, s.e_fill, span=span)[0]
        if hi == 0 and i == 0:
            self.mass = q.new_zeros(B, L, dtype=torch.float32)
            return q.new_zeros(B, N, H * hd)
        ks, vs = list(self.keys), list(self.values)
        if hi:
            ks.insert(0, self.old_kv[0])
            vs.insert(0, self.old_kv[1])
        k, v = (torch.cat(x, 2) if len(x) > 1 else x[0] for x in (ks, vs))
        if self.info is not None:  # old position p is slot p, the j-th entry written here slot fill + j
            fill = self.st.e_fill[:, None]
            pos = torch.arange(hi + i, device=q.device)[None, :]
            slots = torch.where(pos < hi, pos, fill + pos - hi).expand(B, -1)
            mass = slot_mass(q, k, (pos >= hi) | (pos < fill), hi + i)
            self.mass = mass.new_zeros(B, L).scatter_add(1, slots, mass)
        mask = empty = None
        if self.lo != hi:  # old slots past a video's fill are masked
            fill = self.st.e_fill
            valid = torch.arange(hi, device=q.device)[None, :] < fill[:, None]
            if i == 0 and self.lo == 0:
                empty = fill == 0
                valid = valid | empty[:, None]  # attend to anything, zeroed by `attend`
            mask = torch.cat([valid[:, :, None].expand(B, hi, N).reshape(B, hi * N),
                              valid.new_ones(B, i * N)], 1).view(B, 1, 1, -1)
        return attend(self.mha, q, k, v, mask, empty)

    def write(self, x: torch.Tensor) -> None:
        if self.slots is None and self.hi + self.n == self.L:  # the next write replaces
            self.slots = MemoryState(t=self.st.t + self.n, **self.fields())
        if self.slots is not None:
            before = self.slots
            upd, winfo = episodic_write(self.mha, x, before, self.L, inplace=not torch.is_grad_enabled(), private=True)
            self.slots = before.replace(t=before.t + 1, **upd)
            if self.info is not None:
                self.info.append(dict(e_fill=before.e_fill, e_attn=self.mass, e_frames=before.e_idx, **winfo))
        else:
            if self.info is not None:
                slot = self.st.e_fill + self.n
                no = torch.zeros_like(slot, dtype=torch.bool)
                self.info.append(dict(e_fill=slot, e_attn=self.mass, e_frames=self.idx, e_slot=slot,
                                      e_replaced=no, e_replace_sim=torch.zeros_like(slot, dtype=torch.float32)))
                self.idx = write_index(self.idx, slot, self.st.t + self.n)
            k, v = project_kv(self.mha, x)
            self.keys.append(k.to(self.old_k.dtype))
            self.values.append(v.to(self.old_k.dtype))
            self.written.append(x)
        self.n += 1

    def frame_info(self) -> dict[str, torch.Tensor]:
        """`step`'s episodic info of every frame written, stacked over frames (dim 1)."""
        return {k: torch.stack([f[k] for f in self.info], 1) for k in self.info[0]}

    def fields(self) -> dict[str, torch.Tensor]:
        """The episodic fields of the state after the writes so far."""
        if self.slots is not None:
            return {k: v for k, v in self.slots.items() if k != "t"}
        st, L, n = self.st, self.L, len(self.keys)
        B, N = self.old_k.shape[0], self.old_k.shape[3]
        e_unit = ensure_tokens(st.e_unit, N * self.mha.embed_dim, 2, "episodic memory")
        if n == 0:  # copies: the caller's buffers may be written in place next
            return dict(e_k=self.old_k.clone(), e_v=self.old_v.clone(), e_unit=e_unit.clone(),
                        e_fill=st.e_fill.clone(), e_idx=st.e_idx.clone())
        dev = st.e_fill.device
        s = torch.arange(L, device=dev)[None, :]
        fill = st.e_fill[:, None]
        src = torch.where((s >= fill) & (s < fill + n), L + s - fill, s)  # slot <- [old slots; new entries]
        u = F.normalize(torch.stack(self.written, 1).detach().reshape(B, n, -1).float(), dim=-1)
        new_idx = st.t[:, None] + torch.arange(n, device=dev)

        def build(old, new, dim):
            return take_slots(torch.cat([old, new], dim), src, dim)

        return dict(
            e_k=build(self.old_k, torch.stack(self.keys, 2), 2),
            e_v=build(self.old_v, torch.stack(self.values, 2), 2),
            e_unit=build(e_unit, u.to(e_unit.dtype), 1),
            e_fill=st.e_fill + n,
            e_idx=build(st.e_idx, new_idx, 1),
        )


class SalienceGate(nn.Module):
    """Optional: score each frame, s = sigmoid(MLP(mean token)) with the seeds' shape
    Linear -> ReLU -> Linear -> Sigmoid, and write the episodic entry x * s (a soft write).

    Training writes every frame (`write` None), so the gate always gets gradient through the
    entry it scales, and a gate that starts closed can open again; a hard write gate got gradient
    only through the entries it wrote, so a closed one never opened. In eval the frames with
    s <= threshold are not written (`write` [B] bool); the others store the same x * s as in training."""

    def __init__(self, dim: int, threshold: float = 0.5):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, max(dim // 2, 1)), nn.ReLU(), nn.Linear(max(dim // 2, 1), 1))
        nn.init.constant_(self.mlp[-1].bias, 1.0)  # starts open (s ~ 0.7): every frame written until it learns otherwise
        self.threshold = threshold

    def forward(self, h: torch.Tensor, x: torch.Tensor):
        s = torch.sigmoid(self.mlp(h.mean(1))).squeeze(-1)  # [B]
        write = None if self.training else s.detach() > self.threshold
        return s, write, x * s.view(-1, 1, 1).to(x.dtype)


class EpisodicMemory(Memory):
    """The episodic branch of DualMemory alone ("episodic only" ablation): output M_e.

    Stores H_t: with no working branch the fused output would be M_e itself, which
    starts at zero (empty buffer), so "fused" would only ever store read-outs of zeros."""

    def __init__(self, dim: int, num_heads: int = 8, L_e: int = 32, dropout: float = 0.1,
                 use_salience_gate: bool = False, salience_threshold: float = 0.5,
                 tokens_per_frame: int | None = None):
        super().__init__()
        check_heads(dim, num_heads, "num_heads")
        if L_e < 1:
            raise ConfigError(f"model.memory.L_e={L_e} must be >= 1")
        self.dim, self.num_heads, self.L_e = dim, num_heads, L_e
        self.tokens_per_frame = tokens_per_frame
        self.episodic_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.salience_gate = SalienceGate(dim, salience_threshold) if use_salience_gate else None

    def init_state(self, batch_size, device=None, dtype=None, tokens_per_frame=None) -> MemoryState:
        N = tokens_per_frame or self.tokens_per_frame or 0
        dtype = dtype or torch.get_default_dtype()
        return MemoryState(t=torch.zeros(batch_size, dtype=torch.long, device=device),
                           **episodic_state(batch_size, self.num_heads, self.L_e, self.dim // self.num_heads, N,
                                            device, dtype))

    def _step(self, h, state, return_info, inplace=False):
        q = project_q(self.episodic_attention, h)
        m, mass = attend_buffer(self.episodic_attention, q, state.e_k, state.e_v, state.e_fill, return_info)
        x, write, sal = h, None, None
        if self.salience_gate is not None:
            sal, write, x = self.salience_gate(h, x)
        upd, winfo = episodic_write(self.episodic_attention, x, state, self.L_e, write, inplace)
        info = None
        if return_info:
            info = dict(e_fill=state.e_fill.clone(), e_attn=mass, e_frames=state.e_idx.clone(), **winfo)
            if sal is not None:
                info["salience"] = sal.detach()
        return m, state.replace(t=state.t + 1, **upd), info

    def _scan_fast(self, h, state, return_info=False):
        if self.salience_gate is not None:  # writes depend on the gate: frame by frame
            return None
        episodic = EpisodicScan(self.episodic_attention, state, self.L_e, state.e_fill.tolist(), h.shape[2],
                                return_info)
        outs = []
        for t, q in enumerate(frame_queries(self.episodic_attention, h)):
            outs.append(episodic.read(q))
            episodic.write(h[:, t])
        out = torch.stack(outs, 1), state.replace(t=state.t + h.shape[1], **episodic.fields())
        return (*out, episodic.frame_info()) if return_info else out

    def _scan_fast_info(self, h, state):
        return self._scan_fast(h, state, return_info=True)
