"""Titans-style fast-weight memory (Behrouz et al. 2025, "Learning to Memorize at
Test Time"), linear memory per head.

Per video and head a matrix S [d, d] maps keys to values (k S ~ v). Tokens of a
frame form one chunk (chunk_size = tokens per frame by default); each chunk is
read with the state before it, then written (reads before writes):
    q, k = l2norm(W_q x), l2norm(W_k x);  v = W_v x;  y = out(q S)
update="simple":  S <- decay * S + sum_n a_n k_n^T v_n,      a_n = sigmoid(W_a x_n)
update="titans":  G = grad_S mean_n theta_n ||k_n S - v_n||^2 = (2/c) K^T diag(theta) (K S - V)
                  theta_n = lr * sigmoid(W_a x_n)             (inner learning rate, at most lr)
                  Mom <- eta * Mom - G,   eta = 0.95 sigmoid(W_eta mean(x))   (momentum on the surprise)
                  S   <- (1 - alpha) * S + Mom, alpha = 0.01 + 0.99 sigmoid(W_alpha mean(x)) (forgetting)
The titans rule is titans-pytorch's NeuralMemory (adaptive step = max_lr * sigmoid, momentum and
decay gates per chunk) for a linear memory. Its step is bounded: keys are unit vectors, so the
surprise's curvature (2/c) K^T diag(theta) K has eigenvalues <= 2 lr, and with lr <= 1/2 the
recurrence (S, Mom) is stable for every eta < 1, alpha in [0, 1) (docs/memory.md). eta is capped
at 0.95: at eta = 1 without forgetting (where training drove the gates) the recurrence is an
undamped oscillator that data-dependent steps pump; alpha >= 0.01, since without forgetting the
directions the keys barely constrain drift (slowly, but without bound). A learned, unbounded step, a sum instead of a
mean over the chunk's tokens, or an uncapped eta let S grow without bound.
S and Mom are kept in float32 whatever the input dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.errors import ConfigError
from vlmem.memory.base import Memory, MemoryState, check_heads

TITANS_UPDATES = ("simple", "titans")
TITANS_MAX_LR = 0.5  # the largest inner step for which the titans recurrence stays bounded
TITANS_MIN_FORGET = 0.01  # without forgetting, directions the keys barely touch drift without bound
TITANS_MAX_MOMENTUM = 0.95  # eta -> 1 with no forgetting is an undamped oscillator: data-dependent steps pump it


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class TitansMemory(Memory):
    def __init__(self, dim: int, num_heads: int = 4, update: str = "simple", decay: float = 0.95,
                 momentum: float = 0.9, lr: float = 0.1, chunk_size: int | None = None):
        super().__init__()
        check_heads(dim, num_heads, "titans_heads")
        if update not in TITANS_UPDATES:
            raise ConfigError(f"model.memory.titans_update={update!r}; valid choices: {TITANS_UPDATES}")
        if update == "titans" and not 0.0 < lr <= TITANS_MAX_LR:
            raise ConfigError(f"model.memory.titans_lr={lr} must be in (0, {TITANS_MAX_LR}]: a larger inner step "
                              "lets the titans update diverge")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.update, self.chunk_size = update, chunk_size
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.write_gate = nn.Linear(dim, num_heads)
        self.out_proj = nn.Linear(dim, dim)
        if update == "simple":
            self.decay_logit = nn.Parameter(torch.full((num_heads,), _logit(decay)))
        else:
            self.max_lr = lr  # fixed: a learned step could grow past the bound during training
            self.forget_gate = nn.Linear(dim, num_heads)
            self.momentum_gate = nn.Linear(dim, num_heads)
            if not 0.0 <= momentum < TITANS_MAX_MOMENTUM:
                raise ConfigError(f"model.memory.titans_momentum={momentum} must be in [0, {TITANS_MAX_MOMENTUM}) "
                                  "with titans_update = \"titans\"")
            for lin, p in ((self.forget_gate, (1 - decay - TITANS_MIN_FORGET) / (1 - TITANS_MIN_FORGET)), (self.momentum_gate, momentum / TITANS_MAX_MOMENTUM)):
                nn.init.normal_(lin.weight, std=0.02)
                nn.init.constant_(lin.bias, _logit(p))

    def init_state(self, batch_size, device=None, dtype=None, tokens_per_frame=None) -> MemoryState:
        H, d = self.num_heads, self.head_dim
        st = dict(t=torch.zeros(batch_size, dtype=torch.long, device=device),
                  S=torch.zeros(batch_size, H, d, d, device=device, dtype=torch.float32))
        if self.update == "titans":
            st["mom"] = torch.zeros(batch_size, H, d, d, device=device, dtype=torch.float32)
        return MemoryState(**st)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [..., n, D] -> [..., H, n, d] float32
        x = x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-2, -3)
        return x.float()

    def _project(self, x: torch.Tensor):
        """Everything that does not depend on the state, for chunks x [..., c, D]."""
        q = F.normalize(self._heads(self.to_q(x)), dim=-1)
        k = F.normalize(self._heads(self.to_k(x)), dim=-1)
        v = self._heads(self.to_v(x))
        a = torch.sigmoid(self.write_gate(x).float()).transpose(-1, -2)  # [..., H, c]
        if self.update == "simple":
            return q, k, v, a, None, None
        xm = x.mean(-2)
        alpha = TITANS_MIN_FORGET + (1 - TITANS_MIN_FORGET) * torch.sigmoid(self.forget_gate(xm).float())[..., None, None]
        eta = TITANS_MAX_MOMENTUM * torch.sigmoid(self.momentum_gate(xm).float())[..., None, None]
        return q, k, v, a, alpha, eta

    def _recur(self, q, k, v, a, alpha, eta, S, mom):
        """Read with S, then write; q, k, v [B, H, c, d], a [B, H, c]."""
        y = q @ S
        extra = {}
        if self.update == "simple":
            decay = torch.sigmoid(self.decay_logit.float()).view(1, -1, 1, 1)
            S = decay * S + (k * a.unsqueeze(-1)).transpose(-1, -2) @ v
        else:
            theta = self.max_lr * a  # [B, H, c]
            c = k.shape[-2]  # mean over the chunk's tokens: the step does not grow with the chunk
            grad = (2.0 / c) * (k * theta.unsqueeze(-1)).transpose(-1, -2) @ (k @ S - v)  # closed-form surprise
            mom = eta * mom - grad
            S = (1 - alpha) * S + mom
            extra = dict(surprise_norm=grad.detach().flatten(1).norm(dim=1),
                         forget_mean=alpha.detach().flatten(1).mean(1),
                         momentum_mean=eta.detach().flatten(1).mean(1))
        return y, S, mom, extra

    def _chunk(self, x: torch.Tensor, S: torch.Tensor, mom: torch.Tensor | None):
        q, k, v, a, alpha, eta = self._project(x)
        y, S, mom, extra = self._recur(q, k, v, a, alpha, eta, S, mom)
        return y, S, mom, a, extra

    def scan(self, h, state=None, return_info=False):
        """Same result as stepping frame by frame, but the projections of all frames are
        computed in one batched pass; only the S recurrence runs per chunk."""
        c = self.chunk_size or (h.shape[2] if h.dim() == 4 else 1)
        if return_info or h.dim() != 4 or h.shape[1] == 0 or h.shape[2] % c:
            return super().scan(h, state, return_info)
        B, T, N, D = h.shape
        if state is None:
            state = self.init_state(B, h.device, h.dtype)
        nc = N // c
        x = h.reshape(B, T * nc, c, D)
        q, k, v, a, alpha, eta = self._project(x)  # [B, T*nc, H, c, d], ...
        S, mom = state.S, (state.mom if self.update == "titans" else None)
        ys = []
        for i in range(T * nc):
            y, S, mom, _ = self._recur(q[:, i], k[:, i], v[:, i], a[:, i],
                                       None if alpha is None else alpha[:, i], None if eta is None else eta[:, i],
                                       S, mom)
            ys.append(y)
        y = torch.stack(ys, 1)  # [B, T*nc, H, c, d]
        y = y.transpose(2, 3).reshape(B, T, N, D).to(h.dtype)
        new = dict(t=state.t + T, S=S)
        if mom is not None:
            new["mom"] = mom
        return self.out_proj(y), state.replace(**new)

    def _step(self, h, state, return_info, inplace=False):
        B, N, D = h.shape
        c = self.chunk_size or N
        S, mom = state.S, (state.mom if self.update == "titans" else None)
        ys, gates, extras = [], [], []
        for s in range(0, N, c):
            y, S, mom, a, extra = self._chunk(h[:, s:s + c], S, mom)
            ys.append(y)
            gates.append(a)
            extras.append(extra)
        y = torch.cat(ys, 2).transpose(1, 2).reshape(B, N, D).to(h.dtype)
        m = self.out_proj(y)
        new = dict(t=state.t + 1, S=S)
        if mom is not None:
            new["mom"] = mom
        info = None
        if return_info:
            info = dict(s_norm=S.detach().flatten(1).norm(dim=1),
                        write_gate_mean=torch.cat(gates, 2).detach().flatten(1).mean(1))
            for k in extras[-1]:
                info[k] = extras[-1][k]
        return m, state.replace(**new), info
