"""Shared pieces of every memory: the tensor-only state, the base class, and the
attention-over-a-buffer helpers used by the working / episodic / dual memories.

Interface (DESIGN.md section 4):
    state = mem.init_state(batch_size, device, dtype)
    m, state = mem.step(h, state)            # h [B, N, D]
    m, state, info = mem.step(h, state, return_info=True)
    state = mem.reset(state, done)           # done [B] bool
    outs, state = mem.scan(h, state)         # h [B, T, N, D]
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.errors import UsageError


class MemoryState:
    """Named tensors, each with the batch as its first dimension. Immutable by
    convention: `step` returns a new state, the old one stays valid."""

    def __init__(self, **tensors: torch.Tensor):
        object.__setattr__(self, "_tensors", dict(tensors))

    def __getattr__(self, name: str) -> torch.Tensor:
        try:
            return self.__dict__["_tensors"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("MemoryState is immutable; use state.replace(name=tensor)")

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def keys(self):
        return self._tensors.keys()

    def items(self):
        return self._tensors.items()

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._tensors)

    def replace(self, **tensors: torch.Tensor) -> MemoryState:
        return MemoryState(**{**self._tensors, **tensors})

    def detach(self) -> MemoryState:
        """Cut the autograd graph (truncated backprop through time between chunks)."""
        return MemoryState(**{k: v.detach() for k, v in self._tensors.items()})

    def to(self, *args, **kwargs) -> MemoryState:
        """Moves every tensor; dtype casts apply to floating tensors only."""
        out = {}
        for k, v in self._tensors.items():
            out[k] = v.to(*args, **kwargs) if v.is_floating_point() else v.to(
                *[a for a in args if not isinstance(a, torch.dtype)],
                **{kk: vv for kk, vv in kwargs.items() if kk != "dtype"},
            )
        return MemoryState(**out)

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self._tensors.values())

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={tuple(v.shape)}:{str(v.dtype).replace('torch.', '')}"
                         for k, v in self._tensors.items())
        return f"MemoryState({body})"


class Memory(nn.Module, metaclass=abc.ABCMeta):
    """Base class. Subclasses implement `init_state` and `_step`."""

    @abc.abstractmethod
    def init_state(self, batch_size: int, device=None, dtype=None) -> MemoryState:
        """A fresh state for `batch_size` videos."""

    @abc.abstractmethod
    def _step(self, h: torch.Tensor, state: MemoryState, return_info: bool, inplace: bool = False):
        """`inplace`: the state's buffers may be overwritten (only set by scan under no_grad)."""

    def step(self, h: torch.Tensor, state: MemoryState, return_info: bool = False):
        """One frame: `h` [B, N, D] -> `(m, state)` or `(m, state, info)`."""
        if h.dim() != 3:
            raise UsageError(f"{type(self).__name__}.step expects h of shape [B, N, D], got {tuple(h.shape)}")
        m, state, info = self._step(h, state, return_info)
        return (m, state, info) if return_info else (m, state)

    def reset(self, state: MemoryState, done: torch.Tensor) -> MemoryState:
        """Clear the state of the videos where `done` [B] is True; keep the others."""
        done = done.to(torch.bool)
        if done.dim() != 1:
            raise UsageError(f"reset expects done of shape [B], got {tuple(done.shape)}")
        if not bool(done.any()):
            return state
        any_t = next(iter(state.as_dict().values()), None)
        if any_t is None:
            return state
        floats = [v for v in state.as_dict().values() if v.is_floating_point()]
        dtype = floats[0].dtype if floats else None
        fresh = self.init_state(done.shape[0], any_t.device, dtype)
        out = {}
        for k, old in state.items():
            new = fresh.__getattr__(k).to(old.dtype) if k in fresh else torch.zeros_like(old)
            if new.shape != old.shape:  # lazily sized buffers (tokens per frame) start as zeros
                new = torch.zeros_like(old)
            mask = done.to(old.device).view(-1, *([1] * (old.dim() - 1)))
            out[k] = torch.where(mask, new, old)
        return MemoryState(**out)

    def scan(self, h: torch.Tensor, state: MemoryState | None = None, return_info: bool = False):
        """Run `step` over frames: `h` [B, T, N, D] -> `(outs [B, T, N, D], state)`;
        with `return_info` also a dict of info tensors stacked over T (dim 1)."""
        if h.dim() != 4:
            raise UsageError(f"{type(self).__name__}.scan expects h of shape [B, T, N, D], got {tuple(h.shape)}")
        B, T = h.shape[:2]
        if T == 0:
            raise UsageError(f"{type(self).__name__}.scan got a video with zero frames (h.shape={tuple(h.shape)}); "
                             "every video needs at least one frame")
        if state is None:
            state = self.init_state(B, h.device, h.dtype)
        fast = self._scan_fast_info(h, state) if return_info else self._scan_fast(h, state)
        if fast is not None:
            return fast
        inplace = not torch.is_grad_enabled()
        if inplace:  # buffers private to this scan: write slots in place instead of copying
            state = MemoryState(**{k: v.clone() for k, v in state.items()})
        outs, infos = [], []
        for t in range(T):
            m, state, info = self._step(h[:, t], state, return_info, inplace)
            outs.append(m)
            if return_info:
                infos.append(info)
        out = torch.stack(outs, 1)
        if not return_info:
            return out, state
        return out, state, {k: torch.stack([i[k] for i in infos], 1) for k in infos[0]}

    def _scan_fast(self, h: torch.Tensor, state: MemoryState):
        """Optional: `(outs, state)` as `_step` frame by frame would give, computed faster (e.g. all
        frames' projections at once), or None to step. Never used with `return_info`."""
        return None

    def _scan_fast_info(self, h: torch.Tensor, state: MemoryState):
        """Optional: `_scan_fast` that also returns `step`'s info stacked over T, `(outs, state, info)`
        (logging steps stay on the batched path), or None to step."""
        return None

    def scan_truncated(self, h: torch.Tensor, state: MemoryState, chunk: int = 0, return_info: bool = False):
        """`scan` in chunks of `chunk` frames with the state detached between them (truncated
        backprop through time; 0 = one chunk). Returns `(outs, state, info)`, info `{}` unless asked."""
        T = h.shape[1]
        chunk = chunk or T
        outs, infos = [], []
        for start in range(0, T, chunk):
            if start:
                state = state.detach()
            res = self.scan(h[:, start:start + chunk], state, return_info=return_info)
            outs.append(res[0])
            state = res[1]
            if return_info:
                infos.append(res[2])
        info = {k: torch.cat([i[k] for i in infos], 1) for k in infos[0]} if return_info and infos[0] else {}
        return torch.cat(outs, dim=1), state, info

    def aux_losses(self, state: MemoryState) -> dict[str, torch.Tensor]:
        """Extra loss terms to add to the training loss (already weighted)."""
        return {}


