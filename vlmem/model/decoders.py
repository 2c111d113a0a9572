"""Small answer decoders over a fixed context of embeddings: a plain causal transformer and a TRM.

Both decoders read a context `x = [image tokens; question tokens]` (`[B, Lx, H]`, with a boolean
`context_mask`, True = real token) and produce logits for the answer tokens (layout
`[IMG][QUESTION][ANSWER]`, loss on answer tokens only).

Shared label convention (see `teacher_forcing_batch`):

- `answer_ids = [bos, a1, ..., an, pad, ...]`  (teacher-forcing inputs, `[B, Ly]`)
- `labels     = [a1, ..., an, eos, -100, ...]` (targets, `[B, Ly]`)

`logits[:, t]` is the prediction for `labels[:, t]`. Image/question positions never have a
label (they are not part of `labels` at all), padded answer positions are -100.

- `PlainDecoder`: causal pre-norm transformer over `[x; embed(answer_ids)]`; logits at answer
  position t only see the context and `answer_ids[:, :t+1]` (i.e. bos, a1..at).
- `TRMDecoder`: "Less is More: Recursive Reasoning with Tiny Networks" (Jolicoeur-Martineau 2025),
  non-autoregressive: all `Ly` answer tokens are predicted at once from the answer latent `y`.
  It uses only the *shape* of `answer_ids` (the number of answer slots), never its values, so the
  answer cannot leak into the input.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.data.dataset import IGNORE_INDEX
from vlmem.errors import ConfigError

DECODER_KINDS = ("plain", "trm")


# ---------------------------------------------------------------------------------------------
# helpers


def teacher_forcing_batch(
    answers: list[list[int]], bos_id: int, eos_id: int, pad_id: int, length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id answers -> `(answer_ids, labels)`, both `[B, Ly]` long, in the shared convention.

    `Ly = max(len(a)) + 1` unless `length` is given (answers longer than `length - 1` are cut,
    keeping the eos target). Padding: `answer_ids` with `pad_id`, `labels` with -100.
    """
    need = max((len(a) for a in answers), default=0) + 1
    ly = need if length is None else int(length)
    if ly < 1:
        raise ValueError(f"answer length must be >= 1, got {ly}")
    ids = torch.full((len(answers), ly), pad_id, dtype=torch.long)
    labels = torch.full((len(answers), ly), IGNORE_INDEX, dtype=torch.long)
    for i, a in enumerate(answers):
        a = list(a)[: ly - 1]
        inp = [bos_id] + a
        tgt = a + [eos_id]
        ids[i, : len(inp)] = torch.tensor(inp, dtype=torch.long)
        labels[i, : len(tgt)] = torch.tensor(tgt, dtype=torch.long)
    return ids, labels


def strip_eos(ids: torch.Tensor, eos_id: int) -> list[list[int]]:
    """Generated ids `[B, L]` -> per-row lists cut before the first eos."""
    out = []
    for row in ids.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out


def _answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose label is not -100 (0 if there are none)."""
    flat = labels.reshape(-1)
    per_tok = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), flat, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return per_tok / (flat != IGNORE_INDEX).sum().clamp(min=1)


def _attn_mask(key_valid: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean SDPA mask `[B, 1, L, L]` (True = may attend): key padding (+ causal).

    The diagonal is always allowed so a padded query row never attends to nothing (NaN).
    """
    L = key_valid.shape[1]
    m = key_valid[:, None, None, :].expand(-1, 1, L, L)
    if causal:
        m = m & torch.ones(L, L, dtype=torch.bool, device=key_valid.device).tril()
    return m | torch.eye(L, dtype=torch.bool, device=key_valid.device)


