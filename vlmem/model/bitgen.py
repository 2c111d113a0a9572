"""BitGen (`model.kind = "bitgen"`): a small contrastive VLM with an episodic memory.

    frames [B,T,3,H,W] -> DINOv2 (frozen, LoRA on query/value) -> CLS feature per frame
      (or, with patch_tokens = P, its patch tokens pooled to P: the seed's [B,256,128])
      -> FeatureCompression (D -> 384 -> 128)                        = per-frame tokens [B,T,1|P,E]
      -> memory over frames (Larimar, or none) -> H_t + M_t -> mean over frames (and tokens) = image [B,E]
    text (question + answer, or caption) -> token + position embeddings -> masked mean = text [B,E]
    ITC(image, text) with a feature queue, ITM(image, text) with similarity-sampled hard negatives
    LM: text tokens + fusion MLP([token; image]) -> causal blocks -> vocabulary logits

Loss = itc_weight * ITC + itm_weight * ITM + text_weight * LM (1.0 / 0.5 / 0.0) is what `forward`
returns; the Larimar KL (model.memory.larimar_kl_weight, 0.1) joins it in the training loop via
`memory.aux_losses`. The LoRA adapters stay frozen for `lora_warmup_epochs`, then train
(`training_schedule`). Components for `train.trainable`: vision = the DINOv2 LoRA adapters (the base
never trains), projector = compression, memory, fusion = fusion MLP + ITC + ITM heads, lm = text
embeddings + LM head. See docs/models.md, "BitGen".
"""

from __future__ import annotations

import copy
import hashlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.data.dataset import IGNORE_INDEX
from vlmem.errors import ConfigError
from vlmem.memory import build_memory
from vlmem.model.contrastive import FeatureCompression, ITCHead, ITMHead, bitgen_loss
from vlmem.recipe.schema import ModelConfig

# the seed names the DINOv2 projections by their transformers 4.x names; 5.x calls them *_proj
LORA_ALIASES = {"query": "q_proj", "key": "k_proj", "value": "v_proj"}


def resolve_lora_targets(model: nn.Module, targets: list[str]) -> list[str]:
    """Recipe names -> leaf names of Linear layers that exist in `model` (query -> q_proj in 5.x)."""
    leaves = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, nn.Linear)}
    out: list[str] = []
    for t in targets:
        name = t if t in leaves else LORA_ALIASES.get(t)
        if name not in leaves:
            raise ConfigError(f"model.bitgen.lora_targets: {t!r} names no Linear layer of the DINOv2 tower; its "
                              f"Linear layers are {sorted(leaves)}")
        if name not in out:
            out.append(name)
    return out


def content_ids(frames: torch.Tensor) -> torch.Tensor:
    """[B] int64: a hash of each sample's frame bytes. Rows showing the same video (or image) get the
    same id, so ITC/ITM treat them as positives of each other (BLIP's `idx`)."""
    flat = frames.detach().to("cpu").contiguous().flatten(1)
    if flat.dtype != torch.uint8:
        flat = flat.view(torch.uint8)
    ids = [int.from_bytes(hashlib.blake2b(row.numpy().tobytes(), digest_size=8).digest(), "little") >> 1
           for row in flat]
    return torch.tensor(ids, dtype=torch.long, device=frames.device)


def _f(x: torch.Tensor) -> float:
    return float(x.detach())


