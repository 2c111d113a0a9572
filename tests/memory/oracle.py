"""Reference implementations of VLM^2 Algorithm 1, used by the tests and the benchmark.

- `oracle_scan`: one video at a time, Python lists of raw frames, unpadded tensors,
  nn.MultiheadAttention called as a module (the correctness oracle).
- `padded_scan`: batched, padded buffers of raw entries, every entry re-projected by
  nn.MultiheadAttention at every frame (the straightforward baseline of the benchmark).
Both use the parameters of a DualMemory / WorkingMemory / EpisodicMemory module and
run with dropout off (call `mem.eval()`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _branches(mem):
    wa = getattr(mem, "working_attention", None)
    ea = getattr(mem, "episodic_attention", None)
    return wa, ea


def _stored(mem, h, m):
    if type(mem).__name__ == "EpisodicMemory":
        return h
    return m if getattr(mem, "episodic_stores", "fused") == "fused" else h


def oracle_scan(mem, h: torch.Tensor) -> torch.Tensor:
    """h [B, T, N, D] -> outs [B, T, N, D], per video with Python lists."""
    wa, ea = _branches(mem)
    B, T, N, D = h.shape
    outs = torch.zeros_like(h)
    for b in range(B):
        W, E = [], []
        for t in range(T):
            ht = h[b, t][None]  # [1, N, D]
            m_w = m_e = None
            if wa is not None:
                m_w = wa(ht, torch.cat(W, 1), torch.cat(W, 1), need_weights=False)[0] if W else torch.zeros_like(ht)
            if ea is not None:
                m_e = ea(ht, torch.cat(E, 1), torch.cat(E, 1), need_weights=False)[0] if E else torch.zeros_like(ht)
            if wa is not None and ea is not None:
                g = torch.sigmoid(mem.memory_fusion_mlp(torch.cat([m_w, m_e], -1)))
                m = g * m_w + (1 - g) * m_e
            else:
                m = m_w if m_w is not None else m_e
            outs[b, t] = m[0]
            if wa is not None:
                W.append(ht)
                if len(W) > mem.L_w:
                    W.pop(0)
            if ea is not None:
                x = _stored(mem, ht, m)
                if len(E) < mem.L_e:
                    E.append(x)
                else:
                    sims = [F.cosine_similarity(x.flatten(), e.flatten(), dim=0) for e in E]
                    E[int(torch.stack(sims).argmax())] = x
    return outs


def padded_scan(mem, h: torch.Tensor) -> torch.Tensor:
    """Batched, padded raw buffers, all entries re-projected by nn.MultiheadAttention every frame."""
    wa, ea = _branches(mem)
    B, T, N, D = h.shape
    dev = h.device
    Wbuf = h.new_zeros(B, mem.L_w if wa is not None else 1, N, D)
    Ebuf = h.new_zeros(B, mem.L_e if ea is not None else 1, N, D)
    w_fill = torch.zeros(B, dtype=torch.long, device=dev)
    e_fill = torch.zeros(B, dtype=torch.long, device=dev)
    outs = []

    def read(mha, buf, fill, ht):
        L = buf.shape[1]
        valid = torch.arange(L, device=dev)[None] < fill[:, None]
        pad = ~(valid | (fill[:, None] == 0))[:, :, None].expand(B, L, N).reshape(B, L * N)
        kv = buf.reshape(B, L * N, D)
        o = mha(ht, kv, kv, key_padding_mask=pad, need_weights=False)[0]
        return torch.where((fill > 0).view(B, 1, 1), o, torch.zeros_like(o))

    for t in range(T):
        ht = h[:, t]
        m_w = read(wa, Wbuf, w_fill, ht) if wa is not None else None
        m_e = read(ea, Ebuf, e_fill, ht) if ea is not None else None
        if wa is not None and ea is not None:
            g = torch.sigmoid(mem.memory_fusion_mlp(torch.cat([m_w, m_e], -1)))
            m = g * m_w + (1 - g) * m_e
        else:
            m = m_w if m_w is not None else m_e
        outs.append(m)
        if wa is not None:  # FIFO: shift left when full, append at the end
            full = (w_fill >= mem.L_w).view(B, 1, 1, 1)
            shifted = torch.where(full, torch.cat([Wbuf[:, 1:], Wbuf[:, :1]], 1), Wbuf)
            pos = torch.clamp(w_fill, max=mem.L_w - 1)
            hit = (torch.arange(mem.L_w, device=dev)[None] == pos[:, None]).view(B, -1, 1, 1)
            Wbuf = torch.where(hit, ht[:, None], shifted)
            w_fill = torch.clamp(w_fill + 1, max=mem.L_w)
        if ea is not None:
            x = _stored(mem, ht, m)
            L = mem.L_e
            sims = F.cosine_similarity(Ebuf.flatten(2), x.flatten(1)[:, None], dim=-1)
            valid = torch.arange(L, device=dev)[None] < e_fill[:, None]
            best = sims.masked_fill(~valid, float("-inf")).argmax(-1)
            slot = torch.where(e_fill >= L, best, e_fill)
            hit = (torch.arange(L, device=dev)[None] == slot[:, None]).view(B, -1, 1, 1)
            Ebuf = torch.where(hit, x[:, None], Ebuf)
            e_fill = torch.clamp(e_fill + 1, max=L)
    return torch.stack(outs, 1)
