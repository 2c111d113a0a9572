"""The typed recipe: one section per component (DESIGN section 6).

Every section forbids unknown keys and is strictly typed (an int is accepted
where a float is expected, nothing else is coerced). Components are chosen from
small `Literal` enums, never by importing a dotted path. Keys and defaults are
documented in docs/recipes.md; keep the two in step.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class RunConfig(Section):
    name: str = "run"
    description: str = ""
    output_dir: str = ""  # "" -> runs/<name>
    seed: int = Field(0, ge=0)


class DataConfig(Section):
    root: str = "data/synth"  # a `vlmem prepare-data` folder
    train_split: str = "train"
    eval_split: str = "eval"
    frames: int = Field(16, ge=1, le=4096)  # frames sampled per video
    sampling: Literal["uniform", "stream"] = "uniform"
    question_types: list[str] = []  # [] = every type in the dataset
    max_samples: int = Field(0, ge=0)  # 0 = all rows of the split
    num_workers: int = Field(0, ge=0)


class VisionConfig(Section):
    kind: Literal["siglip", "dinov2", "llava_onevision"] = "siglip"
    pretrained: str = ""  # hub id or local folder; "" = tiny random-init model from the fields below
    revision: str = "main"
    trust_remote_code: bool = False
    freeze: bool = True
    image_size: int = Field(64, ge=8)
    patch_size: int = Field(8, ge=1)
    hidden_size: int = Field(64, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(128, ge=8)


class LMConfig(Section):
    kind: Literal["qwen2", "from_vision_checkpoint"] = "qwen2"
    pretrained: str = ""
    revision: str = "main"
    trust_remote_code: bool = False
    hidden_size: int = Field(64, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)
    max_position_embeddings: int = Field(4096, ge=64)


class GeometryConfig(Section):
    source: Literal["sensor", "cached", "none"] = "sensor"
    cached_dir: str = ""  # folder of <scene>.pt / <scene>.safetensors (cached source)
    dim: int = Field(64, ge=4)  # geometry token width


class FusionConfig(Section):
    position_injection: bool = True
    viewpoint_alignment: bool = True
    cross_attention: bool = True
    coordinate_gate: Literal["sigmoid", "scalar"] = "sigmoid"
    num_heads: int = Field(4, ge=1)


class MemoryConfig(Section):
    kind: Literal["dual", "working", "episodic", "titans", "larimar", "none"] = "dual"
    output: Literal["residual", "memory"] = "residual"  # hand on H_t + M_t (default) or M_t
    num_heads: int = Field(4, ge=1)
    L_w: int = Field(8, ge=1)
    L_e: int = Field(32, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    episodic_stores: Literal["fused", "input"] = "fused"
    use_salience_gate: bool = False
    salience_threshold: float = Field(0.5, ge=0.0, le=1.0)
    titans_heads: int = Field(4, ge=1)
    titans_update: Literal["simple", "titans"] = "simple"
    titans_decay: float = Field(0.95, gt=0.0, le=1.0)
    titans_momentum: float = Field(0.9, ge=0.0, lt=1.0)
    titans_lr: float = Field(0.1, gt=0.0)
    larimar_slots: int = Field(32, ge=1)
    larimar_noise: float = Field(0.1, gt=0.0)
    larimar_kl_weight: float = Field(0.1, ge=0.0)


class ModelConfig(Section):
    context_frames: int = Field(0, ge=0)  # recent frames whose tokens reach the LM; 0 = all
    projector: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu"
    pool: int = Field(1, ge=1)  # spatial pooling of each frame's token grid before the LM
    vision: VisionConfig = VisionConfig()
    lm: LMConfig = LMConfig()
    geometry: GeometryConfig = GeometryConfig()
    fusion: FusionConfig = FusionConfig()
    memory: MemoryConfig = MemoryConfig()


class LoraConfig(Section):
    r: int = Field(128, ge=1)  # LoRA on the LM (phase 3)
    alpha: int = Field(256, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


Component = Literal["memory", "fusion", "projector", "lm_lora", "lm", "vision"]


class TrainConfig(Section):
    phase: Literal[0, 1, 2, 3] = 1
    init_from: str = ""  # a run folder or checkpoint folder to start from
    trainable: list[Component] = []  # [] = the phase's default set (docs/training.md)
    lr: float = Field(1e-4, gt=0.0)  # memory parameters
    base_lr: float = Field(0.0, ge=0.0)  # projector / fusion / LM; 0 = same as lr
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    epochs: int = Field(1, ge=1)
    max_steps: int = Field(0, ge=0)  # > 0 overrides epochs
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(1, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    clip_norm: float = Field(1.0, ge=0.0)  # 0 = no clipping
    tbptt_frames: int = Field(0, ge=0)  # 0 = backprop through the whole video
    cache_features: bool = False
    save_every: int = Field(0, ge=0)  # steps between checkpoints; 0 = only at the end
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    aux_consistency_weight: float = Field(0.0, ge=0.0)  # 1 - cos(M_t, H_t), docs/training.md
    tracker: Literal["none", "tensorboard", "wandb"] = "none"
    lora: LoraConfig = LoraConfig()


class EvalConfig(Section):
    benchmark: Literal["vsibench", "vstibench", "qa"] = "vsibench"
    frames: int = Field(0, ge=0)  # 0 = data.frames
    max_new_tokens: int = Field(16, ge=1)
    batch_size: int = Field(1, ge=1)
    split: str = "eval"
    max_samples: int = Field(0, ge=0)


class AblateConfig(Section):
    # key path -> values; variants are the cartesian product, each trained + evaluated
    grid: dict[str, list[Any]] = {}
    # named variants: name -> {key path: value}; used instead of (or besides) the grid
    variants: dict[str, dict[str, Any]] = {}
    seeds: list[int] = [0]
    quick: dict[str, Any] = {}  # overrides applied to every variant with --quick


class Recipe(Section):
    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    ablate: AblateConfig = AblateConfig()
