"""Answer a dataset split with a trained model (greedy), then score it like the official scorer."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from vlmem.data.dataset import QADataset, SampleSpec, build_prompt, collate, read_qa_table, tokenize
from vlmem.errors import DataError
from vlmem.progress import progress_bar


def predict(model, tokenizer, recipe, data_root: Path, split: str, frames: int, max_new_tokens: int = 16,
            batch_size: int = 1, max_samples: int = 0, question_types=(), rows: list[dict] | None = None) -> list[dict]:
    """One record per question: id, question_type, ground_truth, prediction, options, dataset, num_frames, duration.
    `rows`: these rows of `data_root` instead of reading the split (training's held-out subset)."""
    if rows is None:
        rows = read_qa_table(Path(data_root), split, question_types, max_samples)
    m = recipe.model
    spec = SampleSpec.for_model(m, frames)
    dataset = QADataset(Path(data_root), rows, spec, tokenizer=None)
    dataset.validate()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    records = []
    params = inspect.signature(model.generate).parameters
    takes_tokens = "tokens" in params and hasattr(model, "encode_frames")
    takes_readout = takes_tokens and "readout" in params and hasattr(model, "memory_readout")
    with progress_bar() as progress, torch.no_grad():
        task = progress.add_task(f"eval {split}", total=len(rows))
        for start in range(0, len(rows), batch_size):
            samples = []
            for i in range(start, min(start + batch_size, len(rows))):
                s = dataset[i]
                s.update(tokenize(tokenizer, build_prompt(s["row"]), None))
                samples.append(s)
            batch = collate(samples, pad_id=pad_id, padding_side="left")
            if takes_readout:  # encode and scan once per distinct video, not once per question
                extra = _context_once_per_video(model, batch)
            else:
                extra = {"tokens": _encode_once_per_video(model, batch)} if takes_tokens else {}
            new = model.generate(batch["frames"], batch["input_ids"], batch["attention_mask"],
                                 geometry=batch.get("geometry"), max_new_tokens=max_new_tokens,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=pad_id, **extra)
            for row, ids in zip(batch["rows"], new, strict=True):
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                records.append({"id": row["id"], "question_type": row["question_type"],
                                "ground_truth": row["ground_truth"], "prediction": text,
                                "options": list(row["options"]) if row.get("options") is not None else None,
                                "dataset": row.get("dataset"), "scene_name": row.get("scene_name"),
                                "num_frames": row.get("num_frames"), "duration": row.get("duration"),
                                "pruned": row.get("pruned")})
            progress.advance(task, len(samples))
    return records


def retrieval(model, tokenizer, recipe, data_root: Path, split: str, frames: int, batch_size: int,
              max_samples: int = 0, question_types=(), seed: int = 0) -> dict:
    """Image-text retrieval and matching on a split, for models with `retrieval_metrics` (BitGen).

    Text = prompt + answer. Rows are shuffled with `seed` (a split lists each video's questions
    together) and cut into batches of `batch_size`; metrics are in-batch, rows showing the same video
    count as positives, and a batch of one row is skipped. Fractions in [0, 1], averaged over rows;
    `chance` is the accuracy of a random pick."""
    import numpy as np

    rows = read_qa_table(Path(data_root), split, question_types, max_samples)
    rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    m = recipe.model
    spec = SampleSpec.for_model(m, frames)
    dataset = QADataset(Path(data_root), rows, spec, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    generator = torch.Generator().manual_seed(seed)  # ITM negatives
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for start in range(0, len(rows) - 1, batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(rows)))]
        if len(samples) < 2:
            continue
        batch = collate(samples, pad_id=pad_id)
        for k, v in model.retrieval_metrics(batch["frames"], batch["input_ids"], batch["attention_mask"],
                                            generator=generator).items():
            sums[k] = sums.get(k, 0.0) + v * len(samples)
            counts[k] = counts.get(k, 0) + len(samples)
    out: dict = {k: sums[k] / counts[k] for k in sums}
    out.update(batch_size=batch_size, samples=max(counts.values(), default=0), split=split,
               note="in-batch, rows of the same video are positives; fractions in [0, 1]")
    return out


def _encode_once_per_video(model, batch: dict) -> torch.Tensor:
    """Vision + fusion tokens for a batch, once per distinct video (a video's questions are
    consecutive in qa.parquet, so a batch usually holds several questions of one video)."""
    from vlmem.model.vlm import encode_once_per_video

    return encode_once_per_video(model, batch["frames"], batch.get("geometry"), [r["video"] for r in batch["rows"]])


