"""Vision towers and language models: real Hugging Face checkpoints, or tiny random-init twins.

`[model.vision]` / `[model.lm]` pick the base. With `pretrained = ""` the same HF classes are
built from the tiny fields of the recipe (random init, NOT a pretrained model) so the whole
loop runs offline on a CPU. With `pretrained` set, the weights load with `from_pretrained`
from a local folder or a hub id (pinned `revision`; `local_files_only` when HF_HUB_OFFLINE=1).
Any failure to find or read a checkpoint is a `CheckpointError` naming the recipe key.

transformers layouts handled (see docs/models.md):
  * >= 4.52 / 5.x: `LlavaOnevisionForConditionalGeneration.model.{vision_tower, multi_modal_projector,
    language_model (a bare Qwen2Model)}` and `lm_head` on the outer model;
  * older 4.x: `.vision_tower`, `.multi_modal_projector`, `.language_model` (a full Qwen2ForCausalLM).
"""

from __future__ import annotations

import gc
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmem.errors import CheckpointError, ConfigError
from vlmem.model.tokenizer import load_pretrained_tokenizer  # noqa: F401  (re-exported for vlmem.model.build)

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VISION_KINDS = ("siglip", "dinov2", "llava_onevision")
LM_KINDS = ("qwen2", "from_vision_checkpoint")

# Multimodal checkpoints accepted by vision.kind = "llava_onevision" (same tower/projector/LM layout).
_LLAVA_CLASSES = {
    "llava_onevision": "LlavaOnevisionForConditionalGeneration",
    "llava_next_video": "LlavaNextVideoForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
}


# --------------------------------------------------------------------------------------------------
# Resolving `pretrained` (local folder or hub id) and turning load failures into CheckpointError


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for cache-only loading."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    return False


def _offline_hint(key: str) -> str:
    return (f"Point {key} at a local checkpoint folder (the one holding config.json), or download the "
            "checkpoint once on a machine with network access (e.g. `hf download <id>`) and set "
            "HF_HUB_OFFLINE=1 so it loads from the Hugging Face cache.")


def resolve_pretrained(value: str, key: str) -> tuple[str, bool]:
    """`pretrained` -> (path or hub id for from_pretrained, local_files_only).

    Raises CheckpointError for a local-looking path that does not exist, a file instead of a
    folder, or a string that is neither an existing folder nor a valid hub id.
    """
    value = str(value).strip()
    if not value:
        raise CheckpointError(f"{key} is empty: nothing to load")
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{key} = {value!r} is a file; point it at the checkpoint folder "
                                  "(the one holding config.json)")
        return str(path), True
    looks_local = value.startswith(("/", "./", "../", "~", ".\\")) or "\\" in value or value.count("/") > 1
    valid_id = False
    if not looks_local:
        try:
            from huggingface_hub.utils import validate_repo_id

            validate_repo_id(value)
            valid_id = True
        except Exception:  # HFValidationError (a ValueError) or an older hub without the helper
            valid_id = False
    if not valid_id:
        what = "no such local folder" if looks_local else "neither an existing local folder nor a valid hub id (owner/name)"
        raise CheckpointError(f"{key} = {value!r}: {what}. {_offline_hint(key)}")
    return value, hub_offline()


def _load_error(key: str, value: str, revision: str, exc: BaseException) -> CheckpointError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return CheckpointError(f"cannot load {key} = {value!r} (revision {revision!r}): {first}\n{_offline_hint(key)}")


def _from_pretrained(loader: Any, cfg: Any, key: str, **kwargs: Any):
    """`loader.from_pretrained(cfg.pretrained, revision=..., trust_remote_code=...)` with clear errors."""
    source, local_only = resolve_pretrained(cfg.pretrained, key)
    try:
        return loader.from_pretrained(source, revision=cfg.revision, trust_remote_code=bool(cfg.trust_remote_code),
                                      local_files_only=local_only, **kwargs)
    except (OSError, ValueError, KeyError) as exc:  # missing files / no network / unknown model type
        raise _load_error(key, cfg.pretrained, cfg.revision, exc) from exc


def _load_config(cfg: Any, key: str):
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig, cfg, key)


