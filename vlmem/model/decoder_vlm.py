"""DecoderVLM: MemoryVLM with a small answer decoder (plain or TRM) in place of the HF LM.

frames -> vision -> (3D fusion) -> memory -> projector [-> Perceiver resampler to K latents]
       -> context [IMG tokens][QUESTION tokens] -> PlainDecoder / TRMDecoder -> [ANSWER]

The vision, fusion and memory stages are MemoryVLM's own (`encode_frames`, `run_memory`,
`hand_on`, `visual_embeds`), so the feature cache, TBPTT and every memory kind work unchanged.
`self.lm` is an `AnswerDecoder` (the decoder + the token table that embeds the question), so the
trainable component "lm" is the decoder. The question embeddings come from the decoder's own
token table; the answers are the label positions of the usual batch (`labels` != -100, i.e.
answer tokens + eos); image and question positions never carry a label. docs/models.md, "TRM VLM".
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vlmem.data.dataset import IGNORE_INDEX
from vlmem.model.decoders import build_decoder
from vlmem.model.vlm import MemoryVLM, build_projector

MAX_QUESTION_TOKENS = 256  # questions are cut to their first 256 tokens (position table size)


class PerceiverResampler(nn.Module):
    """Flamingo-style resampler: `latents` learned queries cross-attend to `[tokens; latents]`.

    `[B, N, D] -> [B, K, D]`: any number of visual tokens (all context frames together) in, a
    fixed number of latents out. Each layer: `lat += attn(ln(lat), [ln(x); ln(lat)])`,
    `lat += ff(ln(lat))`; a final LayerNorm.
    """

    def __init__(self, dim: int, latents: int, heads: int, layers: int = 2):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(latents, dim) * 0.02)
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.ModuleDict({
                "ln_x": nn.LayerNorm(dim), "ln_lat": nn.LayerNorm(dim),
                "attn": nn.MultiheadAttention(dim, heads, batch_first=True),
                "ff": nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)),
            }))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lat = self.latents.to(x.dtype).expand(x.shape[0], -1, -1)
        for layer in self.layers:
            q = layer["ln_lat"](lat)
            kv = torch.cat([layer["ln_x"](x), q], dim=1)
            lat = lat + layer["attn"](q, kv, kv, need_weights=False)[0]
            lat = lat + layer["ff"](lat)
        return self.norm(lat)


class ResampledProjector(nn.Module):
    """The "projector" component: vision width -> decoder width, then the resampler."""

    def __init__(self, proj: nn.Module, resampler: PerceiverResampler):
        super().__init__()
        self.proj = proj
        self.resampler = resampler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resampler(self.proj(x))


class AnswerDecoder(nn.Module):
    """The "lm" component: a PlainDecoder / TRMDecoder plus the table that embeds the question.

    The plain decoder embeds the question with its own (tied) token table; the TRM reads only
    embeddings, so it gets a table here."""

    def __init__(self, decoder: nn.Module, vocab_size: int):
        super().__init__()
        self.decoder = decoder
        if not hasattr(decoder, "tok_emb"):
            self.tok_emb = nn.Embedding(vocab_size, decoder.hidden)
            nn.init.normal_(self.tok_emb.weight, std=0.02)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.tok_emb if hasattr(self.decoder, "tok_emb") else self.tok_emb


class DecoderVLM(MemoryVLM):
    def __init__(self, cfg, vision: nn.Module, lm: AnswerDecoder, bos_id: int, eos_id: int, pad_id: int):
        d = cfg.decoder
        width = lm.get_input_embeddings().embedding_dim
        projector = build_projector(cfg.projector, vision.hidden_size, width)
        if d.resampler_latents:
            projector = ResampledProjector(projector, PerceiverResampler(width, d.resampler_latents, d.num_heads))
        super().__init__(cfg, vision, lm, projector=projector)
        self.bos_id, self.eos_id, self.pad_id = int(bos_id), int(eos_id), int(pad_id)

    # -- context -------------------------------------------------------------------------
    def _visual(self, frames, geometry, tokens, input_ids, tbptt_frames=0, return_info=False, consistency=False,
                memory_state=None, readout=None):
        """(visual context [B, V, H] or None without vision, memory state (None with a precomputed
        `readout`), aux dict)."""
        if not self.cfg.decoder.use_vision:  # the no-vision ablation: frames are never read
            dev = input_ids.device
            state = self.memory.init_state(input_ids.shape[0], dev, self.projector_dtype,
                                           tokens_per_frame=self.vision.num_tokens)
            return None, state, ({"consistency": torch.zeros((), device=dev)} if consistency else {})
        if tokens is None:
            tokens = self.encode_frames(frames, geometry)
        if readout is not None:
            return self.visual_embeds(self.hand_on(tokens, readout)), None, {}
        m, state, aux = self.read_memory(tokens, tbptt_frames, return_info, memory_state)
        if consistency:
            aux["consistency"] = self.consistency_loss(tokens, m)
        return self.visual_embeds(self.hand_on(tokens, m)), state, aux

    def _context(self, visual, input_ids, attention_mask, labels):
        """[visual; question embeddings] and its mask. The question is every attended position
        without a label, moved to the front of the row (so positions match between right-padded
        training and left-padded generation batches) and cut to MAX_QUESTION_TOKENS."""
        valid = attention_mask.bool()
        if labels is not None:
            valid = valid & (labels == IGNORE_INDEX)
        order = torch.argsort(valid.long(), dim=1, descending=True, stable=True)
        length = max(1, min(int(valid.sum(1).max()), MAX_QUESTION_TOKENS))
        ids, qmask = input_ids.gather(1, order)[:, :length], valid.gather(1, order)[:, :length]
        text = self.lm.get_input_embeddings()(ids)
        if visual is None:
            return text, qmask
        mask = torch.cat([qmask.new_ones(visual.shape[:2]), qmask], dim=1)
        return torch.cat([visual.to(text.dtype), text], dim=1), mask

    def _answers(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch labels -> decoder `(answer_ids, targets)` (docs/models.md, decoders' convention).

        Targets are the label tokens (answer + eos) in order, cut to `max_answer_tokens`; the TRM
        always gets exactly `max_answer_tokens` slots (the same number it generates)."""
        has = labels != IGNORE_INDEX
        order = torch.argsort(has.long(), dim=1, descending=True, stable=True)
        n = self.cfg.decoder.max_answer_tokens
        ly = n if self.cfg.decoder.kind == "trm" else max(1, min(n, int(has.sum(1).max())))
        target = labels.gather(1, order)[:, :ly]
        if target.shape[1] < ly:
            target = torch.cat([target, target.new_full((target.shape[0], ly - target.shape[1]), IGNORE_INDEX)], 1)
        shifted = torch.cat([target.new_full((target.shape[0], 1), self.bos_id), target[:, :-1]], dim=1)
        answer_ids = torch.where(shifted == IGNORE_INDEX, torch.full_like(shifted, self.pad_id), shifted)
        return answer_ids, target

    # -- training / inference ------------------------------------------------------------
    def forward(self, frames, input_ids, attention_mask, labels=None, geometry=None, tokens=None, tbptt_frames=0,
                return_info=False, consistency=False, memory_state=None):
        """(loss, answer logits [B, Ly, V], memory state, aux); aux["metrics"]["halt_loss"] with TRM halting.

        Without labels the logits are the first answer position's (plain) or all answer slots' (TRM)."""
        b = input_ids.shape[0]
        visual, state, aux = self._visual(frames, geometry, tokens, input_ids, tbptt_frames, return_info, consistency,
                                          memory_state)
        context, mask = self._context(visual, input_ids, attention_mask, labels)
        if labels is not None:
            answer_ids, target = self._answers(labels)
        else:
            slots = self.cfg.decoder.max_answer_tokens if self.cfg.decoder.kind == "trm" else 1
            answer_ids, target = input_ids.new_full((b, slots), self.bos_id), None
        out = self.lm.decoder(context, mask, answer_ids, target)
        if "halt_loss" in out:
            aux.setdefault("metrics", {})["halt_loss"] = out["halt_loss"].detach()
        return out["loss"], out["logits"], state, aux

    @torch.no_grad()
    def generate(self, frames, input_ids, attention_mask, geometry=None, max_new_tokens=16, eos_token_id=None,
                 pad_token_id=0, tokens=None, readout=None) -> torch.Tensor:
        """Greedy answer ids [B, <= min(max_new_tokens, max_answer_tokens)]; after the first eos: pad.
        A precomputed memory `readout` skips the scan (as in MemoryVLM.generate)."""
        visual, _, _ = self._visual(frames, geometry, tokens, input_ids, readout=readout)
        context, mask = self._context(visual, input_ids, attention_mask, None)
        eos = self.eos_id if eos_token_id is None else int(eos_token_id)
        n = self.cfg.decoder.max_answer_tokens
        steps = n if self.cfg.decoder.kind == "trm" else min(n, max_new_tokens)  # the TRM always fills its n slots
        ids = self.lm.decoder.generate(context, mask, max_new_tokens=steps, bos_id=self.bos_id, eos_id=eos)
        ids = ids[:, :max_new_tokens]
        after = torch.cumsum((ids == eos).long(), dim=1) - (ids == eos).long() > 0
        return torch.where(after, torch.full_like(ids, pad_token_id if pad_token_id is not None else self.pad_id), ids)