def _context_once_per_video(model, batch: dict) -> dict:
    """`tokens` and the memory `readout` for a batch, each computed once per distinct video."""
    from vlmem.model.vlm import context_once_per_video

    return context_once_per_video(model, batch["frames"], batch.get("geometry"), [r["video"] for r in batch["rows"]])


def benchmark_question_types(benchmark: str, recipe) -> tuple[str, ...]:
    """The question types `vlmem eval <benchmark>` answers (() = every type of the split)."""
    types: tuple[str, ...] = ()
    if benchmark in ("vsibench", "vstibench"):  # a dataset may mix both families: answer only this one's types
        import importlib

        spec = importlib.import_module(f"vlmem.eval.{benchmark}")
        types = (*spec.MCA_QUESTION_TYPES, *spec.NA_QUESTION_TYPES)
    if recipe.eval.question_types:  # the recipe narrows the evaluated families (e.g. what it trained on)
        wanted = tuple(recipe.eval.question_types)
        types = tuple(t for t in types if t in wanted) if types else wanted
    return types


def check_eval_data(recipe, data_root: Path, split: str, frames: int, question_types=(), max_samples: int = 0) -> int:
    """The questions to answer exist and every video has what the model needs (cached geometry, with points
    for position injection; sensor geometry), checked before the model loads: a run that needs geometry the
    benchmark lacks fails here, naming the key to set. Returns the number of questions."""
    rows = read_qa_table(Path(data_root), split, question_types, max_samples)
    dataset = QADataset(Path(data_root), rows, SampleSpec.for_model(recipe.model, frames), tokenizer=None)
    geo = recipe.model.geometry
    try:
        dataset.validate()
    except DataError as exc:
        if geo.source == "sensor":
            hint = ("this run was trained with model.geometry.source = 'sensor' (depth + poses); the benchmark "
                    f"{data_root} has no geometry/<scene>.safetensors for its videos. Sensor geometry is for "
                    "ScanNet/ARKitScenes-style data: evaluate on such a dataset (--data / --set data.root=...)")
        elif geo.source == "cached":
            hint = ("this run fuses cached 3D-encoder features: compute them for the benchmark's videos "
                    "(docs/real-data.md) and point the run at them with --set model.geometry.cached_dir=DIR "
                    "(a folder, or a template such as DIR/{data_source})")
        else:
            hint = "check --data / --set data.root=..."
        raise DataError(f"{exc}\n{hint}") from None
    return len(rows)


def evaluate_run(run: Path, benchmark: str, data: Path | None = None, frames: int = 0, out: Path | None = None,
                 max_samples: int = 0, split: str | None = None, console=None, overrides=()) -> dict:
    """`vlmem eval <benchmark> --run RUN [--set key=value ...]`: generate, score, write <out>/<benchmark>.{json,md}."""
    if benchmark == "stream":  # long-horizon streams answer at query times: one scan per stream (eval/stream.py)
        from vlmem.eval.stream import evaluate_stream

        return evaluate_stream(run, data=data, out=out, split=split, max_streams=max_samples, console=console,
                               overrides=overrides)
    from vlmem.eval.report import print_report, scorer_for, write_report
    from vlmem.runs import load_run_recipe, load_trained

    recipe = load_run_recipe(run, overrides)
    data_root = Path(data or recipe.data.root)
    n_frames = frames or recipe.eval.frames or recipe.data.frames
    types = benchmark_question_types(benchmark, recipe)
    check_eval_data(recipe, data_root, split or recipe.eval.split, n_frames, types,
                    max_samples or recipe.eval.max_samples)
    recipe, model, tokenizer = load_trained(run, overrides=overrides)
    records = predict(model, tokenizer, recipe, data_root, split or recipe.eval.split, n_frames,
                      recipe.eval.max_new_tokens, recipe.eval.batch_size, max_samples or recipe.eval.max_samples,
                      question_types=types)
    from vlmem.eval.baselines import baselines_for

    score, _ = scorer_for(benchmark)
    result = score(records)
    result.update({"run": str(run), "data": str(data_root), "frames": n_frames})
    result["baselines"] = baselines_for(benchmark, records, recipe)
    if hasattr(model, "retrieval_metrics"):  # contrastive models (BitGen): in-batch retrieval / matching
        result["retrieval"] = retrieval(model, tokenizer, recipe, data_root, split or recipe.eval.split, n_frames,
                                        max(2, recipe.eval.batch_size), max_samples or recipe.eval.max_samples,
                                        question_types=types or tuple(recipe.data.question_types))
    out_dir = Path(out) if out else Path(run) / "eval"
    files = write_report(result, out_dir, benchmark)
    result["report_files"] = {k: str(v) for k, v in files.items()}
    if console is not None:
        print_report(result, console)
    return result
