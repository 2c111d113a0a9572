"""Answer a dataset split with a trained model (greedy), then score it like the official scorer."""

from __future__ import annotations

from pathlib import Path

import torch

from vlmem.data.dataset import QADataset, SampleSpec, build_prompt, collate, read_qa_table, tokenize
from vlmem.progress import progress_bar


def predict(model, tokenizer, recipe, data_root: Path, split: str, frames: int, max_new_tokens: int = 16,
            batch_size: int = 1, max_samples: int = 0, question_types=()) -> list[dict]:
    """One record per question: id, question_type, ground_truth, prediction, options, dataset, num_frames, duration."""
    rows = read_qa_table(Path(data_root), split, question_types, max_samples)
    m = recipe.model
    spec = SampleSpec(frames=frames, image_size=m.vision.image_size, geometry=m.geometry.source,
                      cached_dir=m.geometry.cached_dir)
    dataset = QADataset(Path(data_root), rows, spec, tokenizer=None)
    dataset.validate()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    records = []
    with progress_bar() as progress, torch.no_grad():
        task = progress.add_task(f"eval {split}", total=len(rows))
        for start in range(0, len(rows), batch_size):
            samples = []
            for i in range(start, min(start + batch_size, len(rows))):
                s = dataset[i]
                s.update(tokenize(tokenizer, build_prompt(s["row"]), None))
                samples.append(s)
            batch = collate(samples, pad_id=pad_id, padding_side="left")
            new = model.generate(batch["frames"], batch["input_ids"], batch["attention_mask"],
                                 geometry=batch.get("geometry"), max_new_tokens=max_new_tokens,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=pad_id)
            for row, ids in zip(batch["rows"], new, strict=True):
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                records.append({"id": row["id"], "question_type": row["question_type"],
                                "ground_truth": row["ground_truth"], "prediction": text,
                                "options": list(row["options"]) if row.get("options") is not None else None,
                                "dataset": row.get("dataset"), "scene_name": row.get("scene_name"),
                                "num_frames": row.get("num_frames"), "duration": row.get("duration")})
            progress.advance(task, len(samples))
    return records


def evaluate_run(run: Path, benchmark: str, data: Path | None = None, frames: int = 0, out: Path | None = None,
                 max_samples: int = 0, split: str | None = None, console=None) -> dict:
    """`vlmem eval <benchmark> --run RUN`: generate, score, write <out>/<benchmark>.{json,md}."""
    from vlmem.eval.report import print_report, scorer_for, write_report
    from vlmem.runs import load_trained

    recipe, model, tokenizer = load_trained(run)
    data_root = Path(data or recipe.data.root)
    n_frames = frames or recipe.eval.frames or recipe.data.frames
    types: tuple[str, ...] = ()
    if benchmark in ("vsibench", "vstibench"):  # a dataset may mix both families: answer only this one's types
        import importlib

        spec = importlib.import_module(f"vlmem.eval.{benchmark}")
        types = (*spec.MCA_QUESTION_TYPES, *spec.NA_QUESTION_TYPES)
    records = predict(model, tokenizer, recipe, data_root, split or recipe.eval.split, n_frames,
                      recipe.eval.max_new_tokens, recipe.eval.batch_size, max_samples or recipe.eval.max_samples,
                      question_types=types)
    score, _ = scorer_for(benchmark)
    result = score(records)
    result.update({"run": str(run), "data": str(data_root), "frames": n_frames})
    out_dir = Path(out) if out else Path(run) / "eval"
    files = write_report(result, out_dir, benchmark)
    result["report_files"] = {k: str(v) for k, v in files.items()}
    if console is not None:
        print_report(result, console)
    return result
