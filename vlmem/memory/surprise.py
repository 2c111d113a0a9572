"""Surprise-driven episodic memory: a next-latent-frame predictor decides what to keep.

Idea from Cambrian-S (Yang et al. 2025, arXiv 2511.04670, "predictive sensing"): a model
that predicts its next latent frame keeps what it failed to predict; frames it predicted
well add little. This is our own small version of that idea:

    z_t   = LayerNorm(mean over tokens of H_t)                 (parameter-free latent, [B, D])
    s_t   = mean_d (z_t - p_t)^2                                (surprise; p_t predicted at t-1)
    p_t+1 = z_t + MLP(z_t)                                      (next-latent-frame predictor)
    M_t   = EpisodicAttn(Q=H_t, KV=E_t)                         (read before write)
    if s_t > threshold (or t = 0): write H_t into E             (an event boundary)
        append while |E| < L, else replace the entry with the lowest kept score, where each
        entry's score is its surprise decayed by SCORE_DECAY at every later write (old,
        unsurprising entries go first).

The predictor is trained with the model: `aux_losses` returns
`loss_weight * mean_t s_t` (the prediction error with z_t as a fixed target), the way
Larimar returns its KL term. The latent has no parameters, so the predictor cannot make
frames predictable by collapsing them; with its last layer started near zero, p_t+1 ~ z_t
at initialisation (surprise = change between consecutive frames) and training makes the
gate ignore the predictable part of the change.

State is bounded: L slots of N tokens, scores, and the predictor's running loss sums.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.errors import ConfigError
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

SCORE_DECAY = 0.9  # per later write: a kept entry's surprise score ages so the buffer keeps turning over


class SurpriseMemory(Memory):
    def __init__(self, dim: int, num_heads: int = 4, L: int = 32, threshold: float = 0.25,
                 loss_weight: float = 0.1, dropout: float = 0.1, tokens_per_frame: int | None = None):
        super().__init__()
        check_heads(dim, num_heads, "num_heads")
        if L < 1:
            raise ConfigError(f"model.memory.L_e={L} must be >= 1")
        self.dim, self.num_heads, self.L = dim, num_heads, L
        self.threshold, self.loss_weight = threshold, loss_weight
        self.tokens_per_frame = tokens_per_frame
        self.episodic_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.predictor = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        nn.init.normal_(self.predictor[2].weight, std=1e-3)  # p_{t+1} ~ z_t to start with
        nn.init.zeros_(self.predictor[2].bias)

    def init_state(self, batch_size, device=None, dtype=None, tokens_per_frame=None) -> MemoryState:
        B, L, H = batch_size, self.L, self.num_heads
        N = tokens_per_frame or self.tokens_per_frame or 0
        dtype = dtype or torch.get_default_dtype()
        hd = self.dim // H
        return MemoryState(
            t=torch.zeros(B, dtype=torch.long, device=device),
            e_k=torch.zeros(B, H, L, N, hd, device=device, dtype=dtype),
            e_v=torch.zeros(B, H, L, N, hd, device=device, dtype=dtype),
            e_fill=torch.zeros(B, dtype=torch.long, device=device),
            e_idx=torch.full((B, L), -1, dtype=torch.long, device=device),
            e_score=torch.zeros(B, L, device=device),
            prediction=torch.zeros(B, self.dim, device=device),
            loss_sum=torch.zeros(B, device=device),
            loss_count=torch.zeros(B, device=device),
        )

    def latent(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, N, D] -> z [B, D] in float32 (the predictor's target: no parameters, no gradient)."""
        return F.layer_norm(h.detach().float().mean(1), (self.dim,))

    def _step(self, h, state, return_info, inplace=False):
        B, N, _ = h.shape
        L = self.L
        z = self.latent(h)
        first = state.t == 0
        err = (z - state.prediction).pow(2).mean(-1)  # [B], differentiable through the last prediction
        surprise = torch.where(first, torch.full_like(err, float("inf")), err.detach())
        write = surprise > self.threshold
        # Loss on the frames that had a prediction; `prediction` carries its graph from the last step.
        has = (~first).float()
        loss_sum = state.loss_sum + err * has
        loss_count = state.loss_count + has
        prediction = z + self.predictor(z.to(self.predictor[0].weight.dtype)).float()

        mha = self.episodic_attention
        q = project_q(mha, h)
        m, mass = attend_buffer(mha, q, state.e_k, state.e_v, state.e_fill, return_info)

        fill = state.e_fill
        full = fill >= L
        valid = torch.arange(L, device=h.device)[None, :] < fill[:, None]
        weakest = state.e_score.masked_fill(~valid, float("inf")).argmin(-1)
        slot = torch.where(full, weakest, fill)
        slot = torch.where(write, slot, torch.full_like(slot, -1))
        k, v = project_kv(mha, h)
        e_k = write_slot(ensure_tokens(state.e_k, N, 3, "surprise memory"), slot, k, inplace)
        e_v = write_slot(ensure_tokens(state.e_v, N, 3, "surprise memory"), slot, v, inplace)
        finite = torch.where(first, err.detach(), surprise)  # a first frame is kept with its plain error
        aged = torch.where(write[:, None], state.e_score * SCORE_DECAY, state.e_score)
        hit = torch.arange(L, device=h.device)[None, :] == slot[:, None]
        e_score = torch.where(hit, finite[:, None].expand(B, L).clamp_min(self.threshold), aged)
        new = state.replace(
            t=state.t + 1, e_k=e_k, e_v=e_v, e_fill=torch.clamp(fill + write.long(), max=L),
            e_idx=write_index(state.e_idx, slot, state.t), e_score=e_score, prediction=prediction,
            loss_sum=loss_sum, loss_count=loss_count)
        info = None
        if return_info:
            replaced = full & write
            evicted = state.e_score.gather(1, weakest[:, None]).squeeze(1)
            # e_replace_sim: the shared episodic info key; here the evicted entry's (aged) score
            info = dict(surprise=torch.where(first, torch.zeros_like(err), err).detach(), boundary=write,
                        e_fill=fill.clone(), e_attn=mass, e_frames=state.e_idx.clone(), e_slot=slot,
                        e_replaced=replaced, e_replace_sim=torch.where(replaced, evicted, torch.zeros_like(evicted)))
        return m, new, info

    def aux_losses(self, state: MemoryState) -> dict[str, torch.Tensor]:
        """{"memory_prediction": loss_weight * mean over videos of the mean next-latent-frame error}."""
        per_video = state.loss_sum / state.loss_count.clamp_min(1.0)
        return {"memory_prediction": self.loss_weight * per_video.mean()}
