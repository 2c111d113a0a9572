"""The typed recipe: one section per component (DESIGN section 6).

Every section forbids unknown keys and is strictly typed (an int is accepted
where a float is expected, nothing else is coerced). Components are chosen from
small `Literal` enums, never by importing a dotted path. Keys and defaults are
documented in docs/recipes.md; keep the two in step.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
    # several prepared folders mixed in one run (docs/training.md "Dataset mixing"); [] = [root]
    roots: list[str] = []
    weights: list[float] = []  # sampling weight per entry of roots; [] = proportional to each folder's size
    train_split: str = "train"
    eval_split: str = "eval"  # held-out split for train.eval_every
    eval_root: str = ""  # folder of the held-out split for train.eval_every; "" = data.root
    frames: int = Field(16, ge=1, le=4096)  # frames sampled per video
    sampling: Literal["uniform", "stream"] = "uniform"
    question_types: list[str] = []  # [] = every type in the dataset
    max_samples: int = Field(0, ge=0)  # 0 = all rows of the split
    num_workers: int = Field(0, ge=0)  # DataLoader worker processes decoding samples; 0 = in the training process
    prefetch_factor: int = Field(2, ge=1)  # batches each worker decodes ahead (with num_workers > 0)


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
    # cached source: a folder of <scene>.pt / .safetensors, a list of folders searched in order, or a
    # template with {data_source} / {scene_name} (VLM-3R: "data/vlm3r/{data_source}/spatial_features")
    cached_dir: str | list[str] = ""
    dim: int = Field(64, ge=4)  # geometry token width


class FusionConfig(Section):
    position_injection: bool = True
    viewpoint_alignment: bool = True
    cross_attention: bool = True
    coordinate_gate: Literal["sigmoid", "scalar"] = "sigmoid"
    num_heads: int = Field(4, ge=1)


class MemoryConfig(Section):
    kind: Literal["dual", "working", "episodic", "titans", "larimar", "surprise", "none"] = "dual"
    output: Literal["residual", "memory"] = "residual"  # hand on H_t + M_t (default) or M_t
    num_heads: int = Field(4, ge=1)
    L_w: int = Field(8, ge=1)
    L_e: int = Field(32, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    episodic_stores: Literal["fused", "input"] = "fused"
    pool: int = Field(1, ge=1)  # run the memory on p x p pooled tokens of each frame (read-out spread back); 1 = off
    # dual: initial mean of the gate g (the working branch's share, M = g*M_w + (1-g)*M_e);
    # unset = PyTorch's default init (g ~ 1/2), docs/memory.md
    gate_init: float | None = Field(None, gt=0.0, lt=1.0)
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
    larimar_steps: int = Field(0, ge=0)  # pseudo-inverse refinement steps of the addressing (seed: 3)
    larimar_alpha: float = Field(1.0, gt=0.0, le=1.0)  # write adaptation rate; 1 = exact posterior (seed: 0.2)
    surprise_threshold: float = Field(0.25, ge=0.0)  # surprise memory: write when the prediction error exceeds it
    surprise_loss_weight: float = Field(0.1, ge=0.0)  # weight of its next-latent-frame prediction loss


class DecoderConfig(Section):
    # "lm" = the HF language model of [model.lm] (MemoryVLM); "plain" / "trm" = the small answer
    # decoders of vlmem/model/decoders.py (DecoderVLM; [model.lm] is then not built)
    kind: Literal["lm", "plain", "trm"] = "lm"
    hidden_size: int = Field(256, ge=8)
    num_layers: int = Field(2, ge=1)  # TRM's tiny network has 2; the plain recipes use 4
    num_heads: int = Field(4, ge=1)
    trm_n: int = Field(6, ge=1)  # latent updates per recursion
    trm_T: int = Field(3, ge=1)  # deep recursions, the first T-1 without gradients
    deep_supervision: int = Field(1, ge=1)  # supervision steps per sample (TRM paper: 16)
    halting: bool = False  # TRM's learned halting head (BCE on "answer correct")
    max_answer_tokens: int = Field(8, ge=1)  # answer tokens (incl. eos) trained and generated; TRM's answer slots
    resampler_latents: int = Field(0, ge=0)  # 0 = off; K = Perceiver resampler to K learned latents
    use_vision: bool = True  # false = no-vision ablation: the decoder sees the question only


class BitGenConfig(Section):
    # BitGen (model.kind = "bitgen", docs/models.md "BitGen"): frozen DINOv2 + LoRA, feature
    # compression, text embeddings, ITC (queue) + ITM (hard negatives), Larimar memory, LM head.
    # The memory KL weight is model.memory.larimar_kl_weight (0.1).
    lora_r: int = Field(16, ge=1)  # LoRA on the DINOv2 attention projections
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lora_targets: list[str] = ["query", "value"]  # transformers 5.x names them q_proj / v_proj: mapped
    lora_warmup_epochs: int = Field(1, ge=0)  # LoRA frozen for these epochs, then trained
    # tokens per frame into the memory: 0 = the DINOv2 CLS token; P (a square) = the patch grid pooled
    # to P tokens (the seed: 256, i.e. DINOv2-base's 16 x 16 patches at 224 px, [B,256,128])
    patch_tokens: int = Field(0, ge=0)
    compression_hidden: int = Field(384, ge=1)  # vision width -> hidden -> embed_dim
    compression_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    embed_dim: int = Field(128, ge=4)  # shared image / text / memory / LM width
    max_text_len: int = Field(512, ge=8)  # text position embeddings
    queue_size: int = Field(4096, ge=0)  # ITC feature queue; 0 = in-batch negatives only
    momentum: float = Field(0.995, ge=0.0, lt=1.0)  # EMA encoders filling the queue (ALBEF); 0 = none
    temperature: float = Field(0.5, gt=0.01, lt=1.0)  # ITC temperature at the start
    learn_temperature: bool = True
    itm_hidden: int = Field(256, ge=1)
    itm_queue_negatives: bool = False  # also draw ITM hard negatives from the ITC queue (docs: a shortcut)
    fusion_hidden: int = Field(256, ge=1)  # fusion MLP [text token; image] -> text token
    lm_layers: int = Field(3, ge=1)  # causal blocks of the LM head
    lm_heads: int = Field(4, ge=1)
    lm_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    itc_weight: float = Field(1.0, ge=0.0)
    itm_weight: float = Field(0.5, ge=0.0)
    text_weight: float = Field(0.0, ge=0.0)  # 0 = the LM head is not trained (the seed's weighting)


class ModelConfig(Section):
    kind: Literal["memory_vlm", "bitgen"] = "memory_vlm"  # bitgen: [model.bitgen], docs/models.md
    context_frames: int = Field(0, ge=0)  # recent frames whose tokens reach the LM; 0 = all
    projector: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu"
    pool: int = Field(1, ge=1)  # spatial pooling of each frame's token grid before the LM
    vision: VisionConfig = VisionConfig()
    lm: LMConfig = LMConfig()
    geometry: GeometryConfig = GeometryConfig()
    fusion: FusionConfig = FusionConfig()
    memory: MemoryConfig = MemoryConfig()
    decoder: DecoderConfig = DecoderConfig()
    bitgen: BitGenConfig = BitGenConfig()


class LoraConfig(Section):
    r: int = Field(128, ge=1)  # LoRA on the LM (phase 3)
    alpha: int = Field(256, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


Component = Literal["memory", "fusion", "projector", "lm_lora", "lm", "vision"]


class TrainConfig(Section):
    phase: Literal[0, 1, 2, 3] = 1
    init_from: str = ""  # a run folder or checkpoint folder to start from
    # load only the init_from weights that fit (a fusion stage the variant removes starts fresh)
    init_partial: bool = False
    trainable: list[Component] = []  # [] = the phase's default set (docs/training.md)
    lr: float = Field(1e-4, gt=0.0)  # memory parameters
    base_lr: float = Field(0.0, ge=0.0)  # projector / fusion / LM; 0 = same as lr
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    # AdamW (beta1, beta2); PyTorch's default. TRM's seed: [0.9, 0.95] (recipes/trm.toml)
    adam_betas: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = Field([0.9, 0.999], min_length=2, max_length=2)
    epochs: int = Field(1, ge=1)
    max_steps: int = Field(0, ge=0)  # > 0 overrides epochs
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(1, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    clip_norm: float = Field(1.0, ge=0.0)  # 0 = no clipping
    tbptt_frames: int = Field(0, ge=0)  # 0 = backprop through the whole video
    # "truncate": one loss + step per video, gradient cut every tbptt_frames frames; "per_chunk": a loss
    # and optimizer step per chunk, memory state carried detached (docs/training.md)
    tbptt_mode: Literal["truncate", "per_chunk"] = "truncate"
    cache_features: bool = False
    # "" = the feature cache lives in RAM for this run; a folder = on disk, shared by runs, ablation
    # variants and processes (docs/training.md "Feature cache"); fill it with `vlmem cache-features`
    feature_cache_dir: str = ""
    feature_cache_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # stored dtype on disk
    feature_cache_max_gb: float = Field(0.0, ge=0.0)  # size bound of the whole folder (LRU eviction); 0 = none
    save_every: int = Field(0, ge=0)  # steps between checkpoints; 0 = only at the end
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(0, ge=0)  # steps between held-out evaluations (data.eval_split); 0 = none
    eval_max_questions: int = Field(64, ge=1)  # questions per held-out evaluation (a fixed, seeded subset)
    aux_consistency_weight: float = Field(0.0, ge=0.0)  # 1 - cos(M_t, H_t), docs/training.md
    aux_utilisation_weight: float = Field(0.0, ge=0.0)  # dual-memory gate balance (mean g - 1/2)^2, docs/training.md
    memory_lora_r: int = Field(0, ge=0)  # LoRA rank on the memory attention; 0 = train it in full
    memory_lora_alpha: int = Field(128, ge=1)
    tracker: Literal["none", "tensorboard", "wandb"] = "none"
    lora: LoraConfig = LoraConfig()


class EvalConfig(Section):
    benchmark: Literal["vsibench", "vstibench", "qa", "stream"] = "vsibench"  # stream: vlmem eval stream
    frames: int = Field(0, ge=0)  # 0 = data.frames
    max_new_tokens: int = Field(16, ge=1)
    batch_size: int = Field(1, ge=1)
    split: str = "eval"
    max_samples: int = Field(0, ge=0)
    question_types: list[str] = []  # [] = every type of the benchmark present in the split


class AblateConfig(Section):
    # key path -> values; variants are the cartesian product, each trained + evaluated
    grid: dict[str, list[Any]] = {}
    # named variants: name -> {key path: value}; used instead of (or besides) the grid
    variants: dict[str, dict[str, Any]] = {}
    seeds: list[int] = [0]
    quick: dict[str, Any] = {}  # overrides applied to every variant with --quick
    # variants trained at once, each in its own process with cores // jobs threads (docs/ablation.md);
    # 1 = one after another in this process
    jobs: int = Field(1, ge=1)


class Recipe(Section):
    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    ablate: AblateConfig = AblateConfig()