def _preprocessor_config(cfg: Any, key: str) -> dict:
    """The checkpoint's preprocessor_config.json as a dict ({} when absent or unreadable)."""
    try:
        from transformers.utils import cached_file

        source, local_only = resolve_pretrained(cfg.pretrained, key)
        path = cached_file(source, "preprocessor_config.json", revision=cfg.revision, local_files_only=local_only,
                           _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
        if path:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
    except (OSError, ValueError, CheckpointError):
        pass
    return {}


def _norm_from(proc: dict, mean: tuple, std: tuple) -> tuple[tuple, tuple]:
    m, s = proc.get("image_mean"), proc.get("image_std")
    if isinstance(m, (list, tuple)) and isinstance(s, (list, tuple)) and len(m) == 3 and len(s) == 3:
        return tuple(float(x) for x in m), tuple(float(x) for x in s)
    return mean, std


def _size_from(proc: dict, name: str) -> int | None:
    v = proc.get(name)
    if isinstance(v, int):
        return v
    if isinstance(v, dict):
        if "height" in v and v.get("height") == v.get("width"):
            return int(v["height"])
        if "shortest_edge" in v and len(v) == 1:
            return int(v["shortest_edge"])
    return None


# --------------------------------------------------------------------------------------------------
# Vision tower


class VisionTower(nn.Module):
    """Frames in [0, 1] -> patch tokens [B, N, D] (normalisation, resizing and token selection inside).

    `projector` (the checkpoint's pretrained multimodal projector, LLaVA-OneVision only) is kept
    OUTSIDE this module's parameters: freezing or saving the tower does not touch it; the model
    that uses it registers it itself.
    """

    def __init__(self, model: nn.Module, *, kind: str, image_size: int, patch_size: int, hidden_size: int,
                 mean: tuple, std: tuple, num_prefix_tokens: int = 0, feature_layer: int | list[int] | None = None,
                 select_strategy: str = "full", projector: nn.Module | None = None, source: str = ""):
        super().__init__()
        self.model = model
        self.kind = kind
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.hidden_size = int(hidden_size)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.feature_layer = list(feature_layer) if isinstance(feature_layer, (list, tuple)) else feature_layer
        self.select_strategy = select_strategy
        self.source = source  # "" = tiny random init, else the `pretrained` value
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        object.__setattr__(self, "projector", projector)

    @property
    def grid(self) -> tuple[int, int]:
        g = self.image_size // self.patch_size
        return g, g

    @property
    def num_tokens(self) -> int:
        gh, gw = self.grid
        return gh * gw

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, image_size={self.image_size}, patch_size={self.patch_size}, "
                f"hidden_size={self.hidden_size}, grid={self.grid}, source={self.source or 'tiny random init'!r}")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"expected pixel_values [B, 3, H, W], got {tuple(pixel_values.shape)}")
        x = pixel_values.to(self.pixel_mean.dtype)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = (x - self.pixel_mean) / self.pixel_std
        param = next(self.model.parameters(), None)
        if param is not None:
            x = x.to(param.dtype)
        if self.feature_layer is None:
            tokens = self.model(pixel_values=x).last_hidden_state
        else:
            hidden = self.model(pixel_values=x, output_hidden_states=True).hidden_states
            if isinstance(self.feature_layer, list):
                tokens = torch.cat([hidden[i] for i in self.feature_layer], dim=-1)
            else:
                tokens = hidden[self.feature_layer]
            if self.select_strategy == "default":  # LLaVA: drop the CLS token
                tokens = tokens[:, 1:]
        if self.num_prefix_tokens:
            tokens = tokens[:, self.num_prefix_tokens:]
        return tokens


def _tiny_siglip(cfg: Any) -> nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                                num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                                image_size=cfg.image_size, patch_size=cfg.patch_size)
    if hasattr(config, "vision_use_head"):
        config.vision_use_head = False  # the attention-pool head is unused: patch tokens only
    return SiglipVisionModel(config)


def _tiny_dinov2(cfg: Any) -> nn.Module:
    from transformers import Dinov2Config, Dinov2Model

    if cfg.intermediate_size % cfg.hidden_size:  # DINOv2 sizes its MLP with an integer mlp_ratio
        raise ConfigError(f"model.vision.intermediate_size = {cfg.intermediate_size} must be a multiple of "
                          f"model.vision.hidden_size = {cfg.hidden_size} for kind 'dinov2'")
    config = Dinov2Config(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                          num_attention_heads=cfg.num_heads, mlp_ratio=cfg.intermediate_size // cfg.hidden_size,
                          image_size=cfg.image_size, patch_size=cfg.patch_size)
    return Dinov2Model(config)


