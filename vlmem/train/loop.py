"""`vlmem train`: one loop for every phase, memory design and world size.

Data order is a pure function of (seed, epoch), each process takes its slice of the
global batch, so a resumed run sees exactly the batches the uninterrupted run would,
and N processes with batch b see the same samples as one process with batch N*b.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import TextColumn
from rich.table import Table

from vlmem.data.dataset import QADataset, SampleSpec, collate, read_qa_table, select_rows
from vlmem.data.loader import StepBatches, batch_loader, next_batch
from vlmem.data.mixing import MixedDataset, MixSampler, training_roots, video_key
from vlmem.errors import UsageError
from vlmem.progress import is_main_process, progress_bar
from vlmem.recipe import Recipe, recipe_hash, write_lock
from vlmem.recipe.lock import read_lock_hash
from vlmem.train.checkpoint import (
    last_checkpoint,
    load_model_weights,
    resolve_model_dir,
    save_model_dir,
    write_checkpoint,
)
from vlmem.train.feature_cache import FeatureCache, make_feature_cache  # noqa: F401 (FeatureCache: re-export)
from vlmem.train.metrics import MetricsLog, memory_stats, plot_curves
from vlmem.train.params import (
    configure_trainable,
    frozen_encoder,
    make_optimizer,
    parameter_table,
    write_parameter_table,
)
from vlmem.train.resume import fingerprint, load_training_state, verify_training_state
from vlmem.train.tbptt import chunk_count, encode_video, per_chunk_step
from vlmem.train.validate import Validator

console = Console(stderr=True)


def run_dir_for(recipe: Recipe) -> Path:
    return Path(recipe.run.output_dir or f"runs/{recipe.run.name}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Plan:
    steps_per_epoch: int
    total_steps: int
    global_batch: int


def make_plan(recipe: Recipe, n_samples: int, world: int) -> Plan:
    t = recipe.train
    global_batch = t.batch_size * world
    micro_per_epoch = max(1, n_samples // global_batch)
    steps_per_epoch = max(1, micro_per_epoch // t.grad_accum)
    total = t.max_steps or steps_per_epoch * t.epochs
    return Plan(steps_per_epoch, total, global_batch)


def epoch_order(seed: int, epoch: int, n: int, needed: int) -> np.ndarray:
    """Shuffled sample indices of one epoch (wrapping when the data is smaller than a step)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    while len(order) < needed:
        order = np.concatenate([order, rng.permutation(n)])
    return order


def micro_batches(recipe: Recipe, plan: Plan, n: int, step: int, rank: int, sampler=None) -> list[list[int]]:
    """This process's sample indices for each micro-batch of optimizer step `step` (`sampler`: a
    MixSampler over several folders, data.roots)."""
    t = recipe.train
    per_step = plan.global_batch * t.grad_accum
    if sampler is not None:
        chunk = sampler.step_indices(step)
    else:
        epoch, in_epoch = divmod(step, plan.steps_per_epoch)
        order = epoch_order(recipe.run.seed, epoch, n, plan.steps_per_epoch * per_step)
        chunk = order[in_epoch * per_step:(in_epoch + 1) * per_step]
    out = []
    for k in range(t.grad_accum):
        micro = chunk[k * plan.global_batch:(k + 1) * plan.global_batch]
        out.append(micro[rank * t.batch_size:(rank + 1) * t.batch_size].tolist())
    return out


def _validate_run_dir(run_dir: Path, recipe: Recipe, resume: bool) -> Path | None:
    ckpt = last_checkpoint(run_dir)
    if resume:
        if ckpt is None:
            raise UsageError(f"--resume: {run_dir} has no checkpoint yet (checkpoints/last missing): run without --resume")
        saved = read_lock_hash(run_dir)
        if saved and saved not in (recipe_hash(recipe), recipe_hash(recipe, legacy=True)):
            raise UsageError(f"--resume: {run_dir} was trained with another recipe (hash {saved}, this one "
                             f"{recipe_hash(recipe)}): resume with the run's own recipe (`vlmem train "
                             f"{run_dir / 'recipe.lock.toml'} --resume`), or pick a new run.name")
        # before any model is built: every file of the training state as saved, this process's RNG readable
        verify_training_state(ckpt / "training_state", int(os.environ.get("RANK", "0")))
        return ckpt
    if ckpt is not None:
        raise UsageError(f"{run_dir} already has checkpoints: pass --resume to continue it, or set run.name / "
                         "run.output_dir (e.g. --set run.name=other) for a new run")
    return None