def _check_context(context: torch.Tensor, context_mask: torch.Tensor | None, hidden: int) -> torch.Tensor:
    if context.dim() != 3 or context.shape[-1] != hidden:
        raise ValueError(f"context must be [B, Lx, {hidden}], got {tuple(context.shape)}")
    if context_mask is None:
        return torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
    if context_mask.shape != context.shape[:2]:
        raise ValueError(f"context_mask must be {tuple(context.shape[:2])}, got {tuple(context_mask.shape)}")
    return context_mask.to(device=context.device, dtype=torch.bool)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, bias: bool = True):
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=bias)
        self.out = nn.Linear(hidden, hidden, bias=bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
        B, L, H = h.shape
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        return self.out(a.transpose(1, 2).reshape(B, L, H))


# ---------------------------------------------------------------------------------------------
# plain causal decoder


class _PreNormBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = _SelfAttention(hidden, heads)
        self.ln2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        h = h + self.drop(self.attn(self.ln1(h), mask, p))
        return h + self.drop(self.mlp(self.ln2(h)))


class PlainDecoder(nn.Module):
    """Small causal transformer over `[context; embed(answer_ids)]` with learned positions.

    Output head tied to the token embedding by default (`tie_embeddings=False` for a separate
    `nn.Linear`). `generate` is greedy and recomputes the whole sequence each step (no KV cache:
    fine at this size, O(steps * L^2)).
    """

    kind = "plain"

    def __init__(
        self,
        vocab_size: int,
        hidden: int = 256,
        layers: int = 4,
        heads: int = 4,
        max_len: int = 512,
        dropout: float = 0.0,
        tie_embeddings: bool = True,
    ):
        super().__init__()
        self.vocab_size, self.hidden, self.max_len = vocab_size, hidden, max_len
        self.tok_emb = nn.Embedding(vocab_size, hidden)
        self.pos_emb = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([_PreNormBlock(hidden, heads, dropout) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.tok_emb.weight

    def _answer_logits(self, context, context_mask, answer_ids) -> torch.Tensor:
        Lx, Ly = context.shape[1], answer_ids.shape[1]
        if Lx + Ly > self.max_len:
            raise ValueError(f"context ({Lx}) + answer ({Ly}) tokens exceed max_len={self.max_len}")
        h = torch.cat([context.to(self.tok_emb.weight.dtype), self.tok_emb(answer_ids)], dim=1)
        h = self.drop(h + self.pos_emb.weight[: Lx + Ly])
        valid = torch.cat([context_mask, torch.ones_like(answer_ids, dtype=torch.bool)], dim=1)
        mask = _attn_mask(valid, causal=True)
        for blk in self.blocks:
            h = blk(h, mask)
        return self.head(self.ln_f(h[:, Lx:]))

    def forward(self, context, context_mask=None, answer_ids=None, labels=None) -> dict:
        mask = _check_context(context, context_mask, self.hidden)
        if answer_ids is None:
            raise ValueError("PlainDecoder.forward needs answer_ids (teacher-forcing inputs)")
        logits = self._answer_logits(context, mask, answer_ids)
        loss = _answer_loss(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}

    @torch.no_grad()
    def generate(
        self, context, context_mask=None, max_new_tokens: int = 16, bos_id: int = 1, eos_id: int = 2
    ):
        """Greedy decoding -> `[B, <= max_new_tokens]` long (bos excluded; after eos: eos)."""
        mask = _check_context(context, context_mask, self.hidden)
        B = context.shape[0]
        ids = torch.full((B, 1), bos_id, dtype=torch.long, device=context.device)
        done = torch.zeros(B, dtype=torch.bool, device=context.device)
        for _ in range(max_new_tokens):
            nxt = self._answer_logits(context, mask, ids)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
        return ids[:, 1:]


# ---------------------------------------------------------------------------------------------
# TRM


class _SwiGLU(nn.Module):
    def __init__(self, hidden: int, expansion: float = 4.0):
        super().__init__()
        inter = -(-round(expansion * hidden * 2 / 3) // 32) * 32  # round up to a multiple of 32
        self.gate_up = nn.Linear(hidden, 2 * inter, bias=False)
        self.down = nn.Linear(inter, hidden, bias=False)

    def forward(self, h):
        gate, up = self.gate_up(h).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class _PostNormBlock(nn.Module):
    """Official TRM block: post-norm, parameter-free RMSNorm, non-causal attention, SwiGLU."""

    def __init__(self, hidden: int, heads: int, eps: float = 1e-5):
        super().__init__()
        self.attn = _SelfAttention(hidden, heads, bias=False)
        self.mlp = _SwiGLU(hidden)
        self.eps = eps

    def forward(self, h, mask):
        h = F.rms_norm(h + self.attn(h, mask), (h.shape[-1],), eps=self.eps)
        return F.rms_norm(h + self.mlp(h), (h.shape[-1],), eps=self.eps)


class _TinyNet(nn.Module):
    """The single shared network: `net(hidden, injection) = blocks(hidden + injection)`."""

    def __init__(self, hidden: int, layers: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList([_PostNormBlock(hidden, heads) for _ in range(layers)])

    def forward(self, h, injection, mask):
        h = h + injection
        for blk in self.blocks:
            h = blk(h, mask)
        return h


class TRMDecoder(nn.Module):
    """Tiny Recursive Model decoder (non-autoregressive answer prediction).

    Sequence = `[context (Lx); answer slots (Ly)]`. Input injection `e` = RMS-normalised context
    at context positions, zeros at answer slots, plus learned positions (scaled by 1/sqrt 2 as
    the official "learned" positional encoding). The answer state `y` and the latent `z` span the
    whole sequence (as `z_H`/`z_L` in the official code span puzzle-prefix + grid); the single
    network `net` uses full (non-causal) attention with the context key-padding mask; logits are
    read from `y` at the answer slots (like the official code slices off its puzzle prefix).

    - latent recursion (n): `z = net(z + y + e)` n times, then `y = net(y + z)`
    - deep recursion (T): T-1 latent recursions under `no_grad`, the last one with gradients
    - deep supervision: `deep_supervision` deep recursions, (y, z) detached in between, one loss
      per step, averaged; the returned logits are the last step's
    - halting (optional): `q = q_head(mean_t y[answer slots])`, BCE target = "all answer tokens
      predicted correctly"; total loss `lm + 0.5 * halt`; `generate` stops when every row halts.
    """

    kind = "trm"

    def __init__(
        self,
        vocab_size: int,
        hidden: int = 256,
        layers: int = 2,
        heads: int = 4,
        n: int = 6,
        T: int = 3,
        deep_supervision: int = 1,
        halting: bool = False,
        max_len: int = 512,
    ):
        super().__init__()
        problems = [
            f"{k} must be >= 1, got {v}"
            for k, v in (("n", n), ("T", T), ("deep_supervision", deep_supervision), ("layers", layers))
            if v < 1
        ]
        if problems:
            raise ConfigError("invalid TRMDecoder settings", problems)
        self.vocab_size, self.hidden, self.max_len = vocab_size, hidden, max_len
        self.n, self.T, self.deep_supervision, self.halting = n, T, deep_supervision, halting
        self.pos_emb = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.pos_emb.weight, std=1.0)
        self.net = _TinyNet(hidden, layers, heads)
        self.head = nn.Linear(hidden, vocab_size, bias=False)
        # Official: fixed (non-learned) persistent buffers, truncated normal with std 1.
        self.register_buffer("y_init", nn.init.trunc_normal_(torch.empty(hidden), std=1.0, a=-2.0, b=2.0))
        self.register_buffer("z_init", nn.init.trunc_normal_(torch.empty(hidden), std=1.0, a=-2.0, b=2.0))
        if halting:
            self.q_head = nn.Linear(hidden, 1)
            with torch.no_grad():  # official: near-zero Q at start (weight 0, bias -5)
                self.q_head.weight.zero_()
                self.q_head.bias.fill_(-5.0)

    # -- recursion --------------------------------------------------------------------------

    def _inputs(self, context, context_mask, Ly):
        B, Lx, H = context.shape
        if Lx + Ly > self.max_len:
            raise ValueError(f"context ({Lx}) + answer ({Ly}) tokens exceed max_len={self.max_len}")
        x = F.rms_norm(context.to(self.head.weight.dtype), (H,))
        e = torch.cat([x, x.new_zeros(B, Ly, H)], dim=1)
        e = 0.707106781 * (e + self.pos_emb.weight[: Lx + Ly])
        valid = torch.cat([context_mask, context_mask.new_ones(B, Ly)], dim=1)
        return e, _attn_mask(valid, causal=False)

    def _latent_recursion(self, e, y, z, mask):
        for _ in range(self.n):
            z = self.net(z, y + e, mask)
        y = self.net(y, z, mask)
        return y, z

    def _deep_recursion(self, e, y, z, mask):
        with torch.no_grad():
            for _ in range(self.T - 1):
                y, z = self._latent_recursion(e, y, z, mask)
        return self._latent_recursion(e, y, z, mask)

    def _steps(self, context, context_mask, Ly):
        """Yield `(logits, q_logit or None)` for each deep-supervision step."""
        e, mask = self._inputs(context, context_mask, Ly)
        Lx = context.shape[1]
        y = self.y_init.expand_as(e)
        z = self.z_init.expand_as(e)
        for _ in range(self.deep_supervision):
            y, z = self._deep_recursion(e, y, z, mask)
            ya = y[:, Lx:]
            q = self.q_head(ya.mean(1)).squeeze(-1) if self.halting else None
            yield self.head(ya), q
            y, z = y.detach(), z.detach()

    # -- API ----------------------------------------------------------------------------------

    def forward(self, context, context_mask=None, answer_ids=None, labels=None) -> dict:
        """`answer_ids` only fixes the number of answer slots (its values are never read)."""
        mask = _check_context(context, context_mask, self.hidden)
        ref = answer_ids if answer_ids is not None else labels
        if ref is None:
            raise ValueError("TRMDecoder.forward needs answer_ids or labels (for the answer length)")
        lm_losses, halt_losses, logits = [], [], None
        for logits, q in self._steps(context, mask, ref.shape[1]):
            if labels is None:
                continue
            lm_losses.append(_answer_loss(logits, labels))
            if q is not None:
                with torch.no_grad():
                    valid = labels != IGNORE_INDEX
                    correct = ((logits.argmax(-1) == labels) | ~valid).all(-1).float()
                halt_losses.append(F.binary_cross_entropy_with_logits(q.float(), correct))
        out = {"loss": None, "logits": logits}
        if labels is not None:
            loss = torch.stack(lm_losses).mean()
            if halt_losses:
                halt = torch.stack(halt_losses).mean()
                out["halt_loss"] = halt
                loss = loss + 0.5 * halt
            out["loss"] = loss
        return out

    @torch.no_grad()
    def generate(
        self, context, context_mask=None, max_new_tokens: int = 16, bos_id: int = 1, eos_id: int = 2
    ):
        """All `max_new_tokens` slots at once -> `[B, max_new_tokens]` (after the first eos: eos).

        `bos_id` is accepted for interface parity and unused. Runs all deep-supervision steps;
        with `halting`, a row's logits freeze at the first step where `sigmoid(q) > 0.5` and the
        loop stops once every row has halted.
        """
        mask = _check_context(context, context_mask, self.hidden)
        B = context.shape[0]
        final, halted = None, torch.zeros(B, dtype=torch.bool, device=context.device)
        for logits, q in self._steps(context, mask, max_new_tokens):
            final = logits if final is None else torch.where(halted[:, None, None], final, logits)
            if q is not None:
                halted |= q > 0
                if bool(halted.all()):
                    break
        ids = final.argmax(-1)
        after_eos = (ids == eos_id).long().cumsum(1) > 0
        after_eos = torch.cat([after_eos.new_zeros(B, 1), after_eos[:, :-1]], dim=1)
        return torch.where(after_eos, torch.full_like(ids, eos_id), ids)


# ---------------------------------------------------------------------------------------------


def build_decoder(kind: str, vocab_size: int, **kwargs) -> nn.Module:
    """`"plain"` -> `PlainDecoder`, `"trm"` -> `TRMDecoder`; other kinds raise `ConfigError`."""
    if kind == "plain":
        return PlainDecoder(vocab_size, **kwargs)
    if kind == "trm":
        return TRMDecoder(vocab_size, **kwargs)
    raise ConfigError(f"unknown decoder kind {kind!r}; valid choices: {', '.join(DECODER_KINDS)}")