def _check_vision_cfg(cfg: Any) -> None:
    if cfg.kind not in VISION_KINDS:
        raise ConfigError(f"model.vision.kind = {cfg.kind!r} is not one of {', '.join(VISION_KINDS)}")
    if not cfg.pretrained and cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"model.vision.hidden_size = {cfg.hidden_size} must be divisible by "
                          f"model.vision.num_heads = {cfg.num_heads}")
    if not cfg.pretrained and cfg.image_size < cfg.patch_size:
        raise ConfigError(f"model.vision.image_size = {cfg.image_size} is smaller than "
                          f"model.vision.patch_size = {cfg.patch_size}")


def _llava_class(model_type: str):
    import transformers

    name = _LLAVA_CLASSES.get(model_type)
    if name is None or not hasattr(transformers, name):
        return None
    return getattr(transformers, name)


def _llava_parts(full: nn.Module) -> dict:
    """vision_tower / projector / language_model / lm_head, for the new (>=4.52, 5.x) or old layout."""
    inner = getattr(full, "model", None)
    if inner is not None and hasattr(inner, "vision_tower"):  # full.model.{vision_tower,...}, full.lm_head
        return {"vision_tower": inner.vision_tower, "projector": getattr(inner, "multi_modal_projector", None),
                "language_model": inner.language_model, "lm_head": full.lm_head}
    return {"vision_tower": full.vision_tower, "projector": getattr(full, "multi_modal_projector", None),
            "language_model": full.language_model, "lm_head": None}  # language_model is already a *ForCausalLM


# Inside `one_checkpoint_read()` a LLaVA checkpoint is read once and shared by the vision tower and
# the LM (both take their weights from the same full model; no copy).
_SHARED_LLAVA: dict | None = None


@contextmanager
def one_checkpoint_read():
    """Read each LLaVA-family checkpoint from disk once while building one model (tower + LM)."""
    global _SHARED_LLAVA
    outer = _SHARED_LLAVA
    if outer is None:
        _SHARED_LLAVA = {}
    try:
        yield
    finally:
        if outer is None:
            _SHARED_LLAVA = None
            gc.collect()  # the full model's parts nobody kept (e.g. the LM head's wrapper) go now


def _load_llava(cfg: Any, key: str, dtype: torch.dtype | None) -> nn.Module:
    if _SHARED_LLAVA is None:
        return _read_llava(cfg, key, dtype)
    ident = (str(cfg.pretrained), str(cfg.revision), str(dtype))
    if ident not in _SHARED_LLAVA:
        _SHARED_LLAVA[ident] = _read_llava(cfg, key, dtype)
    return _SHARED_LLAVA[ident]


def _read_llava(cfg: Any, key: str, dtype: torch.dtype | None) -> nn.Module:
    config = _load_config(cfg, key)
    cls = _llava_class(getattr(config, "model_type", ""))
    if cls is None:
        raise CheckpointError(f"{key} = {cfg.pretrained!r} is a {getattr(config, 'model_type', '?')!r} checkpoint, "
                              "not a LLaVA-OneVision one (expected model_type 'llava_onevision')")
    return _from_pretrained(cls, cfg, key, **_dtype_kw(dtype))


def _dtype_kw(dtype: torch.dtype | None) -> dict:
    if dtype is None:
        return {}
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}


