"""MemoryVLM: frames -> vision -> 3D fusion -> memory -> projector -> pooling -> LM.

Token layout `[frame tokens][question tokens][answer tokens]`, loss on answer
tokens only. `context_frames` keeps the LM on the most recent frames; memory
carries everything older. Each stage can be switched off by the recipe.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.data.dataset import IGNORE_INDEX
from vlmem.fusion import Fusion3D
from vlmem.geometry import (
    CAMERA_FEATURE_DIM,
    SensorGeometryEncoder,
    camera_features,
    coordinate_scale,
    depth_to_pointmap,
    pool_points_to_grid,
)
from vlmem.memory import build_memory
from vlmem.recipe.schema import ModelConfig


def build_projector(kind: str, dim_in: int, dim_out: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim_in, dim_out)
    return nn.Sequential(nn.Linear(dim_in, dim_out), nn.GELU(), nn.Linear(dim_out, dim_out))  # LLaVA mlp2x_gelu


def distinct_videos(videos: list[str]) -> tuple[list[int], list[int]]:
    """(the first row of each distinct video, each row's index into that list)."""
    position: dict[str, int] = {}
    unique: list[int] = []
    for i, video in enumerate(videos):
        if video not in position:
            position[video] = len(unique)
            unique.append(i)
    return unique, [position[v] for v in videos]


def encode_once_per_video(model, frames: torch.Tensor, geometry: dict | None, videos: list[str]) -> torch.Tensor:
    """`model.encode_frames` for a batch whose rows may share videos (several questions of one
    video): each distinct video is encoded once, and every row gets its video's tokens."""
    unique, rows = distinct_videos(videos)
    geo = {k: v[unique] for k, v in geometry.items()} if geometry is not None else None
    tokens = model.encode_frames(frames[unique], geo)
    return tokens[rows]


def context_once_per_video(model, frames: torch.Tensor, geometry: dict | None, videos: list[str]) -> dict:
    """`generate`'s per-video inputs for a batch whose rows may share videos: `tokens` (vision +
    fusion) and `readout` (the memory's read-out of every frame, [B, T, N, D]), each computed once
    per distinct video; every row gets its video's. The memory scan does not depend on the question.

    The read-out at frame t depends on frames <= t only (every memory is causal), so one scan of a
    stream also serves questions asked mid-stream: a question at frame t reads `tokens[:, :t + 1]`
    and `readout[:, :t + 1]` (tests/model/test_context_once.py checks this for every memory kind)."""
    unique, rows = distinct_videos(videos)
    geo = {k: v[unique] for k, v in geometry.items()} if geometry is not None else None
    tokens = model.encode_frames(frames[unique], geo)
    readout = model.memory_readout(tokens)
    return {"tokens": tokens[rows], "readout": readout[rows]}


def pool_grid(x: torch.Tensor, grid: tuple[int, int], p: int) -> torch.Tensor:
    """[B,T,gh*gw,D] -> [B,T,(gh//p)*(gw//p),D]: p x p average pooling of each frame's token grid."""
    b, t, _, d = x.shape
    gh, gw = grid
    x = x.reshape(b * t, gh, gw, d).permute(0, 3, 1, 2)
    return F.avg_pool2d(x, p).flatten(2).transpose(1, 2).reshape(b, t, -1, d)


class MemoryVLM(nn.Module):
    def __init__(self, cfg: ModelConfig, vision: nn.Module, lm: nn.Module, projector: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.vision = vision
        self.lm = lm
        dim = vision.hidden_size
        self.grid = tuple(vision.grid)
        geo, fus = cfg.geometry, cfg.fusion
        any_fusion = geo.source != "none" and (fus.position_injection or fus.viewpoint_alignment or fus.cross_attention)
        self.geometry_encoder = (SensorGeometryEncoder(CAMERA_FEATURE_DIM, geo.dim)
                                 if any_fusion and geo.source == "sensor" else None)
        self.fusion = Fusion3D(dim, geo.dim, geo.dim, fus.num_heads,
                               position_injection=any_fusion and fus.position_injection,
                               viewpoint_alignment=any_fusion and fus.viewpoint_alignment,
                               cross_attention=any_fusion and fus.cross_attention,
                               coordinate_gate=fus.coordinate_gate) if any_fusion else None
        self.memory = build_memory(cfg.memory, dim)
        lm_dim = lm.get_input_embeddings().embedding_dim
        self.projector = projector if projector is not None else build_projector(cfg.projector, dim, lm_dim)

    # -- stage 1: frames -> fused visual tokens (cacheable when frozen) ----------
    def encode_frames(self, frames: torch.Tensor, geometry: dict | None = None) -> torch.Tensor:
        """frames [B,T,3,H,W] uint8 -> fused tokens [B,T,N,D]."""
        b, t = frames.shape[:2]
        pixels = frames.flatten(0, 1).to(self.projector_dtype) / 255.0
        tokens = self.vision(pixels)  # [B*T, N, D]
        if self.fusion is not None:
            tokens = self.fusion(tokens, **self._geometry_inputs(geometry, b, t, tokens.dtype))
        return tokens.unflatten(0, (b, t))

    def _geometry_inputs(self, geometry: dict | None, b: int, t: int, dtype) -> dict:
        if geometry is None:
            raise ValueError("this model fuses 3D geometry but the batch has none")
        if self.cfg.geometry.source == "sensor":
            depth, intr, poses = geometry["depth"], geometry["intrinsics"], geometry["poses"]
            hw = tuple(depth.shape[-2:])
            coords, valid, cams, scales = [], [], [], []
            for i in range(b):  # pointmaps and scale are per video, relative to its first frame
                points, ok = depth_to_pointmap(depth[i], intr[i], poses[i])
                c, v = pool_points_to_grid(points, ok, self.grid)
                coords.append(c)
                valid.append(v)
                cams.append(camera_features(poses[i], intr[i], image_size=hw))
                scales.append(coordinate_scale(c, v).reshape(1).expand(t))
            coords, valid = torch.cat(coords).to(dtype), torch.cat(valid)
            cam, scale = torch.cat(cams).to(dtype), torch.cat(scales).to(dtype)
            geo = self.geometry_encoder(coords, valid, cam, scale)
            return {"coords": coords, "coords_valid": valid, "geo_tokens": geo["patch_tokens"],
                    "cam": geo["camera_tokens"], "coord_scale": scale}
        # cached encoder features (CUT3R / VGGT ...): [B,T,P,C] patch tokens + [B,T,1,C] camera tokens
        patch = geometry["patch_tokens"].flatten(0, 1).to(dtype)
        cam = geometry["camera_tokens"].flatten(0, 1).to(dtype)
        out = {"geo_tokens": patch, "cam": cam}
        if "points" in geometry and self.fusion.position is not None:
            out.update(self._pooled_points(geometry["points"], geometry.get("points_valid"), t, dtype))
        return out

    def _pooled_points(self, points: torch.Tensor, valid: torch.Tensor | None, t: int, dtype) -> dict:
        """The encoder's pointmaps [B,T,H,W,3] (first frame's coordinates) -> per-patch coordinates
        [B*T,N,3], their validity and a per-video scale, as the sensor path computes them."""
        coords, ok, scales = [], [], []
        for i in range(points.shape[0]):
            v = valid[i] if valid is not None else torch.isfinite(points[i]).all(-1)
            c, m = pool_points_to_grid(points[i].float(), v, self.grid)
            coords.append(c)
            ok.append(m)
            scales.append(coordinate_scale(c, m).reshape(1).expand(t))
        return {"coords": torch.cat(coords).to(dtype), "coords_valid": torch.cat(ok),
                "coord_scale": torch.cat(scales).to(dtype)}

    @property
    def projector_dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    # -- stage 2: memory over frames -------------------------------------------
    def run_memory(self, tokens: torch.Tensor, tbptt_frames: int = 0, return_info: bool = False, state=None):
        """tokens [B,T,N,D] -> (memory read-out M [B,T,N,D], final state, per-frame info dict).

        With `tbptt_frames` the video is scanned in chunks whose state is detached between
        them (truncated backprop through time). `state`: carry on from it (train.tbptt_mode =
        "per_chunk") instead of an empty memory."""
        b, n = tokens.shape[0], tokens.shape[2]
        if state is None:
            state = self.memory.init_state(b, tokens.device, tokens.dtype, tokens_per_frame=n)
        return self.memory.scan_truncated(tokens, state, tbptt_frames, return_info)

    def memory_readout(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B,T,N,D] -> the memory's read-out of every frame [B,T,N,D] (one scan, no info)."""
        return self.read_memory(tokens)[0]

    def read_memory(self, tokens: torch.Tensor, tbptt_frames: int = 0, return_info: bool = False, state=None):
        """(read-out, state, info): `run_memory` on the tokens pooled `model.memory.pool` x `pool` per frame (as the LM sees them
        after spatial pooling); the read-out is spread back over each pooled cell, so what follows
        (residual, LM pooling) keeps the full grid. pool 1 = `run_memory` itself."""
        p = self.cfg.memory.pool
        if p <= 1:
            return self.run_memory(tokens, tbptt_frames, return_info, state)
        b, t, _, d = tokens.shape
        gh, gw = self.grid
        pooled = pool_grid(tokens, self.grid, p)
        m, state, info = self.run_memory(pooled, tbptt_frames, return_info, state)
        ph, pw = gh // p, gw // p
        up = m.reshape(b * t, ph, pw, d).repeat_interleave(p, 1).repeat_interleave(p, 2)
        if (ph * p, pw * p) != (gh, gw):  # rows / columns the pooling dropped take the nearest cell's read-out
            up = F.pad(up.permute(0, 3, 1, 2), (0, gw - pw * p, 0, gh - ph * p), mode="replicate").permute(0, 2, 3, 1)
        return up.reshape(b, t, gh * gw, d), state, info

    def hand_on(self, tokens: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """What reaches the LM: H_t + M_t (model.memory.output = "residual") or M_t."""
        residual = self.cfg.memory.output == "residual" and self.cfg.memory.kind != "none"
        return tokens + m if residual else m

    def consistency_loss(self, tokens: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """1 - cos(M_t, H_t) over frames t >= 1: the memory's read-out should agree with what the
        frame shows (H_t detached, so only the memory learns from it)."""
        if tokens.shape[1] < 2 or self.cfg.memory.kind == "none":
            return tokens.new_zeros(())
        cos = F.cosine_similarity(m[:, 1:].float(), tokens[:, 1:].detach().float(), dim=-1)
        return (1 - cos).mean()

    # -- stage 3: recent frames -> LM embeddings -------------------------------
    def visual_embeds(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B,T,N,D] -> [B, C*N', D_lm] for the last `context_frames` frames, pooled spatially."""
        c = self.cfg.context_frames or tokens.shape[1]
        x = tokens[:, -c:]
        if self.cfg.pool > 1:
            x = pool_grid(x, self.grid, self.cfg.pool)
        return self.projector(x.flatten(1, 2))

    def assemble(self, visual: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 labels: torch.Tensor | None, padding_side: str = "right"):
        """Per sample [visual; text-without-padding], padded as a whole (left for generation).

        [visual; text] is concatenated for the whole batch, then each row's padding is moved
        to the end (right) or the front (left) by a stable sort of the mask: no Python loop."""
        b, v = visual.shape[:2]
        text = self.lm.get_input_embeddings()(input_ids)
        embeds = torch.cat([visual, text.to(visual.dtype)], dim=1)
        mask = torch.cat([attention_mask.new_ones(b, v), attention_mask], dim=1)
        order = torch.argsort(mask, dim=1, descending=padding_side == "right", stable=True)
        embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
        lab = None
        if labels is not None:
            lab = torch.cat([labels.new_full((b, v), IGNORE_INDEX), labels], dim=1).gather(1, order)
        return embeds, mask.gather(1, order), lab

    # -- training / inference ----------------------------------------------------
    def forward(self, frames, input_ids, attention_mask, labels=None, geometry=None, tokens=None, tbptt_frames=0,
                return_info=False, consistency=False, memory_state=None):
        """Returns (loss, logits, memory_state, aux). Precomputed `tokens` skip `encode_frames`;
        `memory_state` continues a video's memory (per-chunk TBPTT) instead of starting empty.

        `aux` holds the memory's per-frame info with `return_info`, and the consistency loss
        under "consistency" with `consistency`."""
        if tokens is None:
            tokens = self.encode_frames(frames, geometry)
        m, state, aux = self.read_memory(tokens, tbptt_frames, return_info, memory_state)
        if consistency:
            aux["consistency"] = self.consistency_loss(tokens, m)
        visual = self.visual_embeds(self.hand_on(tokens, m))
        embeds, mask, lab = self.assemble(visual, input_ids, attention_mask, labels)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, labels=lab)
        return out.loss, out.logits, state, aux

    @torch.no_grad()
    def generate(self, frames, input_ids, attention_mask, geometry=None, max_new_tokens=16, eos_token_id=None,
                 pad_token_id=0, tokens=None, readout=None) -> torch.Tensor:
        """Greedy decoding; returns the new token ids [B, <=max_new_tokens]. A precomputed memory
        `readout` (`memory_readout(tokens)`, e.g. shared by a video's questions) skips the scan."""
        if tokens is None:
            tokens = self.encode_frames(frames, geometry)
        m = self.memory_readout(tokens) if readout is None else readout
        visual = self.visual_embeds(self.hand_on(tokens, m))
        embeds, mask, _ = self.assemble(visual, input_ids, attention_mask, None, padding_side="left")
        return self.lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                do_sample=False, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
