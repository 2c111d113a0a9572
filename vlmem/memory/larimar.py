"""Larimar-style generative episodic memory (Das et al. 2024, arXiv 2403.11901;
the Kanerva-machine posterior update, called "GPM with Bayesian updates" in the seed).

Memory M [K, C] with a matrix-normal posterior N(M, U (x) I_C), prior N(M0, I (x) I_C).
Tokens are encoded to codes z = enc(h) [N, C].
    addressing (pseudo-inverse, ridge):  w = z M^+ = z M^T (M M^T + lam I)^-1
        + `steps` refinement steps  w <- w + (z - w M) M^T (M M^T + lam I)^-1  (toward the exact
          least-squares address; the seed's 3; the ridge factor is computed once)
    read:   z_read = w M;   m = out(z_read)          (reads before writes)
    write (Bayesian / recursive least squares, observation noise sigma^2, adaptation rate alpha):
        D  = z - w M,  Sc = w U,  Sz = w U w^T + sigma^2 I
        M <- M + alpha Sc^T Sz^-1 D,    U <- U - alpha Sc^T Sz^-1 Sc
        (alpha = 1: the exact posterior; the seed's 0.2 moves a fraction of the way, and
         U - alpha X >= (1 - alpha) U stays positive definite)
    KL(q(M) || p(M)) = 0.5 [C tr(U) + ||M - M0||^2 - K C - C logdet U]
All memory algebra runs in float32 (solves, not explicit inverses), whatever the input dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vlmem.errors import ConfigError
from vlmem.memory.base import Memory, MemoryState


class LarimarMemory(Memory):
    def __init__(self, dim: int, slots: int = 32, noise: float = 0.1, kl_weight: float = 0.1,
                 code_dim: int | None = None, ridge: float = 1e-4, steps: int = 0, alpha: float = 1.0):
        super().__init__()
        if slots < 1:
            raise ConfigError(f"model.memory.larimar_slots={slots} must be >= 1")
        if noise <= 0:
            raise ConfigError(f"model.memory.larimar_noise={noise} must be > 0")
        self.dim, self.K, self.C = dim, slots, code_dim or dim
        if steps < 0:
            raise ConfigError(f"model.memory.larimar_steps={steps} must be >= 0")
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"model.memory.larimar_alpha={alpha} must be in (0, 1]")
        self.noise, self.kl_weight, self.ridge = noise, kl_weight, ridge
        self.steps, self.alpha = steps, alpha
        self.encoder = nn.Linear(dim, self.C)
        self.out_proj = nn.Linear(self.C, dim)
        self.prior_mean = nn.Parameter(torch.randn(slots, self.C) / math.sqrt(self.C))

    def init_state(self, batch_size, device=None, dtype=None, tokens_per_frame=None) -> MemoryState:
        B, K = batch_size, self.K
        dev = device if device is not None else self.prior_mean.device
        return MemoryState(
            t=torch.zeros(B, dtype=torch.long, device=dev),
            M=self.prior_mean.float().to(dev).unsqueeze(0).expand(B, K, self.C),
            U=torch.eye(K, device=dev).expand(B, K, K),
            kl=torch.zeros(B, device=dev),
            usage=torch.zeros(B, K, device=dev),
        )

    # -- memory algebra on codes (float32) ---------------------------------
    def address(self, z: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        """w = z M^+ via a ridge-regularised solve: z [B, n, C], M [B, K, C] -> w [B, n, K]."""
        A = M @ M.transpose(1, 2)
        lam = self.ridge * A.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-6)
        A = A + lam.view(-1, 1, 1) * torch.eye(self.K, device=M.device)
        if self.steps == 0:
            return torch.linalg.solve(A, M @ z.transpose(1, 2)).transpose(1, 2)
        chol = torch.linalg.cholesky(A)  # symmetric positive definite: factor once, solve 1 + steps times
        w = torch.cholesky_solve(M @ z.transpose(1, 2), chol).transpose(1, 2)
        for _ in range(self.steps):
            w = w + torch.cholesky_solve(M @ (z - w @ M).transpose(1, 2), chol).transpose(1, 2)
        return w

    def read_codes(self, z: torch.Tensor, state: MemoryState) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.address(z.float(), state.M)
        return w @ state.M, w

    def write_codes(self, z: torch.Tensor, state: MemoryState, w: torch.Tensor | None = None) -> MemoryState:
        """`w`: the addresses of z in state.M when the caller has them (a read of the same z just now)."""
        z = z.float()
        M, U = state.M, state.U
        w = self.address(z, M) if w is None else w
        delta = z - w @ M
        sc = w @ U  # [B, n, K]
        sz = sc @ w.transpose(1, 2) + (self.noise ** 2) * torch.eye(z.shape[1], device=z.device)
        x = torch.linalg.solve(sz, sc)  # Sz^-1 Sc, [B, n, K]
        M = M + self.alpha * (x.transpose(1, 2) @ delta)
        U = U - self.alpha * (sc.transpose(1, 2) @ x)
        U = 0.5 * (U + U.transpose(1, 2))
        return state.replace(M=M, U=U, kl=self.kl(M, U), usage=state.usage + w.detach().abs().sum(1))

    def kl(self, M: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        K, C = self.K, self.C
        M0 = self.prior_mean.float().unsqueeze(0)
        logdet = torch.linalg.slogdet(U)[1]
        tr = U.diagonal(dim1=1, dim2=2).sum(-1)
        return 0.5 * (C * tr + (M - M0).pow(2).sum((1, 2)) - K * C - C * logdet)

    # -- interface ----------------------------------------------------------
    def _step(self, h, state, return_info, inplace=False):
        z = self.encoder(h)
        z_read, w = self.read_codes(z, state)
        m = self.out_proj(z_read.to(h.dtype))
        new = self.write_codes(z, state, w).replace(t=state.t + 1)  # reads before writes: same addresses
        info = None
        if return_info:
            info = dict(kl=new.kl.detach(), slot_usage=self.slot_usage(new), utilisation=self.utilisation(new),
                        read_error=(z_read - z.float()).detach().pow(2).mean((1, 2)))
        return m, new, info

    def slot_usage(self, state: MemoryState) -> torch.Tensor:
        """[B, K]: share of the total address mass written to each slot."""
        u = state.usage
        return u / u.sum(-1, keepdim=True).clamp_min(1e-12)

    def utilisation(self, state: MemoryState) -> torch.Tensor:
        """[B] in (0, 1]: effective number of slots used (exp entropy of slot_usage) / K; 0 before any write."""
        p = self.slot_usage(state)
        ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)
        return torch.where(state.usage.sum(-1) > 0, torch.exp(ent) / self.K, torch.zeros_like(ent))

    def aux_losses(self, state: MemoryState) -> dict[str, torch.Tensor]:
        """{"memory_kl": kl_weight * mean over videos of KL / (K*C)}."""
        return {"memory_kl": self.kl_weight * state.kl.mean() / (self.K * self.C)}