def load_vision_tower(cfg: Any, *, dtype: torch.dtype | None = torch.float32) -> VisionTower:
    """`[model.vision]` -> VisionTower (pretrained weights, or tiny random init when `pretrained = ""`).

    For a pretrained tower the checkpoint's own geometry is used (image and patch size from its
    config; DINOv2 at its processor's crop size); the tiny fields of the recipe only shape the
    random-init model. Weights load in `dtype` (float32 by default; None = the checkpoint's).
    """
    _check_vision_cfg(cfg)
    key = "model.vision.pretrained"
    if not cfg.pretrained:
        if cfg.kind == "dinov2":
            model = _tiny_dinov2(cfg)
            return VisionTower(model, kind="dinov2", image_size=cfg.image_size, patch_size=cfg.patch_size,
                               hidden_size=cfg.hidden_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, num_prefix_tokens=1)
        # siglip, and llava_onevision without a checkpoint: its tower is SigLIP (no pretrained projector)
        model = _tiny_siglip(cfg)
        return VisionTower(model, kind=cfg.kind, image_size=cfg.image_size, patch_size=cfg.patch_size,
                           hidden_size=cfg.hidden_size, mean=SIGLIP_MEAN, std=SIGLIP_STD)

    if cfg.kind == "siglip":
        from transformers import SiglipVisionModel

        model = _from_pretrained(SiglipVisionModel, cfg, key, **_dtype_kw(dtype))
        proc = _preprocessor_config(cfg, key)  # after the weights: a missing checkpoint fails there first
        c = model.config
        mean, std = _norm_from(proc, SIGLIP_MEAN, SIGLIP_STD)
        return VisionTower(model, kind="siglip", image_size=c.image_size, patch_size=c.patch_size,
                           hidden_size=c.hidden_size, mean=mean, std=std, source=cfg.pretrained)

    if cfg.kind == "dinov2":
        config = _load_config(cfg, key)
        if getattr(config, "model_type", "") == "dinov2_with_registers":
            from transformers import Dinov2WithRegistersModel as cls

            prefix = 1 + int(getattr(config, "num_register_tokens", 0))
        else:
            from transformers import Dinov2Model as cls

            prefix = 1
        model = _from_pretrained(cls, cfg, key, **_dtype_kw(dtype))
        proc = _preprocessor_config(cfg, key)
        c = model.config
        mean, std = _norm_from(proc, IMAGENET_MEAN, IMAGENET_STD)
        size = _size_from(proc, "crop_size") or c.image_size  # DINOv2 interpolates its position embeddings
        return VisionTower(model, kind="dinov2", image_size=size, patch_size=c.patch_size, hidden_size=c.hidden_size,
                           mean=mean, std=std, num_prefix_tokens=prefix, source=cfg.pretrained)

    # llava_onevision: the tower (+ pretrained projector) of the multimodal checkpoint
    full = _load_llava(cfg, key, dtype)
    proc = _preprocessor_config(cfg, key)
    parts = _llava_parts(full)
    tower = parts["vision_tower"]
    vc = full.config.vision_config
    layer = getattr(full.config, "vision_feature_layer", -1)
    strategy = getattr(full.config, "vision_feature_select_strategy", "full")
    n_layers = len(layer) if isinstance(layer, (list, tuple)) else 1
    mean, std = _norm_from(proc, SIGLIP_MEAN, SIGLIP_STD)
    result = VisionTower(tower, kind="llava_onevision", image_size=vc.image_size, patch_size=vc.patch_size,
                         hidden_size=vc.hidden_size * n_layers, mean=mean, std=std, feature_layer=layer,
                         select_strategy=strategy, projector=parts["projector"], source=cfg.pretrained)
    # what is neither tower, projector nor LM (LLaVA-OneVision's image_newline), by its name in the full
    # model: `vlmem export --merge-lora` rebuilds the full checkpoint from the parts without reading it again
    parts_params = {id(q) for m in parts.values() if m is not None for q in m.parameters()}
    result.llava_rest = {n: q.detach() for n, q in full.named_parameters() if id(q) not in parts_params}
    del full, parts
    gc.collect()  # free the checkpoint's LM now, not at some later collection
    return result


# --------------------------------------------------------------------------------------------------
# Language model


@dataclass
class LMInfo:
    """Where the LM came from (for logs, run metadata and the export)."""

    source: str  # "tiny" | "pretrained" | "vision_checkpoint"
    pretrained: str
    revision: str
    model_type: str
    hidden_size: int
    vocab_size: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _tiny_qwen2(cfg: Any, vocab_size: int) -> nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if cfg.hidden_size % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
        raise ConfigError(f"model.lm: hidden_size ({cfg.hidden_size}) must be divisible by num_heads "
                          f"({cfg.num_heads}), and num_heads by num_kv_heads ({cfg.num_kv_heads})")
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                         intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
                         tie_word_embeddings=False)
    return Qwen2ForCausalLM(config)