def _special_ids(tokenizer) -> dict[str, int]:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos if eos is not None else 0)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else (eos if eos is not None else pad)
    return {"bos_id": bos, "eos_id": eos if eos is not None else pad, "pad_id": pad}


def visual_context_tokens(recipe, vision) -> int:
    """Upper bound on the visual tokens in the decoder context (resampler latents, else frames x pooled grid)."""
    m = recipe.model
    if not m.decoder.use_vision:
        return 0
    if m.decoder.resampler_latents:
        return m.decoder.resampler_latents
    frames = max(recipe.data.frames, recipe.eval.frames)
    frames = min(frames, m.context_frames) if m.context_frames else frames
    gh, gw = vision.grid
    return frames * (gh // m.pool) * (gw // m.pool)


def build_decoder_vlm(recipe, vision, tokenizer) -> DecoderVLM:
    """`[model.decoder]` kind plain / trm -> DecoderVLM (the HF LM of [model.lm] is not built)."""
    d = recipe.model.decoder
    vocab = len(tokenizer)
    max_len = visual_context_tokens(recipe, vision) + MAX_QUESTION_TOKENS + d.max_answer_tokens
    kwargs = {"hidden": d.hidden_size, "layers": d.num_layers, "heads": d.num_heads, "max_len": max_len}
    if d.kind == "trm":
        kwargs.update(n=d.trm_n, T=d.trm_T, deep_supervision=d.deep_supervision, halting=d.halting)
    decoder = AnswerDecoder(build_decoder(d.kind, vocab, **kwargs), vocab)
    return DecoderVLM(recipe.model, vision, decoder, **_special_ids(tokenizer))
