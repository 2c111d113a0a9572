"""Contrastive heads from BitGen / FIBER: feature compression, ITC (with a feature queue) and ITM.

- `FeatureCompression`: Linear -> ReLU -> Dropout -> Linear -> LayerNorm (768 -> 384 -> 128).
- `ITCHead`: symmetric InfoNCE over L2-normalised features. A FIFO queue of past (image, text)
  features supplies extra negatives, as in ALBEF/BLIP. The head owns no encoder: the model passes
  the features of its momentum encoders (`img_m`, `txt_m`; BitGen does), else the queue holds the
  online features, detached. The temperature is learnable and bounded:
  `t = t_min + (t_max - t_min) * sigmoid(raw)`, initialised at 0.5.
- `ITMHead`: binary image-text matching with hard negatives sampled from the similarity matrix
  (true pair excluded). Negatives may also come from the queues.
- `bitgen_loss`: weighted sum of the itc / itm / memory_kl / text terms (1.0 / 0.5 / 0.1 / 0.0).

See docs/models.md, section "Contrastive heads: ITC and ITM (BitGen / FIBER)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.errors import ConfigError

BITGEN_LOSS_TERMS = ("itc", "itm", "memory_kl", "text")
BITGEN_LOSS_WEIGHTS = (1.0, 0.5, 0.1, 0.0)


class FeatureCompression(nn.Module):
    """Linear(dim_in, hidden) -> ReLU -> Dropout -> Linear(hidden, dim_out) -> LayerNorm(dim_out)."""

    def __init__(self, dim_in: int = 768, hidden: int = 384, dim_out: int = 128, dropout: float = 0.1):
        super().__init__()
        if min(dim_in, hidden, dim_out) <= 0:
            raise ConfigError("FeatureCompression: dims must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"FeatureCompression: dropout must be in [0, 1), got {dropout}")
        self.net = nn.Sequential(
            nn.Linear(dim_in, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim_out),
            nn.LayerNorm(dim_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _check_pair(img: torch.Tensor, txt: torch.Tensor, dim: int, name: str) -> int:
    if img.dim() != 2 or txt.dim() != 2 or img.shape != txt.shape:
        raise ValueError(
            f"{name}: expected img and txt of equal shape [B, D], got "
            f"{tuple(img.shape)} and {tuple(txt.shape)}"
        )
    if img.shape[1] != dim:
        raise ValueError(f"{name}: feature dim {img.shape[1]} != head dim {dim}")
    if img.shape[0] == 0:
        raise ValueError(f"{name}: empty batch")
    return img.shape[0]


class ITCHead(nn.Module):
    """Image-text contrastive loss with a FIFO queue of extra negatives.

    `forward(img [B, D], txt [B, D])` returns a dict:

    - `loss`: (CE(logits_i2t, arange(B)) + CE(logits_t2i, arange(B))) / 2
    - `logits_i2t`: `[B, B + Q]`, normalised img vs [batch texts; queued texts] / temperature
    - `logits_t2i`: `[B, B + Q]`, normalised txt vs [batch images; queued images] / temperature
    - `i2t_acc`, `t2i_acc`: in-batch retrieval accuracy (argmax over the batch's other modality,
      queue columns ignored, equals own index). Detached float tensors.
    - `temperature`: the temperature used (a tensor with grad when learnable).

    Q is the number of *filled* queue slots (an empty queue adds nothing, unlike ALBEF, which
    starts from random features). The queue is updated after the loss with the detached batch
    features when `update_queue` is True (default: `self.training`). A batch larger than the queue
    keeps only its last `queue_size` rows. `queue_size=0` disables the queue.

    `idx` (optional, `[B]` int64, BLIP's `idx`): samples with the same id show the same image, so
    every column (batch or queue) with the row's id is a positive. The target is then uniform over
    the positives (soft cross-entropy), an in-batch retrieval counts as correct when it lands on
    any positive, ids are queued with the features, and `pos` (`[B, B + Q]` bool) is returned for
    `ITMHead`. Without `idx` only the diagonal is positive (the behaviour above).

    `img_m` / `txt_m` (optional, `[B, D]`): features of momentum (EMA) encoders, as in ALBEF /
    MoCo. They replace the online features as the batch columns of the logits (detached) and are
    what gets queued, so the queue holds features of one slowly moving encoder. Without a momentum
    encoder the queue holds online features of older weights; on the tiny BitGen recipe that made
    ITC collapse to the uniform solution (docs/models.md, "BitGen").
    """

    def __init__(
        self,
        dim: int = 128,
        queue_size: int = 4096,
        temperature: float = 0.5,
        learn_temperature: bool = True,
        temperature_min: float = 0.01,
        temperature_max: float = 1.0,
    ):
        super().__init__()
        if dim <= 0 or queue_size < 0:
            raise ConfigError(f"ITCHead: need dim > 0 and queue_size >= 0, got {dim}, {queue_size}")
        if not 0.0 < temperature_min < temperature < temperature_max:
            raise ConfigError(
                f"ITCHead: need 0 < temperature_min < temperature < temperature_max, got "
                f"{temperature_min}, {temperature}, {temperature_max}"
            )
        self.dim = dim
        self.queue_size = queue_size
        self.temperature_min = float(temperature_min)
        self.temperature_max = float(temperature_max)
        frac = (temperature - temperature_min) / (temperature_max - temperature_min)
        raw = torch.tensor(math.log(frac / (1.0 - frac)))  # logit, so sigmoid(raw) = frac
        if learn_temperature:
            self.temperature_raw = nn.Parameter(raw)
        else:
            self.register_buffer("temperature_raw", raw)
        self.register_buffer("image_queue", torch.zeros(queue_size, dim))
        self.register_buffer("text_queue", torch.zeros(queue_size, dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self.register_buffer("idx_queue", torch.full((queue_size,), -1, dtype=torch.long))

    @property
    def temperature(self) -> torch.Tensor:
        span = self.temperature_max - self.temperature_min
        t = self.temperature_min + span * torch.sigmoid(self.temperature_raw)
        return t.clamp(self.temperature_min, self.temperature_max)  # float32 rounding at the ends

    def queued(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled part of the (image, text) queues, `[Q, D]` each (order: slot order)."""
        n = int(self.queue_len)
        return self.image_queue[:n], self.text_queue[:n]

    def queued_idx(self) -> torch.Tensor:
        """The ids of the filled queue slots, `[Q]` (-1 for entries queued without ids)."""
        return self.idx_queue[: int(self.queue_len)]

    @torch.no_grad()
    def reset_queue(self) -> None:
        self.image_queue.zero_()
        self.text_queue.zero_()
        self.queue_ptr.zero_()
        self.queue_len.zero_()
        self.idx_queue.fill_(-1)

    @torch.no_grad()
    def enqueue(self, img: torch.Tensor, txt: torch.Tensor, idx: torch.Tensor | None = None) -> None:
        """FIFO write of L2-normalised, detached features (and ids, -1 when None); wraps around;
        keeps the last rows."""
        size = self.queue_size
        if size == 0:
            return
        img = F.normalize(img.detach().to(self.image_queue), dim=-1)
        txt = F.normalize(txt.detach().to(self.text_queue), dim=-1)
        b = img.shape[0]
        ids = torch.full((b,), -1, dtype=torch.long) if idx is None else idx.detach().long()
        ids = ids.to(self.idx_queue.device)
        if b >= size:
            self.image_queue.copy_(img[-size:])
            self.text_queue.copy_(txt[-size:])
            self.idx_queue.copy_(ids[-size:])
            self.queue_ptr.zero_()
            self.queue_len.fill_(size)
            return
        ptr = int(self.queue_ptr)
        idx = (torch.arange(b, device=img.device) + ptr) % size
        self.image_queue[idx] = img
        self.text_queue[idx] = txt
        self.idx_queue[idx.to(self.idx_queue.device)] = ids
        self.queue_ptr.fill_((ptr + b) % size)
        self.queue_len.fill_(min(int(self.queue_len) + b, size))

    def forward(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        update_queue: bool | None = None,
        idx: torch.Tensor | None = None,
        img_m: torch.Tensor | None = None,
        txt_m: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        b = _check_pair(img, txt, self.dim, "ITCHead")
        for name, x in (("img_m", img_m), ("txt_m", txt_m)):
            if x is not None and x.shape != img.shape:
                raise ValueError(f"ITCHead: {name} must be {tuple(img.shape)}, got {tuple(x.shape)}")
        if idx is not None and tuple(idx.shape) != (b,):
            raise ValueError(f"ITCHead: idx must be [{b}], got {tuple(idx.shape)}")
        img_n = F.normalize(img, dim=-1)
        txt_n = F.normalize(txt, dim=-1)
        # the batch columns: momentum features when given (ALBEF), else the online ones
        key_img = img_n if img_m is None else F.normalize(img_m.detach(), dim=-1).to(img_n.dtype)
        key_txt = txt_n if txt_m is None else F.normalize(txt_m.detach(), dim=-1).to(txt_n.dtype)
        q_img, q_txt = self.queued()
        q_img = q_img.to(img_n.dtype)
        q_txt = q_txt.to(txt_n.dtype)
        temp = self.temperature
        logits_i2t = img_n @ torch.cat([key_txt, q_txt], 0).t() / temp
        logits_t2i = txt_n @ torch.cat([key_img, q_img], 0).t() / temp
        target = torch.arange(b, device=img.device)
        out: dict[str, torch.Tensor] = {}
        if idx is None:
            loss = 0.5 * (
                F.cross_entropy(logits_i2t.float(), target) + F.cross_entropy(logits_t2i.float(), target)
            )
            with torch.no_grad():
                i2t_acc = (logits_i2t[:, :b].argmax(1) == target).float().mean()
                t2i_acc = (logits_t2i[:, :b].argmax(1) == target).float().mean()
        else:  # BLIP: every column showing the same image is a positive, soft targets over them
            idx = idx.to(img.device).long()
            pos = idx[:, None] == torch.cat([idx, self.queued_idx().to(idx.device)])[None, :]
            soft = pos.float() / pos.float().sum(1, keepdim=True)
            loss = 0.5 * (
                -(soft * F.log_softmax(logits_i2t.float(), 1)).sum(1).mean()
                - (soft * F.log_softmax(logits_t2i.float(), 1)).sum(1).mean()
            )
            with torch.no_grad():
                i2t_acc = pos[target, logits_i2t[:, :b].argmax(1)].float().mean()
                t2i_acc = pos[target, logits_t2i[:, :b].argmax(1)].float().mean()
            out["pos"] = pos
        if update_queue is None:
            update_queue = self.training
        if update_queue:
            self.enqueue(key_img, key_txt, idx)
        out.update(
            loss=loss,
            i2t_acc=i2t_acc,
            t2i_acc=t2i_acc,
            logits_i2t=logits_i2t,
            logits_t2i=logits_t2i,
            temperature=temp,
        )
        return out


def _sample_negatives(
    sim: torch.Tensor, b: int, generator: torch.Generator | None, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One index per row of `sim` [B, N>=B], p ~ softmax(sim) with column `row` (true pair) and the
    `exclude`d columns ([B, N] bool, other positives) removed. Returns (indices, valid [B]): a row
    whose every candidate is excluded draws uniformly among the other columns and is not valid."""
    logits = sim.detach().float().clone()
    if not torch.isfinite(logits).all():
        raise ValueError("ITMHead: similarity contains non-finite values")
    rows = torch.arange(b, device=logits.device)
    banned = torch.zeros_like(logits, dtype=torch.bool)
    banned[rows, rows] = True
    if exclude is not None:
        banned |= exclude.to(banned.device)
    valid = ~banned.all(1)
    logits = logits.masked_fill(banned, float("-inf"))  # == zeroing their softmax weight, renormalising
    fallback = torch.zeros_like(logits)
    fallback[rows, rows] = float("-inf")
    logits = torch.where(valid[:, None], logits, fallback)
    probs = torch.softmax(logits, dim=1)
    gen_device = generator.device if generator is not None else probs.device
    idx = torch.multinomial(probs.to(gen_device), 1, generator=generator).squeeze(1)
    return idx.to(sim.device), valid.to(sim.device)


class ITMHead(nn.Module):
    """Image-text matching: 1 positive + 2 hard negatives per sample, 2-way cross-entropy.

    For image i, a negative text is drawn from the candidate texts `[txt; queue_txt]` with
    probability proportional to `softmax(sim_i2t[i])`, the true text i excluded; for text j, a
    negative image is drawn likewise from `[img; queue_img]` with `sim_t2i[j]`.

    Similarity (logits, higher = more similar; detached):

    - `sim` (i2t): `[B, B]` or `[B, B + Qt]` (e.g. `ITCHead` `logits_i2t`, whose columns are
      exactly `[batch texts; queued texts]`). `sim_t2i` likewise `[B, B + Qi]` (e.g. `logits_t2i`).
    - If `sim_t2i` is not given and there is no image queue, `sim[:, :B].T` is used.
    - Otherwise a missing similarity is cosine(features) / `neg_temperature`.

    Queue features are used as given (typically `ITCHead.queued()`, already normalised, no grad);
    a queued entry is never the true pair. The classifier sees the fused pair
    `[i, t, i*t, |i-t|]` -> Linear(4D, hidden) -> GELU -> Linear(hidden, 2) (class 1 = match).
    Pair order: B positives, B (image, negative text), B (negative image, text).
    Returns `loss`, `acc` (over all 3B pairs), `logits [3B, 2]`, `labels [3B]`, `neg_txt_idx`,
    `neg_img_idx` (indices into the candidate pools).

    `pos_i2t` / `pos_t2i` (optional `[B, B + Q]` bool, e.g. `ITCHead`'s `pos` for both): candidates
    that also match (another row or queue entry showing the same image) are never drawn as
    negatives. A row left with no candidate at all keeps a draw, but its negative pair is left out
    of `loss` and `acc` (`weight [3B]` is returned; all ones without exclusions).
    """

    def __init__(self, dim: int = 128, hidden: int = 256, neg_temperature: float = 0.5):
        super().__init__()
        if dim <= 0 or hidden <= 0 or neg_temperature <= 0:
            raise ConfigError("ITMHead: dim, hidden and neg_temperature must be positive")
        self.dim = dim
        self.neg_temperature = float(neg_temperature)
        self.classifier = nn.Sequential(nn.Linear(4 * dim, hidden), nn.GELU(), nn.Linear(hidden, 2))

    def pair_logits(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([img, txt, img * txt, (img - txt).abs()], dim=-1))

    def _sim(self, a: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (
                F.normalize(a.float(), dim=-1) @ F.normalize(pool.float(), dim=-1).t() / self.neg_temperature
            )

    def forward(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        sim: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        queue_img: torch.Tensor | None = None,
        queue_txt: torch.Tensor | None = None,
        sim_t2i: torch.Tensor | None = None,
        pos_i2t: torch.Tensor | None = None,
        pos_t2i: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        b = _check_pair(img, txt, self.dim, "ITMHead")
        for name, q in (("queue_img", queue_img), ("queue_txt", queue_txt)):
            if q is not None and (q.dim() != 2 or q.shape[1] != self.dim):
                raise ValueError(f"ITMHead: {name} must be [Q, {self.dim}], got {tuple(q.shape)}")
        txt_pool = txt if queue_txt is None else torch.cat([txt, queue_txt.detach().to(txt)], 0)
        img_pool = img if queue_img is None else torch.cat([img, queue_img.detach().to(img)], 0)
        if txt_pool.shape[0] < 2 or img_pool.shape[0] < 2:
            raise ValueError("ITMHead: need at least 2 candidates (batch + queue) to draw a negative")

        sim_i2t = sim
        if sim_t2i is None and sim is not None and queue_img is None:
            sim_t2i = sim[:, :b].t()
        if sim_i2t is None:
            sim_i2t = self._sim(img, txt_pool)
        if sim_t2i is None:
            sim_t2i = self._sim(txt, img_pool)
        for name, s, n in (("sim", sim_i2t, txt_pool.shape[0]), ("sim_t2i", sim_t2i, img_pool.shape[0])):
            if tuple(s.shape) != (b, n):
                raise ValueError(
                    f"ITMHead: {name} must be [{b}, {n}] (batch + queue candidates), got {tuple(s.shape)}"
                )

        for name, p, s in (("pos_i2t", pos_i2t, sim_i2t), ("pos_t2i", pos_t2i, sim_t2i)):
            if p is not None and p.shape != s.shape:
                raise ValueError(f"ITMHead: {name} must be {tuple(s.shape)}, got {tuple(p.shape)}")

        neg_txt_idx, ok_txt = _sample_negatives(sim_i2t, b, generator, pos_i2t)
        neg_img_idx, ok_img = _sample_negatives(sim_t2i, b, generator, pos_t2i)
        all_img = torch.cat([img, img, img_pool[neg_img_idx]], 0)
        all_txt = torch.cat([txt, txt_pool[neg_txt_idx], txt], 0)
        logits = self.pair_logits(all_img, all_txt)
        labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)]).to(
            img.device
        )
        weight = torch.cat([torch.ones(b, dtype=torch.bool, device=img.device), ok_txt, ok_img]).float()
        loss = (F.cross_entropy(logits.float(), labels, reduction="none") * weight).sum() / weight.sum()
        with torch.no_grad():
            acc = ((logits.argmax(1) == labels).float() * weight).sum() / weight.sum()
        return {
            "loss": loss,
            "acc": acc,
            "logits": logits,
            "labels": labels,
            "weight": weight,
            "neg_txt_idx": neg_txt_idx,
            "neg_img_idx": neg_img_idx,
        }


def bitgen_loss(
    terms: Mapping[str, torch.Tensor | float],
    weights: Sequence[float] | Mapping[str, float] = BITGEN_LOSS_WEIGHTS,
) -> torch.Tensor:
    """`sum(w_k * terms[k])` over k in ("itc", "itm", "memory_kl", "text").

    `weights` is a 4-sequence in that order (default 1.0 / 0.5 / 0.1 / 0.0) or a dict by name
    (missing names use the default). Missing terms and zero-weight terms are skipped (so a NaN in
    an unused term cannot leak in). Unknown term names are an error.
    """
    unknown = sorted(set(terms) - set(BITGEN_LOSS_TERMS))
    if unknown:
        raise ValueError(f"bitgen_loss: unknown terms {unknown}; expected {BITGEN_LOSS_TERMS}")
    if isinstance(weights, Mapping):
        bad = sorted(set(weights) - set(BITGEN_LOSS_TERMS))
        if bad:
            raise ValueError(f"bitgen_loss: unknown weights {bad}")
        w = {k: float(weights.get(k, d)) for k, d in zip(BITGEN_LOSS_TERMS, BITGEN_LOSS_WEIGHTS, strict=True)}
    else:
        if len(weights) != len(BITGEN_LOSS_TERMS):
            raise ValueError(
                f"bitgen_loss: need {len(BITGEN_LOSS_TERMS)} weights {BITGEN_LOSS_TERMS}, got {len(weights)}"
            )
        w = dict(zip(BITGEN_LOSS_TERMS, map(float, weights), strict=True))
    total = None
    for k in BITGEN_LOSS_TERMS:
        if k not in terms or w[k] == 0.0:
            continue
        v = terms[k]
        v = v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
        total = w[k] * v if total is None else total + w[k] * v
    if total is None:
        ref = next((v for v in terms.values() if isinstance(v, torch.Tensor)), None)
        return torch.zeros((), device=ref.device if ref is not None else None)
    return total