def _lm_from_llava(full: nn.Module) -> nn.Module:
    """A standalone *ForCausalLM sharing the weights of the checkpoint's LM (no copy)."""
    parts = _llava_parts(full)
    if parts["lm_head"] is None:  # old layout: already a causal LM
        return parts["language_model"]
    from transformers import AutoModelForCausalLM

    body, head = parts["language_model"], parts["lm_head"]
    text_config = full.config.text_config
    try:
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            lm = AutoModelForCausalLM.from_config(text_config)
    except ImportError:  # pragma: no cover - accelerate is a dependency
        lm = AutoModelForCausalLM.from_config(text_config)
    tied = head.weight is body.get_input_embeddings().weight
    lm.model.load_state_dict(body.state_dict(), strict=True, assign=True)
    if tied:
        lm.lm_head.weight = lm.model.get_input_embeddings().weight
    else:
        lm.lm_head.load_state_dict(head.state_dict(), strict=True, assign=True)
    if getattr(full, "generation_config", None) is not None:
        lm.generation_config = full.generation_config
    return lm


def load_language_model(cfg: Any, vision_cfg: Any = None, *, vocab_size: int | None = None,
                        dtype: torch.dtype | None = torch.float32) -> tuple[nn.Module, LMInfo]:
    """`[model.lm]` -> (causal LM, LMInfo).

    * kind "qwen2", pretrained set: `AutoModelForCausalLM.from_pretrained` (a Qwen2ForCausalLM for Qwen2).
    * kind "qwen2", pretrained "": tiny random-init `Qwen2ForCausalLM`; `vocab_size` is required
      (pass `len(tokenizer)`), or build with any size and call `resize_for_tokenizer`.
    * kind "from_vision_checkpoint": the LM inside the LLaVA-OneVision checkpoint of `[model.vision]`
      (a tiny Qwen2 when that checkpoint is "" too).
    """
    if cfg.kind not in LM_KINDS:
        raise ConfigError(f"model.lm.kind = {cfg.kind!r} is not one of {', '.join(LM_KINDS)}")
    if cfg.kind == "from_vision_checkpoint":
        if vision_cfg is None or vision_cfg.kind != "llava_onevision":
            got = None if vision_cfg is None else vision_cfg.kind
            raise ConfigError(f"model.lm.kind = 'from_vision_checkpoint' needs model.vision.kind = "
                              f"'llava_onevision' (got {got!r})")
        if cfg.pretrained:
            raise ConfigError("model.lm.pretrained must be empty when model.lm.kind = 'from_vision_checkpoint' "
                              "(the LM comes from model.vision.pretrained)")
        if vision_cfg.pretrained:
            full = _load_llava(vision_cfg, "model.vision.pretrained", dtype)
            lm = _lm_from_llava(full)
            del full
            gc.collect()  # free the checkpoint's vision tower
            return lm, _info(lm, "vision_checkpoint", vision_cfg)

    if cfg.pretrained and cfg.kind == "qwen2":
        from transformers import AutoModelForCausalLM

        lm = _from_pretrained(AutoModelForCausalLM, cfg, "model.lm.pretrained", **_dtype_kw(dtype))
        return lm, _info(lm, "pretrained", cfg)

    if vocab_size is None:
        raise ValueError("a tiny random-init LM needs vocab_size (pass len(tokenizer))")
    lm = _tiny_qwen2(cfg, int(vocab_size))
    return lm, _info(lm, "tiny", cfg)


def _info(lm: nn.Module, source: str, cfg: Any) -> LMInfo:
    c = lm.config
    return LMInfo(source=source, pretrained=cfg.pretrained if source != "tiny" else "",
                  revision=cfg.revision if source != "tiny" else "", model_type=getattr(c, "model_type", ""),
                  hidden_size=int(lm.get_input_embeddings().embedding_dim),
                  vocab_size=int(lm.get_input_embeddings().num_embeddings))


def resize_for_tokenizer(lm: nn.Module, tokenizer: Any) -> nn.Module:
    """Grow the embedding table (never shrink: pretrained tables are often padded) and set the
    pad / bos / eos ids of the LM's config and generation config from the tokenizer."""
    n = len(tokenizer)
    if lm.get_input_embeddings().num_embeddings < n:
        lm.resize_token_embeddings(n)
    ids = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("pad", "bos", "eos")}
    for conf in (lm.config, getattr(lm, "generation_config", None)):
        if conf is None:
            continue
        for name, value in ids.items():
            if value is not None:
                setattr(conf, f"{name}_token_id", value)
    return lm


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) parameters are counted once."""
    trainable = total = 0
    for p in module.parameters():  # parameters() already yields a shared tensor once
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