def train(recipe: Recipe, resume: bool = False, dry_run: bool = False, overrides: tuple[str, ...] = (),
          all_videos: bool = False) -> Path:
    from vlmem.model.build import build_model, dataset_texts, load_tokenizer
    from vlmem.train.accelerator import make_accelerator

    run_dir = run_dir_for(recipe)
    t, m = recipe.train, recipe.model
    resume_from = None if dry_run else _validate_run_dir(run_dir, recipe, resume)
    init_dir = None
    if t.init_from and resume_from is None:
        init_dir = resolve_model_dir(Path(t.init_from))

    seed_everything(recipe.run.seed)
    acc = make_accelerator(recipe)
    roots = training_roots(recipe)
    all_rows = {root: read_qa_table(root) for root in roots}
    rows = {root: select_rows(all_rows[root], root / "qa.parquet", recipe.data.train_split, recipe.data.question_types,
                              recipe.data.max_samples) for root in roots}
    spec = SampleSpec.for_model(m, recipe.data.frames)
    saved_tok = (resume_from / "model") if resume_from else init_dir
    # a tiny model's tokenizer is built from all the datasets' text (vocabulary only), else loaded
    texts = [r for root in roots for r in all_rows[root]]
    if recipe.data.eval_root and t.eval_every:
        texts += read_qa_table(Path(recipe.data.eval_root))
    tokenizer = load_tokenizer(recipe, texts=dataset_texts(texts) if saved_tok is None else None, saved=saved_tok)
    if len(roots) == 1:
        dataset = QADataset(roots[0], rows[roots[0]], spec, tokenizer)
    else:
        dataset = MixedDataset([QADataset(root, rows[root], spec, tokenizer) for root in roots])
    dataset.validate(all_videos=all_videos)
    validator = Validator(recipe, tokenizer) if t.eval_every else None  # reads the held-out split up front

    model = build_model(recipe, tokenizer)
    if init_dir is not None:
        load_model_weights(model, init_dir, strict_keys=not t.init_partial, merge_memory_lora=True)
    components = configure_trainable(model, recipe)
    table = parameter_table(model)
    if dry_run or is_main_process():
        _print_parameters(table, recipe, components)
    if dry_run:
        return run_dir
    if not any(p.requires_grad for p in model.parameters()):
        raise UsageError(f"nothing to train: train.phase = {t.phase} with train.trainable = {list(t.trainable)}")

    plan = make_plan(recipe, len(dataset), acc.num_processes)
    sampler = None
    if isinstance(dataset, MixedDataset):
        sampler = MixSampler(recipe.run.seed, dataset.sizes, list(recipe.data.weights),
                             plan.global_batch * t.grad_accum)
    optimizer = make_optimizer(model, recipe)
    from transformers import get_cosine_schedule_with_warmup

    # per-chunk TBPTT steps the optimizer once per chunk: the schedule counts those steps
    per_step = chunk_count(recipe.data.frames, t.tbptt_frames) if t.tbptt_mode == "per_chunk" else 1
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(t.warmup_ratio * plan.total_steps * per_step),
                                                plan.total_steps * per_step)
    use_cache = t.cache_features and frozen_encoder(model, components)
    media_rows = [r for ds in getattr(dataset, "datasets", [dataset]) for r in ds.rows]
    cache = make_feature_cache(recipe, roots[0], spec, {video_key(r): r.get("dataset") for r in media_rows}) \
        if use_cache else None
    if cache is not None:  # a disk cache's key hashes the frozen weights: before any wrapping or sharding
        cache.bind(model)
    model, optimizer = acc.prepare(model, optimizer)
    core = acc.unwrap_model(model)

    start_step = 0
    rhash = recipe_hash(recipe)
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=acc.is_main_process)
    if resume_from is None:  # lines of an earlier attempt killed before its first checkpoint
        metrics.truncate_after(0)
    if t.tracker != "none":
        acc.project_configuration.set_directories(str(run_dir))
        acc.init_trackers(recipe.run.name, config={"recipe_hash": recipe_hash(recipe), "phase": t.phase})
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_lock(recipe, run_dir, acc.num_processes, overrides)
        tokenizer.save_pretrained(str(run_dir / "tokenizer"))
        write_parameter_table(run_dir, table)
    if resume_from is not None:
        state = load_training_state(acc, resume_from / "training_state")  # exact, or a clear refusal
        start_step = int(state["step"])
        with warnings.catch_warnings():  # replaying before any optimizer.step() is intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start_step * per_step):  # the schedule is a pure function of the step: replay it
                scheduler.step()
        metrics.truncate_after(start_step)
        if acc.is_main_process:
            console.print(f"resumed {run_dir} at step {start_step}")
    acc.wait_for_everyone()

    def save(step: int) -> None:
        acc.wait_for_everyone()
        # accelerate's save_state must run on every process; the model/ folder only on the main one.
        tmp_state = run_dir / "checkpoints" / f".state-{step:06d}"
        acc.save_state(str(tmp_state))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp_state / "trainer_state.json").write_text(json.dumps({"step": step, "recipe_hash": rhash,
                                                                      "files": fingerprint(tmp_state)}))

            def write_model(path):
                save_model_dir(path, acc.unwrap_model(model), recipe, components, tokenizer, rhash, step)

            write_checkpoint(run_dir, step, write_model, lambda path: tmp_state.rename(path), keep=t.keep_checkpoints)
        acc.wait_for_everyone()

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def load(indices: list[int], media: bool = True) -> dict:
        """A batch of these samples; the time it takes counts as waiting for data."""
        start = time.perf_counter()
        batch = collate([dataset.sample(i, media) for i in indices], pad_id=pad_id)
        window["wait"] += time.perf_counter() - start
        return batch

    rank = acc.process_index

    def step_micro(step: int) -> list[list[int]]:
        return micro_batches(recipe, plan, len(dataset), step, rank, sampler)

    # decoded by data.num_workers processes ahead of the model, in the order step_micro gives
    loader = batch_loader(dataset, StepBatches(step_micro, start_step, plan.total_steps, t.grad_accum),
                          media=cache is None, pad_id=pad_id, num_workers=recipe.data.num_workers,
                          prefetch_factor=recipe.data.prefetch_factor)
    batches = iter(loader)

    def fetch(indices: list[int]) -> dict:
        """The loader's next batch (it must be `indices`); the time it takes counts as waiting for data."""
        start = time.perf_counter()
        batch = next_batch(batches, acc.device)
        window["wait"] += time.perf_counter() - start
        assert batch["indices"] == indices, "data loader out of step with the sampler"
        return batch

    model.train()
    # after model.train(), which would switch them back: frozen encoders run without dropout, so their
    # tokens are a pure function of the weights (what the feature cache stores, and `cache-features` computes)
    for name in ("vision", "fusion", "geometry_encoder"):  # frozen encoders: no dropout, no grad bookkeeping
        module = getattr(core, name, None)
        if module is not None and not any(p.requires_grad for p in module.parameters()):
            module.eval()
    window = _new_window()
    last_grad_norm = float("nan")
    with progress_bar(TextColumn("loss {task.fields[loss]}")) as progress:
        task = progress.add_task(f"train phase {t.phase}", total=plan.total_steps, completed=start_step, loss="-")
        for step in range(start_step, plan.total_steps):
            step_start = time.perf_counter()
            # optional per-step schedule of the model (e.g. BitGen's LoRA warm-up freeze); a pure
            # function of the step, so a resumed run re-enters the same state
            schedule = getattr(core, "training_schedule", None)
            message = schedule(step, plan.steps_per_epoch) if schedule else None
            if message and acc.is_main_process:
                console.print(message)
            done = step + 1
            log_now = done % t.log_every == 0 or done == plan.total_steps
            micro = step_micro(step)
            for k, indices in enumerate(micro):
                # with the feature cache, frames and geometry are decoded only for the videos it lacks
                batch = fetch(indices)
                if t.tbptt_mode == "per_chunk":  # a loss and an optimizer step per chunk (vlmem/train/tbptt.py)
                    tokens = cache.tokens(core, batch, lambda rows, ix=indices: load([ix[r] for r in rows])) if cache \
                        else encode_video(core, batch) if frozen_encoder(core, components) else None
                    chunked = per_chunk_step(acc, model, core, optimizer, scheduler, batch, tokens, t,
                                             return_info=log_now and k == len(micro) - 1)
                    mem_info, aux, last_grad_norm = chunked.info, chunked.aux, chunked.grad_norm
                    for name, value in chunked.metrics.items():
                        window["extra"][name] = window["extra"].get(name, 0.0) + value
                    window["loss"] += chunked.loss
                    window["n"] += 1
                    window["tokens"] += int((batch["labels"] != -100).sum()) * acc.num_processes * chunked.chunks
                    window["samples"] += len(indices) * acc.num_processes
                    continue
                with acc.accumulate(model):
                    tokens = None
                    if cache:
                        tokens = cache.tokens(core, batch, lambda rows, ix=indices: load([ix[r] for r in rows]))
                    loss, _, mem_state, mem_info = model(
                        frames=batch.get("frames"), input_ids=batch["input_ids"],
                        attention_mask=batch["attention_mask"],
                        labels=batch["labels"], geometry=batch.get("geometry"), tokens=tokens,
                        tbptt_frames=t.tbptt_frames, return_info=log_now and k == len(micro) - 1,
                        consistency=t.aux_consistency_weight > 0)
                    # Weight by answer tokens over all processes, so N processes x batch b give exactly
                    # the gradient of one process with batch N*b (DDP averages the per-process grads).
                    n_local = (batch["labels"] != -100).sum().to(loss.dtype)
                    n_global = acc.reduce(n_local.detach().clone(), "sum").clamp_min(1)
                    loss_sum = loss * n_local
                    aux = dict(core.memory.aux_losses(mem_state))  # already weighted by the recipe (Larimar KL)
                    aux.update(mem_info.pop("losses", {}))  # model-specific weighted losses (e.g. BitGen ITC/ITM)
                    for name, value in mem_info.pop("metrics", {}).items():
                        window["extra"][name] = window["extra"].get(name, 0.0) + float(value)
                    if t.aux_consistency_weight:
                        aux["consistency"] = t.aux_consistency_weight * mem_info.pop("consistency")
                    if t.aux_utilisation_weight:
                        aux["utilisation"] = t.aux_utilisation_weight * core.memory.gate_balance_loss(mem_state)
                    total = loss_sum * acc.num_processes / n_global + (sum(aux.values()) if aux else 0)
                    acc.backward(total)
                    if acc.sync_gradients:
                        if t.clip_norm > 0:
                            last_grad_norm = float(acc.clip_grad_norm_(model.parameters(), t.clip_norm))
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                window["loss"] += float(acc.reduce(loss_sum.detach(), "sum") / n_global)
                window["n"] += 1
                window["tokens"] += int((batch["labels"] != -100).sum()) * acc.num_processes
                window["samples"] += len(indices) * acc.num_processes
            window["time"] += time.perf_counter() - step_start
            held_out = {}
            if validator is not None and (done % t.eval_every == 0 or done == plan.total_steps):
                held_out = validator.run(acc, core)  # main process only; the others wait
                if held_out and not log_now:
                    metrics.log({"step": done, **held_out})
                    if t.tracker != "none":
                        acc.log(held_out, step=done)
            if log_now:
                record = {"step": done, "epoch": step // plan.steps_per_epoch, "loss": window["loss"] / window["n"],
                          "lr": scheduler.get_last_lr()[0], "grad_norm": last_grad_norm,
                          "tokens_per_s": window["tokens"] / window["time"],
                          "samples_per_s": window["samples"] / window["time"],
                          "data_wait_frac": window["wait"] / window["time"], "seconds": window["time"],
                          **memory_stats(mem_info, recipe.model.memory),
                          **{f"loss/{name}": float(v.detach()) for name, v in aux.items()},
                          **{name: v / window["n"] for name, v in window["extra"].items()}, **held_out}
                if cache:
                    record["feature_cache_hits"] = cache.hits
                metrics.log(record)
                if t.tracker != "none":
                    acc.log({k: v for k, v in record.items() if k != "step"}, step=done)
                progress.update(task, loss=f"{record['loss']:.4f}")
                window = _new_window()
            progress.update(task, completed=done)
            if (t.save_every and done % t.save_every == 0) or done == plan.total_steps:
                save(done)
    if acc.is_main_process:
        plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")
        console.print(f"trained {plan.total_steps} steps -> {run_dir} (checkpoints/last, metrics.jsonl, curves.png)")
    acc.end_training()
    return run_dir


def _new_window() -> dict:
    """Sums over the steps since the last metrics line."""
    return {"loss": 0.0, "n": 0, "tokens": 0, "wait": 0.0, "time": 0.0, "samples": 0, "extra": {}}


def _print_parameters(table, recipe: Recipe, components: set[str]) -> None:
    out = Table("component", "trainable", "total", title=f"phase {recipe.train.phase}: training {sorted(components)}")
    for name, trainable, total in table:
        out.add_row(name, f"{trainable:,}", f"{total:,}")
    out.add_row("all", f"{sum(r[1] for r in table):,}", f"{sum(r[2] for r in table):,}", style="bold")
    console.print(out)
