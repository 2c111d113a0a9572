"""Recipe -> (MemoryVLM, tokenizer). The only place that knows how the parts fit together."""

from __future__ import annotations

from pathlib import Path

import torch

from vlmem.model.vlm import MemoryVLM
from vlmem.recipe.schema import Recipe


def load_tokenizer(recipe: Recipe, texts=None, saved: Path | None = None):
    """A saved tokenizer (run / checkpoint / export), the checkpoint's own, or one built from the dataset text."""
    from vlmem.model.tokenizer import build_local_tokenizer, load_pretrained_tokenizer, load_saved_tokenizer

    if saved is not None and (Path(saved) / "tokenizer").is_dir():
        return load_saved_tokenizer(Path(saved) / "tokenizer")
    m = recipe.model
    source = m.lm.pretrained or (m.vision.pretrained if m.lm.kind == "from_vision_checkpoint" else "")
    if source:
        cfg, key = (m.lm, "model.lm.pretrained") if m.lm.pretrained else (m.vision, "model.vision.pretrained")
        return load_pretrained_tokenizer(source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, key=key)
    if texts is None:
        raise ValueError("a tiny model needs the dataset text to build its tokenizer")
    return build_local_tokenizer(texts)


def build_model(recipe: Recipe, tokenizer) -> MemoryVLM:
    """Backbones (pretrained or tiny random-init, seeded) + fusion + memory + projector.

    `model.decoder.kind` "plain" / "trm" builds a `DecoderVLM` (a MemoryVLM subclass) whose answer
    decoder replaces the HF LM; its vocabulary is `len(tokenizer)`."""
    from vlmem.model.backbones import one_checkpoint_read

    with one_checkpoint_read():  # a LLaVA checkpoint gives both the tower and the LM: read it once
        return _build_model(recipe, tokenizer)


def _build_model(recipe: Recipe, tokenizer) -> MemoryVLM:
    from vlmem.model.backbones import load_language_model, load_vision_tower, resize_for_tokenizer

    torch.manual_seed(recipe.run.seed)
    vision = load_vision_tower(recipe.model.vision)
    if recipe.model.kind == "bitgen":  # DINOv2 + LoRA with its own text side and LM head ([model.lm] not built)
        from vlmem.model.bitgen import build_bitgen

        return build_bitgen(recipe, vision, tokenizer)
    if recipe.model.decoder.kind != "lm":  # plain / TRM decoder: [model.lm] is not built
        from vlmem.model.decoder_vlm import build_decoder_vlm

        return build_decoder_vlm(recipe, vision, tokenizer)
    lm, _ = load_language_model(recipe.model.lm, recipe.model.vision, vocab_size=len(tokenizer))
    if lm.get_input_embeddings().num_embeddings < len(tokenizer):
        raise_vocab_mismatch(recipe, lm, tokenizer)
    resize_for_tokenizer(lm, tokenizer)  # pad / bos / eos ids into the LM's (generation) config
    projector = getattr(vision, "projector", None)
    model = MemoryVLM(recipe.model, vision, lm, projector=projector)
    if recipe.train.gradient_checkpointing and hasattr(lm, "gradient_checkpointing_enable"):
        lm.gradient_checkpointing_enable()
    return model


def raise_vocab_mismatch(recipe: Recipe, lm, tokenizer) -> None:
    from vlmem.errors import ConfigError

    raise ConfigError(f"tokenizer has {len(tokenizer)} tokens but the LM's embedding table has "
                      f"{lm.get_input_embeddings().num_embeddings} (model.lm.pretrained = {recipe.model.lm.pretrained!r}): "
                      "use the tokenizer of the same checkpoint")


def dataset_texts(rows: list[dict]) -> list[str]:
    from vlmem.data.dataset import build_prompt

    return [build_prompt(r) for r in rows] + [str(r["ground_truth"]) for r in rows]