def encode_text(tok: nn.Module, proj: nn.Module, norm: nn.Module, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
    emb = tok(input_ids)
    m = attention_mask.to(emb.dtype).unsqueeze(-1)
    return norm(proj((emb * m).sum(1) / m.sum(1).clamp_min(1.0)))


class CausalBlock(nn.Module):
    """Pre-norm transformer block: causal self-attention (key padding masked) + GELU MLP (4x)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class BitGenText(nn.Module):
    """The `lm` component: token + position embeddings (the text encoder of ITC/ITM) and the LM head
    (`lm_layers` causal blocks + a vocabulary projection)."""

    def __init__(self, vocab_size: int, dim: int, max_len: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.text_proj = nn.Linear(dim, dim)  # CLIP / BLIP's text projection
        self.pool_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(CausalBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab_size)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok

    def head_modules(self) -> list[nn.Module]:
        """Modules that only the text (LM) loss trains."""
        return [self.pos, self.blocks, self.norm, self.out]

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, L, E]; positions count real tokens only, so left and right padding agree."""
        pos = (attention_mask.long().cumsum(1) - 1).clamp_min(0)
        if input_ids.shape[1] and int(pos.max()) >= self.max_len:
            raise ValueError(f"text of {int(pos.max()) + 1} tokens is longer than model.bitgen.max_text_len = "
                             f"{self.max_len}: raise it (or shorten the prompts)")
        return self.tok(input_ids) + self.pos(pos)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text embedding [B, E] for ITC / ITM: masked mean of the token embeddings -> Linear ->
        LayerNorm. Position embeddings are left out here: they are the same for every text of a
        length and would only add a shared offset (they matter for the LM head)."""
        return encode_text(self.tok, self.text_proj, self.pool_norm, input_ids, attention_mask)

    def head(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Fused token embeddings [B, L, E] -> logits [B, L, V] (position t sees tokens <= t)."""
        n = x.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        mask = causal[None] & attention_mask.bool()[:, None, :]
        mask = (mask | torch.eye(n, dtype=torch.bool, device=x.device)[None]).unsqueeze(1)  # pads see themselves
        for block in self.blocks:
            x = block(x, mask)
        return self.out(self.norm(x))


class BitGenFusion(nn.Module):
    """The `fusion` component: the fusion MLP that conditions each text token on the image, and the
    cross-modal heads (ITC with its queue and temperature, ITM classifier)."""

    def __init__(self, dim: int, fusion_hidden: int, itm_hidden: int, queue_size: int, temperature: float,
                 learn_temperature: bool):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, fusion_hidden), nn.GELU(), nn.Linear(fusion_hidden, dim))
        self.itc = ITCHead(dim, queue_size=queue_size, temperature=temperature, learn_temperature=learn_temperature)
        self.itm = ITMHead(dim, hidden=itm_hidden)

    def fuse(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """text tokens [B, L, E] + image [B, E] -> text + MLP([text; image]) [B, L, E]."""
        img = image[:, None].expand(-1, text.shape[1], -1).to(text.dtype)
        return text + self.mlp(torch.cat([text, img], dim=-1))


class MomentumEncoders(nn.Module):
    """EMA copies (ALBEF / MoCo momentum encoders) of the image compression, the memory and the text
    encoder. Their features are the batch columns of ITC and fill its queue, so the queue holds
    features of one slowly moving encoder. Never trained by gradients; the DINOv2 features they
    read are the online model's (frozen base + LoRA), not a second copy of the backbone."""

    def __init__(self, model: BitGenVLM):
        super().__init__()
        self.projector = copy.deepcopy(model.projector)
        self.memory = copy.deepcopy(model.memory)
        self.tok = copy.deepcopy(model.lm.tok)
        self.text_proj = copy.deepcopy(model.lm.text_proj)
        self.pool_norm = copy.deepcopy(model.lm.pool_norm)
        self.requires_grad_(False)

    def _pairs(self, model: BitGenVLM):
        for mine, online in ((self.projector, model.projector), (self.memory, model.memory), (self.tok, model.lm.tok),
                             (self.text_proj, model.lm.text_proj), (self.pool_norm, model.lm.pool_norm)):
            yield from zip(mine.parameters(), online.parameters(), strict=True)

    @torch.no_grad()
    def update(self, model: BitGenVLM, momentum: float) -> None:
        for pm, p in self._pairs(model):
            pm.mul_(momentum).add_(p.detach(), alpha=1.0 - momentum)


class BitGenVLM(nn.Module):
    """Same interface as MemoryVLM for the training loop, evaluation, checkpoints and export."""

    def __init__(self, cfg: ModelConfig, vision: nn.Module, vocab_size: int):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        b = cfg.bitgen
        self.cfg, self.bg = cfg, b
        targets = resolve_lora_targets(vision.model, list(b.lora_targets))
        lora = LoraConfig(r=b.lora_r, lora_alpha=b.lora_alpha, lora_dropout=b.lora_dropout, target_modules=targets)
        vision.model = get_peft_model(vision.model, lora)
        vision.num_prefix_tokens = 0  # keep DINOv2's CLS token (index 0): the frame feature without patch_tokens
        self.vision = vision
        self.projector = FeatureCompression(vision.hidden_size, b.compression_hidden, b.embed_dim,
                                            b.compression_dropout)
        self.memory = build_memory(cfg.memory, b.embed_dim)
        self.fusion = BitGenFusion(b.embed_dim, b.fusion_hidden, b.itm_hidden, b.queue_size, b.temperature,
                                   b.learn_temperature)
        self.geometry_encoder = None
        self.lm = BitGenText(vocab_size, b.embed_dim, b.max_text_len, b.lm_layers, b.lm_heads, b.lm_dropout)
        self.fusion.momentum = MomentumEncoders(self) if b.momentum > 0 else None
        side = math.isqrt(b.patch_tokens) if b.patch_tokens else 1
        if side * side != max(b.patch_tokens, 1):
            raise ConfigError(f"model.bitgen.patch_tokens={b.patch_tokens} must be 0 (the CLS token) or a square "
                              "(the patch grid is pooled to side x side tokens; the seed's 256 = 16 x 16)")
        self.grid = (side, side)  # tokens per frame: the CLS token (1 x 1) or the pooled patch grid
        self.lora_targets = targets
        self._lora_managed = True  # adjust_trainable: False when train.trainable leaves out "vision"
        self._lora_on: bool | None = None  # last state set by training_schedule (for its messages)

    # -- trainable parameters ----------------------------------------------------
    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.vision.named_parameters() if "lora_" in n]

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def adjust_trainable(self, components: set[str]) -> None:
        """Called by `configure_trainable` after the components are unfrozen: the DINOv2 base never
        trains ("vision" means its LoRA adapters), the momentum encoders never take gradients, and
        with text_weight 0 the parts only the LM loss would train (fusion MLP, position embeddings,
        LM blocks, vocabulary projection) stay frozen."""
        self._lora_managed = "vision" in components
        self.vision.requires_grad_(False)
        for p in self.lora_parameters():
            p.requires_grad_(self._lora_managed)
        if self.fusion.momentum is not None:
            self.fusion.momentum.requires_grad_(False)
        if self.bg.text_weight == 0:
            for m in [self.fusion.mlp, *self.lm.head_modules()]:
                m.requires_grad_(False)

    def training_schedule(self, step: int, steps_per_epoch: int) -> str | None:
        """LoRA frozen during the first `lora_warmup_epochs` epochs, trainable after. A pure function
        of `step` (resume re-enters the same state); returns a message when the state changes."""
        if not self._lora_managed:
            return None
        warm = self.bg.lora_warmup_epochs * steps_per_epoch
        on = step >= warm
        changed = self._lora_on != on
        for p in self.lora_parameters():
            p.requires_grad_(on)
        self._lora_on = on
        if not changed:
            return None
        n_lora = sum(p.numel() for p in self.lora_parameters())
        n = self.trainable_parameter_count()
        if on:
            return (f"BitGen: step {step} (epoch {step // max(steps_per_epoch, 1)}): DINOv2 LoRA adapters "
                    f"({n_lora:,} parameters) now train; trainable parameters: {n:,}")
        return (f"BitGen: DINOv2 LoRA adapters ({n_lora:,} parameters) frozen for the warm-up "
                f"({self.bg.lora_warmup_epochs} epoch(s), steps {step}-{warm - 1}); trainable parameters: {n:,}")

    def peft_adapters(self) -> dict[str, nn.Module]:
        """Folders to write in PEFT's own format next to model.safetensors (checkpoints, export)."""
        return {"vision_adapter": self.vision.model}

    # -- image side ----------------------------------------------------------------
    @property
    def projector_dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B,T,3,H,W] uint8 -> DINOv2 features [B,T,P,D]: the CLS token (P = 1) or, with
        `patch_tokens`, the patch tokens average-pooled on their grid to P = side x side."""
        b, t = frames.shape[:2]
        pixels = frames.flatten(0, 1).to(self.projector_dtype) / 255.0
        out = self.vision(pixels)
        if not self.bg.patch_tokens:
            x = out[:, :1]
        else:
            patches = out[:, 1:]  # DINOv2: CLS first, then the patch grid row by row
            g = math.isqrt(patches.shape[1])
            grid = patches.transpose(1, 2).unflatten(2, (g, g))  # [BT, D, g, g]
            x = F.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)  # [BT, P, D]
        return x.unflatten(0, (b, t)).to(self.projector_dtype)

    def encode_frames(self, frames: torch.Tensor, geometry: dict | None = None) -> torch.Tensor:
        """frames [B,T,3,H,W] uint8 -> compressed DINOv2 features [B,T,P,E] (the memory's input)."""
        return self.projector(self.frame_features(frames))

    def run_memory(self, tokens: torch.Tensor, tbptt_frames: int = 0, return_info: bool = False, memory=None):
        """tokens [B,T,1,E] -> (read-out [B,T,1,E], final state, per-frame info); chunks of
        `tbptt_frames` frames with the state detached between them."""
        memory = self.memory if memory is None else memory
        b, n = tokens.shape[0], tokens.shape[2]
        state = memory.init_state(b, tokens.device, tokens.dtype, tokens_per_frame=n)
        return memory.scan_truncated(tokens, state, tbptt_frames, return_info)

    def memory_readout(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B,T,P,E] -> the memory's read-out of every frame [B,T,P,E] (one scan, no info)."""
        return self.run_memory(tokens)[0]

    def image_embedding(self, tokens: torch.Tensor, tbptt_frames: int = 0, return_info: bool = False, memory=None,
                        readout=None):
        """tokens [B,T,P,E] -> (image [B,E] = mean over frames and tokens of H_t + M_t (or M_t), state, info);
        a precomputed `readout` (`memory_readout`) skips the scan (state None, info {})."""
        if readout is not None:
            m, state, info = readout, None, {}
        else:
            m, state, info = self.run_memory(tokens, tbptt_frames, return_info, memory)
        residual = self.cfg.memory.output == "residual" and self.cfg.memory.kind != "none"
        frames = (tokens + m) if residual else m
        return frames.mean((1, 2)), state, info

    # -- training / inference ----------------------------------------------------------
    def forward(self, frames, input_ids, attention_mask, labels=None, geometry=None, tokens=None, tbptt_frames=0,
                return_info=False, consistency=False):
        """Returns (loss, logits [B,L,V], memory_state, aux); loss = weighted ITC + ITM + text.

        aux: the memory's per-frame info (with `return_info`), "metrics" {name: float} (unweighted
        itc/itm/text losses, retrieval and matching accuracies, temperature) and "losses" {} (the
        weighted terms are already in `loss`; the memory KL comes from `memory.aux_losses`)."""
        if consistency:
            raise ValueError("BitGen has no consistency loss (train.aux_consistency_weight must be 0)")
        feats = None
        if tokens is None:
            feats = self.frame_features(frames)
            tokens = self.projector(feats)
        image, state, aux = self.image_embedding(tokens, tbptt_frames, return_info)
        emb = self.lm.embed(input_ids, attention_mask)
        text = self.lm.encode(input_ids, attention_mask)
        idx = content_ids(frames) if frames is not None else None
        image_m = text_m = None
        mom = self.fusion.momentum
        if mom is not None and feats is not None:  # ALBEF: update the EMA copies, then their features
            if self.training:
                mom.update(self, self.bg.momentum)
            with torch.no_grad():
                image_m = self.image_embedding(mom.projector(feats.detach()), tbptt_frames,
                                               memory=mom.memory)[0]
                text_m = encode_text(mom.tok, mom.text_proj, mom.pool_norm, input_ids, attention_mask)

        itc_head = self.fusion.itc
        q_img, q_txt = (x.clone() for x in itc_head.queued())  # before ITC enqueues this batch
        itc = itc_head(image, text, idx=idx, img_m=image_m, txt_m=text_m)
        terms = {"itc": itc["loss"]}
        quality = self.memory_quality(tokens, state)
        metrics = {"itc/loss": _f(itc["loss"]), "itc/i2t_acc": _f(itc["i2t_acc"]),
                   "itc/t2i_acc": _f(itc["t2i_acc"]), "itc/temperature": _f(itc["temperature"])}
        b = image.shape[0]
        pos = itc.get("pos")
        sim_i2t, sim_t2i = itc["logits_i2t"], itc["logits_t2i"]
        if not self.bg.itm_queue_negatives:  # in-batch negatives only (ALBEF / BLIP)
            q_img, q_txt = q_img[:0], q_txt[:0]
            sim_i2t, sim_t2i = sim_i2t[:, :b], sim_t2i[:, :b]
            pos = pos[:, :b] if pos is not None else None
        if b + q_txt.shape[0] >= 2 and b + q_img.shape[0] >= 2:
            itm = self.fusion.itm(F.normalize(image, dim=-1), F.normalize(text, dim=-1), sim=sim_i2t, sim_t2i=sim_t2i,
                                  queue_img=q_img if len(q_img) else None, queue_txt=q_txt if len(q_txt) else None,
                                  pos_i2t=pos, pos_t2i=pos)
            terms["itm"] = itm["loss"]
            metrics.update({"itm/loss": _f(itm["loss"]), "itm/acc": _f(itm["acc"])})

        logits = self.lm.head(self.fusion.fuse(emb, image), attention_mask)
        if labels is not None:
            text_loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                        ignore_index=IGNORE_INDEX)
            terms["text"] = text_loss
            metrics["text/loss"] = _f(text_loss)
        if quality is not None:
            metrics["memory_quality"] = quality
        w = self.bg
        loss = bitgen_loss(terms, {"itc": w.itc_weight, "itm": w.itm_weight, "text": w.text_weight})
        aux = dict(aux)
        aux["losses"] = {}
        aux["metrics"] = metrics
        return loss, logits, state, aux

    @torch.no_grad()
    def memory_quality(self, tokens: torch.Tensor, state) -> float | None:
        """How well the memory at the end of the video gives back what was written: the mean cosine
        between each frame token's code z and its read from the final state (1 = every token
        recalled exactly). Larimar only (the memory with a read of codes); None otherwise."""
        read_codes = getattr(self.memory, "read_codes", None)
        if read_codes is None or state is None:
            return None
        z = self.memory.encoder(tokens.flatten(1, 2)).float()  # [B, T*P, C]
        z_read, _ = read_codes(z, state)
        return float(F.cosine_similarity(z_read, z, dim=-1).mean())

    @torch.no_grad()
    def retrieval_metrics(self, frames: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          generator: torch.Generator | None = None) -> dict[str, float]:
        """In-batch ITC / ITM metrics of one batch (no queue; rows with the same frames are positives
        of each other): i2t_acc, t2i_acc, itc_loss, itm_acc, itm_loss, chance (mean share of
        positives per row, the accuracy of a random pick)."""
        image, _, _ = self.image_embedding(self.encode_frames(frames))
        text = self.lm.encode(input_ids, attention_mask)
        img_n, txt_n = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
        sim = img_n @ txt_n.t() / self.fusion.itc.temperature.float()
        idx = content_ids(frames)
        pos = idx[:, None] == idx[None, :]
        soft = pos.float() / pos.float().sum(1, keepdim=True)
        rows = torch.arange(sim.shape[0], device=sim.device)
        out = {
            "i2t_acc": float(pos[rows, sim.argmax(1)].float().mean()),
            "t2i_acc": float(pos[rows, sim.t().argmax(1)].float().mean()),
            "itc_loss": float(0.5 * (-(soft * F.log_softmax(sim, 1)).sum(1).mean()
                                     - (soft * F.log_softmax(sim.t(), 1)).sum(1).mean())),
            "chance": float(pos.float().mean()),
        }
        if sim.shape[0] >= 2:
            itm = self.fusion.itm(img_n, txt_n, sim=sim, sim_t2i=sim.t(), pos_i2t=pos, pos_t2i=pos,
                                  generator=generator)
            out.update(itm_acc=float(itm["acc"]), itm_loss=float(itm["loss"]))
        return out

    @torch.no_grad()
    def generate(self, frames, input_ids, attention_mask, geometry=None, max_new_tokens=16, eos_token_id=None,
                 pad_token_id=0, tokens=None, readout=None) -> torch.Tensor:
        """Greedy decoding (no KV cache; the LM head is tiny). Prompts may be left-padded. Returns
        the new token ids [B, <= max_new_tokens]; after eos a row continues with `pad_token_id`.
        A precomputed memory `readout` skips the scan."""
        if tokens is None:
            tokens = self.encode_frames(frames, geometry)
        image, _, _ = self.image_embedding(tokens, readout=readout)
        ids, mask = input_ids, attention_mask
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        new = []
        for _ in range(max_new_tokens):
            logits = self.lm.head(self.fusion.fuse(self.lm.embed(ids, mask), image), mask)[:, -1]
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
            new.append(nxt)
            if eos_token_id is not None:
                done = done | (nxt == eos_token_id)
            ids = torch.cat([ids, nxt[:, None]], 1)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
            if bool(done.all()):
                break
        return torch.stack(new, 1) if new else ids.new_zeros(ids.shape[0], 0)


def build_bitgen(recipe, vision: nn.Module, tokenizer) -> BitGenVLM:
    """`model.kind = "bitgen"`: the vision tower must be DINOv2 (recipe validation checks it too)."""
    if getattr(vision, "kind", "") != "dinov2":
        raise ConfigError(f"model.kind = 'bitgen' needs model.vision.kind = 'dinov2', got {getattr(vision, 'kind', '?')!r}")
    return BitGenVLM(recipe.model, vision, vocab_size=len(tokenizer))
