"""Dual memory, VLM^2 Algorithm 1.

For frame t of each video (reads before writes, so frame t sees frames < t):
    M_w = working_attention(Q=H_t, K=V=W_t)           # last L_w frames
    M_e = episodic_attention(Q=H_t, K=V=E_t)          # L_e long-term entries
    g   = sigmoid(memory_fusion_mlp([M_w; M_e]))      # [B, N, D]
    M_t = g * M_w + (1 - g) * M_e                     # returned by step()
    W  <- FIFO append H_t (capacity L_w)
    E  <- append M_t (or H_t), or replace the most cosine-similar entry when full
The residual H_t + M_t, if any, belongs to the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vlmem.errors import ConfigError
from vlmem.memory.base import Memory, MemoryState, attend_buffer, check_heads, frame_queries, project_q
from vlmem.memory.episodic import EpisodicScan, SalienceGate, episodic_state, episodic_write
from vlmem.memory.working import working_scan, working_state, working_write

EPISODIC_STORES = ("fused", "input")


class DualMemory(Memory):
    def __init__(self, dim: int, num_heads: int = 8, L_w: int = 8, L_e: int = 32, dropout: float = 0.1,
                 episodic_stores: str = "fused", use_salience_gate: bool = False, salience_threshold: float = 0.5,
                 tokens_per_frame: int | None = None, gate_init: float | None = None):
        super().__init__()
        check_heads(dim, num_heads, "num_heads")
        if episodic_stores not in EPISODIC_STORES:
            raise ConfigError(f"model.memory.episodic_stores={episodic_stores!r}; valid choices: {EPISODIC_STORES}")
        if L_w < 1 or L_e < 1:
            raise ConfigError(f"model.memory.L_w={L_w} and model.memory.L_e={L_e} must be >= 1")
        self.dim, self.num_heads, self.L_w, self.L_e = dim, num_heads, L_w, L_e
        self.episodic_stores = episodic_stores
        self.tokens_per_frame = tokens_per_frame
        self.working_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.episodic_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.memory_fusion_mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        if gate_init is not None:  # start g near gate_init (the working branch's share); None = PyTorch's init, g ~ 1/2
            if not 0.0 < gate_init < 1.0:
                raise ConfigError(f"model.memory.gate_init={gate_init} must be strictly between 0 and 1")
            nn.init.constant_(self.memory_fusion_mlp[-1].bias, math.log(gate_init / (1.0 - gate_init)))
        self.salience_gate = SalienceGate(dim, salience_threshold) if use_salience_gate else None

    def init_state(self, batch_size, device=None, dtype=None, tokens_per_frame=None) -> MemoryState:
        N = tokens_per_frame or self.tokens_per_frame or 0
        dtype = dtype or torch.get_default_dtype()
        hd = self.dim // self.num_heads
        return MemoryState(
            t=torch.zeros(batch_size, dtype=torch.long, device=device),
            g_sum=torch.zeros(batch_size, device=device, dtype=dtype),  # sum over frames of the mean gate
            **working_state(batch_size, self.num_heads, self.L_w, hd, N, device, dtype),
            **episodic_state(batch_size, self.num_heads, self.L_e, hd, N, device, dtype),
        )

    def _step(self, h, state, return_info, inplace=False):
        m_w, w_mass = attend_buffer(self.working_attention, project_q(self.working_attention, h),
                                    state.w_k, state.w_v, state.w_fill, return_info)
        m_e, e_mass = attend_buffer(self.episodic_attention, project_q(self.episodic_attention, h),
                                    state.e_k, state.e_v, state.e_fill, return_info)
        g = torch.sigmoid(self.memory_fusion_mlp(torch.cat([m_w, m_e], dim=-1)))
        m = g * m_w + (1 - g) * m_e

        x = m if self.episodic_stores == "fused" else h
        write, sal = None, None
        if self.salience_gate is not None:
            sal, write, x = self.salience_gate(h, x)
        w_upd = working_write(self.working_attention, h, state, self.L_w, inplace)
        e_upd, e_info = episodic_write(self.episodic_attention, x, state, self.L_e, write, inplace)
        info = None
        if return_info:
            gf = g.detach().float().flatten(1)
            info = dict(
                gate_mean=gf.mean(1), gate_std=gf.std(1, unbiased=False),
                w_fill=state.w_fill.clone(), e_fill=state.e_fill.clone(),
                w_attn=w_mass, e_attn=e_mass,
                w_frames=state.w_idx.clone(), e_frames=state.e_idx.clone(),
                **e_info,
            )
            if sal is not None:
                info["salience"] = sal.detach()
        g_sum = state.g_sum + g.float().mean((1, 2)).to(state.g_sum.dtype)
        return m, state.replace(t=state.t + 1, g_sum=g_sum, **w_upd, **e_upd), info

    def _scan_fast(self, h, state, return_info=False):
        """The working reads of all frames at once (`working_scan`), the episodic branch without a
        buffer copy per append (`EpisodicScan`): one host sync per scan (the fill counts), none per
        frame, and under autograd no copy of the buffers per frame while they fill. With
        `return_info` also `step`'s info stacked over frames, the reads unchanged (logging steps)."""
        if self.salience_gate is not None:  # writes depend on the gate: frame by frame
            return None
        w_fill, e_fill = torch.stack([state.w_fill, state.e_fill]).tolist()
        m_w, w_upd, w_info = working_scan(self.working_attention, h, state, self.L_w, w_fill, return_info)
        episodic = EpisodicScan(self.episodic_attention, state, self.L_e, e_fill, h.shape[2], return_info)
        outs, g_sum, gates = [], state.g_sum, []
        for t, q in enumerate(frame_queries(self.episodic_attention, h)):
            m_e = episodic.read(q)
            g = torch.sigmoid(self.memory_fusion_mlp(torch.cat([m_w[t], m_e], dim=-1)))
            m = g * m_w[t] + (1 - g) * m_e
            episodic.write(m if self.episodic_stores == "fused" else h[:, t])
            g_sum = g_sum + g.float().mean((1, 2)).to(g_sum.dtype)
            outs.append(m)
            if return_info:
                gates.append(g.detach().float().flatten(1))
        state = state.replace(t=state.t + h.shape[1], g_sum=g_sum, **w_upd, **episodic.fields())
        if not return_info:
            return torch.stack(outs, 1), state
        gf = torch.stack(gates, 1)  # [B, T, N * D]
        info = dict(gate_mean=gf.mean(2), gate_std=gf.std(2, unbiased=False), **w_info, **episodic.frame_info())
        return torch.stack(outs, 1), state, info

    def _scan_fast_info(self, h, state):
        return self._scan_fast(h, state, return_info=True)

    def gate_balance_loss(self, state: MemoryState) -> torch.Tensor:
        """Memory-utilisation term: (mean gate over the video - 1/2)^2, averaged over videos.

        A gate stuck at 1 or 0 switches the episodic or the working buffer off; like the
        load-balancing loss of a mixture of experts, this keeps both in use."""
        mean_gate = state.g_sum.float() / state.t.clamp(min=1).float()
        return ((mean_gate - 0.5) ** 2).mean()