# ---------------------------------------------------------------------------
# Attention over a slot buffer with nn.MultiheadAttention's own weights.
# Buffers hold projected keys / values: [B, H, L, N, hd] (L slots of N tokens).


def project_q(mha: nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
    """h [B, N, D] -> q [B, H, N, hd] with the module's query in-projection."""
    D, H = mha.embed_dim, mha.num_heads
    b = mha.in_proj_bias[:D] if mha.in_proj_bias is not None else None
    q = F.linear(h, mha.in_proj_weight[:D], b)
    return q.view(h.shape[0], h.shape[1], H, D // H).transpose(1, 2)


def frame_queries(mha: nn.MultiheadAttention, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """h [B, T, N, D] -> T queries [B, H, N, hd], projected in one matmul for all frames."""
    return project_q(mha, h.flatten(1, 2)).unflatten(2, h.shape[1:3]).unbind(2)


def project_kv(mha: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, N, D] -> (k, v), each [B, H, N, hd] and contiguous (cheap to copy into a buffer or
    concatenate; unbind's backward stacks the two grads instead of zero-filling for each); done
    once, when x is written."""
    D, H = mha.embed_dim, mha.num_heads
    b = mha.in_proj_bias[D:] if mha.in_proj_bias is not None else None
    kv = F.linear(x, mha.in_proj_weight[D:], b).view(x.shape[0], x.shape[1], 2, H, D // H)
    return kv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)


def read_heads(mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """q [B, H, N, hd] over k / v [B, H, K, hd] (mask [B, 1, 1, K] bool: True = attend) -> the heads
    concatenated, [B, N, D], before the out-projection."""
    B, H, N, hd = q.shape
    p = mha.dropout if mha.training else 0.0
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p).transpose(1, 2).reshape(B, N, H * hd)


def attend(mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           mask: torch.Tensor | None = None, empty: torch.Tensor | None = None) -> torch.Tensor:
    """`read_heads` then the out-projection -> [B, N, D]. Videos where `empty` [B] is True read zeros."""
    o = F.linear(read_heads(mha, q, k, v, mask), mha.out_proj.weight, mha.out_proj.bias)
    return o if empty is None else torch.where(empty.view(-1, 1, 1), torch.zeros_like(o), o)


def attend_buffer(mha: nn.MultiheadAttention, q: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor,
                  fill: torch.Tensor, return_weights: bool = False, span: tuple[int, int] | None = None):
    """Multi-head attention of q [B, H, N, hd] over the first `fill[b]` slots of
    k_buf / v_buf [B, H, L, N, hd]. Returns (out [B, N, D], slot_mass [B, L] or None).

    Only the filled prefix (max fill in the batch) is read; a boolean mask is used
    only when the fill counts differ. Videos with an empty buffer read out zeros.
    `span`: (min, max) of `fill` when the caller knows them, else read from the device (a sync)."""
    B, H, N, hd = q.shape
    L, Nk = k_buf.shape[2], k_buf.shape[3]
    lo, hi = span if span is not None else (int(x) for x in torch.aminmax(fill))
    D = H * hd
    if hi == 0:
        z = q.new_zeros(B, N, D)
        return z, (q.new_zeros(B, L) if return_weights else None)
    # a full buffer is read unsliced: a slice's backward zero-fills a gradient of the whole buffer
    k = (k_buf if hi == L else k_buf[:, :, :hi]).reshape(B, H, hi * Nk, hd)
    v = (v_buf if hi == L else v_buf[:, :, :hi]).reshape(B, H, hi * Nk, hd)
    mask = None
    if lo != hi:
        valid = torch.arange(hi, device=fill.device)[None, :] < fill[:, None]  # [B, hi]
        valid = valid | (fill[:, None] == 0)  # empty videos attend to zeros, zeroed below
        mask = valid[:, :, None].expand(B, hi, Nk).reshape(B, 1, 1, hi * Nk)
    empty = fill == 0 if lo == 0 else None
    if not return_weights:
        return attend(mha, q, k, v, mask, empty), None
    s = (q @ k.transpose(-1, -2)) * (hd ** -0.5)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = torch.softmax(s.float(), dim=-1).to(q.dtype)
    mass = w.detach().float().view(B, H, N, hi, Nk).sum(-1).mean((1, 2))
    mass = F.pad(mass, (0, L - hi))
    p = mha.dropout if mha.training else 0.0
    if p > 0:
        w = F.dropout(w, p)
    o = F.linear((w @ v).transpose(1, 2).reshape(B, N, D), mha.out_proj.weight, mha.out_proj.bias)
    if empty is not None:
        o = torch.where(empty.view(B, 1, 1), torch.zeros_like(o), o)
        mass = mass * (~empty).view(B, 1)
    return o, mass


def slot_mass(q: torch.Tensor, k: torch.Tensor, valid: torch.Tensor | None, n_slots: int) -> torch.Tensor:
    """The attention weight each slot gets, as `attend_buffer(..., return_weights=True)` reports it:
    q [B, H, N, hd] over k [B, H, S * Nk, hd] (S slots of Nk tokens; valid [B, S] bool or None) ->
    [B, S] float32, summed over a slot's tokens, averaged over heads and queries. Rows without a valid
    slot get zeros. Detached, and computed beside the read, which keeps its own kernel (a logging
    step reads exactly as any other): the attention kernel over one-hot slot indicators as values
    (padded to a width of 16, where the CPU kernel is vectorised) gives the summed weights ~6x
    faster than materialising the softmax."""
    with torch.no_grad():
        B, H, N, hd = q.shape
        Nk = k.shape[2] // n_slots
        width = -(-n_slots // 16) * 16
        ind = F.one_hot(torch.arange(n_slots, device=q.device).repeat_interleave(Nk), width).to(q.dtype)
        mask = empty = None
        if valid is not None:
            empty = ~valid.any(1)
            keep = valid | empty[:, None]
            mask = keep[:, :, None].expand(B, n_slots, Nk).reshape(B, 1, 1, n_slots * Nk)
        w = F.scaled_dot_product_attention(q, k, ind.expand(B, H, -1, -1), attn_mask=mask)
        mass = w[..., :n_slots].float().mean((1, 2))
        return mass if empty is None else mass * (~empty).view(B, 1)


def write_slot(buf: torch.Tensor, slot: torch.Tensor, new: torch.Tensor, inplace: bool = False,
               every: bool = False) -> torch.Tensor:
    """Write new [B, H, N, hd] into slot[b] of buf [B, H, L, N, hd]; slot < 0 means no
    write for that video. Copies the buffer unless `inplace` (scan under no_grad).
    `every`: the caller knows every video writes (no host sync to find out)."""
    out = buf if inplace else buf.clone()
    sel = slot >= 0
    if every or bool(sel.all()):
        out[torch.arange(buf.shape[0], device=buf.device), :, slot] = new.to(buf.dtype)
    elif bool(sel.any()):
        b = sel.nonzero().squeeze(1)
        out[b, :, slot[b]] = new[b].to(buf.dtype)
    return out


def take_slots(buf: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """out[b, ..., j] = buf[b, ..., index[b, j]] along `dim` (index [B, L] long), with everything
    after `dim` copied as whole rows (index_select), not element by element as `gather` would."""
    lead, rest = buf.shape[:dim], buf.shape[dim + 1:]
    base = torch.arange(math.prod(lead), device=buf.device).view(*lead, 1) * buf.shape[dim]
    rows = base + index.view(index.shape[0], *[1] * (dim - 1), index.shape[1])
    return buf.reshape(-1, *rest).index_select(0, rows.flatten()).view(*lead, index.shape[1], *rest)


def write_index(idx: torch.Tensor, slot: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """idx [B, L] long; set idx[b, slot[b]] = value[b] where slot[b] >= 0."""
    L = idx.shape[1]
    hit = torch.arange(L, device=idx.device)[None, :] == slot[:, None]
    return torch.where(hit, value[:, None].to(idx.dtype), idx)


def ensure_tokens(buf: torch.Tensor, n: int, dim: int, name: str) -> torch.Tensor:
    """Buffers are created with 0 tokens per slot and sized at the first write."""
    if buf.shape[dim] == n:
        return buf
    if buf.shape[dim] == 0:
        shape = list(buf.shape)
        shape[dim] = n
        return buf.new_zeros(shape)
    raise UsageError(f"{name}: tokens per frame changed from {buf.shape[dim]} to {n} within a video; "
                     "reset the state or build it with init_state(..., tokens_per_frame=N)")


def check_heads(dim: int, heads: int, key: str) -> None:
    from vlmem.errors import ConfigError

    if heads <= 0 or dim % heads != 0:
        raise ConfigError(f"model.memory.{key}={heads} must be a positive divisor of the memory dim {dim}")
