"""Paper-shape device check: phase-1/2/3 training steps of VLM² at the paper's dimensions, random weights.

    python tests/benchmarks/bench_paper_shape.py                 # GPU: SigLIP-so400m shape, Qwen2-7B shape
    python tests/benchmarks/bench_paper_shape.py --lm 0.5b       # Qwen2-0.5B-shape LM
    python tests/benchmarks/bench_paper_shape.py --small         # the same code at CPU size (CI runs this)

Shapes (not weights) of the paper setting: SigLIP-so400m tower (width 1152, 27x27 = 729 patches of 14 px
at 384 px, 16 heads, MLP 4304), a Qwen2-7B-shape LM (width 3584, 28 heads / 4 KV heads, MLP 18944,
vocab 152064; or 0.5B: 896, 14 / 2, 4864, 151936) with few layers (--vision-layers, --lm-layers),
CUT3R cached features (camera token + 729 patch tokens of width 768, pointmaps), 32 frames, dual memory
L_w 8 / L_e 32, recipes/phase1-3.toml (memory LoRA r64 / LM LoRA r128), bf16 autocast, gradient
checkpointing. Per phase it prints the median step time, the peak memory (CUDA: max allocated; CPU: peak
RSS of the process) and the memory module's share (its parameters; the time and peak memory of its
forward + backward alone over the same tokens).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

LM_SHAPES = {  # hidden, heads, kv heads, MLP, vocab
    "0.5b": (896, 14, 2, 4864, 151936),
    "7b": (3584, 28, 4, 18944, 152064),
}


def shapes(args) -> dict:
    if args.small:
        return dict(vision=(64, 4, 128, 32, 8), lm=(64, 4, 2, 128, 256), geo=(16, 16, 8), frames=4, L=(2, 4),
                    prompt=16)
    # so400m-patch14-384 takes 384 px and its stride-14 convolution gives 27x27 patches; a random-init tower
    # is validated for image_size % patch_size == 0, so 378 = 27 * 14 px gives the same 27x27 grid
    return dict(vision=(1152, 16, 4304, 378, 14), lm=LM_SHAPES[args.lm], geo=(768, 729, 27), frames=args.frames,
                L=(8, 32), prompt=64)


def build(phase: int, s: dict, args):
    from vlmem.model.backbones import _tiny_qwen2, load_vision_tower
    from vlmem.model.vlm import MemoryVLM
    from vlmem.recipe import load_recipe

    recipes = Path(__file__).resolve().parents[2] / "recipes"
    vw, vh, vmlp, img, patch = s["vision"]
    hid, heads, kv, mlp, vocab = s["lm"]
    geo_dim = s["geo"][0]
    sets = ['model.vision.kind="siglip"', 'model.vision.pretrained=""', f"model.vision.hidden_size={vw}",
            f"model.vision.num_heads={vh}", f"model.vision.intermediate_size={vmlp}", f"model.vision.image_size={img}",
            f"model.vision.patch_size={patch}", f"model.vision.num_layers={args.vision_layers}",
            'model.lm.kind="qwen2"', f"model.lm.hidden_size={hid}", f"model.lm.num_heads={heads}",
            f"model.lm.num_kv_heads={kv}", f"model.lm.intermediate_size={mlp}", f"model.lm.num_layers={args.lm_layers}",
            f"model.geometry.dim={geo_dim}", f"data.frames={s['frames']}", f"model.memory.L_w={s['L'][0]}",
            f"model.memory.L_e={s['L'][1]}", 'train.init_from=""', "model.pool=1"]
    if args.small:
        sets += ["model.memory.num_heads=4", "model.fusion.num_heads=4", "train.memory_lora_r=4", "train.lora.r=4"]
    recipe = load_recipe(recipes / f"phase{phase}.toml", sets)
    if not args.small:  # the paper recipes' 2x2 pooling: 27x27 -> 13x13 tokens per frame for the LM, as with the
        recipe.model.pool = 2  # real checkpoint (validation asks a random-init tower for a divisor of its grid)
    torch.manual_seed(0)
    vision = load_vision_tower(recipe.model.vision)
    lm = _tiny_qwen2(recipe.model.lm, vocab)
    model = MemoryVLM(recipe.model, vision, lm)
    if recipe.train.gradient_checkpointing:
        lm.gradient_checkpointing_enable()
    return recipe, model


def batch(s: dict, device) -> dict:
    g = torch.Generator().manual_seed(0)
    vw, _, _, img, _ = s["vision"]
    geo_dim, patches, side = s["geo"]
    t, vocab, n = s["frames"], s["lm"][4], s["prompt"]
    ids = torch.randint(0, vocab, (1, n + 4), generator=g)
    labels = ids.clone()
    labels[:, :n] = -100
    depth = 1 + torch.rand(1, t, side, side, generator=g)
    pts = torch.stack([torch.randn(1, t, side, side, generator=g), torch.randn(1, t, side, side, generator=g), depth], -1)
    out = {"frames": torch.randint(0, 256, (1, t, 3, img, img), dtype=torch.uint8, generator=g),
           "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
           "geometry": {"camera_tokens": torch.randn(1, t, 1, geo_dim, generator=g).half(),
                        "patch_tokens": torch.randn(1, t, patches, geo_dim, generator=g).half(),
                        "points": pts, "points_valid": torch.ones(1, t, side, side, dtype=torch.bool)}}
    return {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
            for k, v in out.items()}


class Meter:
    """Wall time (synchronised on CUDA) and peak memory (CUDA max allocated, or the process's peak RSS)."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return rss_kib / 1024


def run_phase(phase: int, s: dict, args, device) -> dict:
    from vlmem.train.params import configure_trainable, param_groups

    recipe, model = build(phase, s, args)
    configure_trainable(model, recipe)
    model.to(device)
    for name in ("vision", "fusion"):  # frozen encoders in eval mode, as in the training loop
        mod = getattr(model, name)
        if mod is not None and not any(p.requires_grad for p in mod.parameters()):
            mod.eval()
    opt = torch.optim.AdamW(param_groups(model, recipe))
    b = batch(s, device)
    meter = Meter(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.fp32)

    def step():
        with amp:
            loss = model(b["frames"], b["input_ids"], b["attention_mask"], b["labels"], geometry=b["geometry"])[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    step()  # warm-up (allocator, kernels)
    meter.sync()
    meter.reset_peak()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        meter.sync()
        times.append(time.perf_counter() - t0)
    peak = meter.peak_mib()
    # the memory module alone over the same tokens: forward + backward
    with torch.no_grad(), amp:
        tokens = model.encode_frames(b["frames"], b["geometry"])
    mem_params = [p for p in model.memory.parameters()]
    meter.sync()
    meter.reset_peak()
    base = torch.cuda.memory_allocated() / 2**20 if meter.cuda else 0.0
    mem_times = []
    for _ in range(max(1, args.steps)):
        t0 = time.perf_counter()
        with amp:
            m, _, _ = model.run_memory(tokens)
        if m.requires_grad:  # the memory trains in phases 1-3 (its LoRA, or all of it)
            m.float().mean().backward()
        meter.sync()
        mem_times.append(time.perf_counter() - t0)
    mem_peak = meter.peak_mib() - base if meter.cuda else None  # a process's peak RSS cannot be reset
    n_mem = sum(p.numel() for p in mem_params)
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"phase": phase, "step_s": statistics.median(times), "peak_mib": peak, "loss": loss.item(),
            "memory_s": statistics.median(mem_times), "memory_peak_mib": mem_peak, "memory_params": n_mem,
            "params": n_all, "trainable": n_train, "tokens": tuple(tokens.shape)}


def _mib(value) -> str:
    return "n/a on CPU" if value is None else f"{value:.0f} MiB"


def _share(part, whole) -> str:
    return "n/a" if part is None or not whole else f"{part / whole:.0%}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="CPU-size shapes (what CI runs)")
    ap.add_argument("--lm", choices=sorted(LM_SHAPES), default="7b")
    ap.add_argument("--lm-layers", type=int, default=2)
    ap.add_argument("--vision-layers", type=int, default=2)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--phases", default="1,2,3")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    s = shapes(args)
    print(f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"{'small' if args.small else 'paper'} shapes: vision {s['vision'][:1]} wide, {s['vision'][3] // s['vision'][4]}^2 "
          f"patches x {args.vision_layers} layers; LM {s['lm'][0]} wide x {args.lm_layers} layers, vocab {s['lm'][4]}; "
          f"{s['frames']} frames, L_w {s['L'][0]}, L_e {s['L'][1]}, {'fp32' if args.fp32 else 'bf16 autocast'}")
    for phase in (int(p) for p in args.phases.split(",")):
        r = run_phase(phase, s, args, device)
        print(f"phase {phase}: step {r['step_s']:.3f} s (median of {args.steps}), peak memory {r['peak_mib']:.0f} MiB, "
              f"trainable {r['trainable']:,} of {r['params']:,} params; memory module: {r['memory_params']:,} params "
              f"({r['memory_params'] / r['params']:.1%}), fwd+bwd alone {r['memory_s']:.3f} s "
              f"({r['memory_s'] / r['step_s']:.0%} of a step), peak {_mib(r['memory_peak_mib'])} "
              f"({_share(r['memory_peak_mib'], r['peak_mib'])} of the step's); tokens {r['tokens']}; "
              f"loss {r['loss']:.3f}")
        sys.stdout.flush()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
