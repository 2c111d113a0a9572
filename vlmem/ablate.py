"""`vlmem ablate`: a base recipe x a grid / named variants x seeds, each trained and evaluated.

runs/ablate/<name>/<variant>[/seed<k>]/   one ordinary run per variant (resumable)
runs/ablate/<name>/ablation.csv|.md|.png  the table (mean and spread over seeds, deltas vs the base row)

Finished variants (their eval report exists) are skipped, a variant with a checkpoint is
resumed, so re-running the command after a crash continues where it stopped.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vlmem.eval.baselines import baseline_scores
from vlmem.recipe import Recipe, load_recipe
from vlmem.recipe.load import ablation_variants, apply_overrides

console = Console(stderr=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_=.," else "_" for c in text)


def ablation_dir(recipe_path: str, recipe: Recipe) -> Path:
    return Path(recipe.run.output_dir or f"runs/ablate/{recipe.run.name or Path(recipe_path).stem}")


def _score_of(result: dict) -> tuple[float | None, dict]:
    """Overall and per-task scores from an eval result of any benchmark.

    For VSI-Bench-style reports the overall is the mean over the tasks that HAD questions: the
    official aggregate counts a missing rel-direction task as 0, which halves the overall of a
    counting-only evaluation (`eval.question_types`). The official number is kept as
    `official_overall`."""
    official = result.get("official", result)
    per_task = official.get("tasks") or official.get("per_type") or {}
    task_counts = (result.get("counts") or {}).get("tasks")
    if task_counts and isinstance(per_task, dict) and "tasks" in official:
        present = {k: v for k, v in per_task.items() if task_counts.get(k, 0) > 0 and v is not None}
        flat = {"official_overall": official.get("overall"), **present}
        overall = sum(present.values()) / len(present) if present else None
        return overall, flat
    flat = {}
    for k, v in per_task.items():
        if isinstance(v, dict) and "score" not in v and "f1" in v:  # the qa scorer: EM and F1 per type
            flat[f"{k}/em"], flat[f"{k}/f1"] = v.get("exact_match"), v.get("f1")
        else:
            flat[k] = v if not isinstance(v, dict) else v.get("score")
    for name, value in (official.get("metrics") or {}).items():
        flat[name] = value
    return official.get("overall"), flat


def run_ablation(recipe_path: str, overrides: list[str] | None = None, quick: bool = False,
                 max_eval_samples: int = 0, jobs: int = 0) -> Path:
    """Train and evaluate every variant (`jobs` at a time; 0 = the recipe's `ablate.jobs`), then
    write the tables. Rows keep the recipe's variant order whatever order the runs finish in."""
    base = load_recipe(recipe_path, overrides or [])
    variants = ablation_variants(base, recipe_path, quick=quick)  # all validated before anything trains
    out = ablation_dir(recipe_path, base) / ("quick" if quick else "full")
    out.mkdir(parents=True, exist_ok=True)
    benchmark = base.eval.benchmark
    jobs = min(jobs or base.ablate.jobs, len(variants))
    todo = []
    for i, (label, variant) in enumerate(variants):
        run_dir = out / _slug(label)
        variant = apply_overrides(variant, {"run.output_dir": str(run_dir), "run.name": f"{base.run.name}-{_slug(label)}"},
                                  f"{recipe_path} [{label}]")
        variants[i] = (label, variant)
        if (run_dir / "eval" / f"{benchmark}.json").is_file():
            console.print(f"[{i + 1}/{len(variants)}] {label}: done, skipped")
        else:
            todo.append((i, label, variant, run_dir))
    if jobs <= 1 or len(todo) <= 1:  # one at a time here: no process to spawn
        failures = _run_sequential(todo, len(variants), benchmark, max_eval_samples)
    else:
        failures = _run_parallel(todo, len(variants), jobs, benchmark, max_eval_samples)
    failed = {label for label, _, _ in failures}
    rows = []
    baseline = None
    for label, variant in variants:
        run_dir = Path(variant.run.output_dir)
        name, _, seed = label.partition("/seed")
        row = {"variant": name, "seed": int(seed) if seed else variant.run.seed}
        if label in failed:  # the table still lists it, marked, so nobody reads a missing row as "not run"
            rows.append({**row, "overall": None, "minutes": None, "status": "failed"})
            continue
        result = json.loads((run_dir / "eval" / f"{benchmark}.json").read_text())
        baseline = baseline or (baseline_scores(result) if result.get("baselines") else None)
        overall, tasks = _score_of(result)
        rows.append({**row, "overall": overall, **tasks, **_trained_columns(run_dir),
                     "minutes": _train_minutes(run_dir), "status": "ok"})
    if len(failed) < len(rows):  # a table of the variants that finished (failed ones marked)
        write_tables(rows, out, baseline)
    if failures:
        _raise_first(failures, len(rows))
    return out


def _run_sequential(todo: list, total: int, benchmark: str, max_eval_samples: int) -> list[tuple[str, int, str]]:
    """One variant after another in this process; a failed variant does not stop the others.
    Returns (label, exit code, message) of each failure; ^C stops at once."""
    import traceback

    from vlmem.errors import VlmemError

    failures = []
    for i, label, variant, run_dir in todo:
        console.print(f"[{i + 1}/{total}] {label}: training -> {run_dir}")
        try:
            _train_and_evaluate(variant, run_dir, benchmark, max_eval_samples)
        except VlmemError as exc:
            console.print(f"[red]{label}: failed[/red]: {exc}", markup=True, highlight=False)
            failures.append((label, exc.exit_code, str(exc)))
        except Exception:  # a bug in one variant: keep its traceback, go on with the others
            console.print(f"[red]{label}: failed[/red] (traceback at the end)")
            failures.append((label, 1, traceback.format_exc()))
    return failures


def _trained_columns(run_dir: Path) -> dict:
    """What the variant trained (RUN/parameters.json): the components with trainable parameters and
    the memory's trainable count, so the table shows whether the memory it compares was trained."""
    from vlmem.train.params import read_parameter_table

    table = read_parameter_table(run_dir)
    if not table:
        return {}
    return {"trained": "+".join(c for c, n in table.items() if n["trainable"] > 0),
            "memory_trainable": table.get("memory", {}).get("trainable", 0),
            "trainable_params": sum(n["trainable"] for n in table.values()),
            "total_params": sum(n["total"] for n in table.values())}


def dry_run_ablation(recipe_path: str, overrides: list[str] | None = None, quick: bool = False) -> list[dict]:
    """Every variant's model built (weights not loaded) and its trainable set applied: per variant the
    LM's context_frames, the memory kind and trainable / total parameters per component. Nothing
    trains or is written. A tiny model's tokenizer comes from the init_from run or the data's text."""
    from vlmem.model.build import build_model
    from vlmem.train.params import configure_trainable, parameter_table

    base = load_recipe(recipe_path, overrides or [])
    rows = []
    for label, variant in ablation_variants(base, recipe_path, quick=quick):
        model = build_model(variant, _dry_run_tokenizer(variant, recipe_path))
        configure_trainable(model, variant)
        params = {name: (tr, tot) for name, tr, tot in parameter_table(model)}
        rows.append({"variant": label, "context_frames": variant.model.context_frames,
                     "memory": variant.model.memory.kind, "params": params})
        del model
    table = Table(title=f"{recipe_path}: trainable / total parameters per component (dry run, nothing trained)")
    for column in ("variant", "context", "memory", *rows[0]["params"]):
        table.add_column(column, overflow="fold")  # counts wrap rather than end in "..."
    for r in rows:
        table.add_row(r["variant"], str(r["context_frames"] or "all"), r["memory"],
                      *(f"{tr:,}/{tot:,}" for tr, tot in r["params"].values()))
    Console().print(table)
    return rows


def _dry_run_tokenizer(variant: Recipe, recipe_path: str):
    from vlmem.data.dataset import read_qa_table
    from vlmem.errors import UsageError
    from vlmem.model.build import dataset_texts, load_tokenizer

    m, init = variant.model, Path(variant.train.init_from) if variant.train.init_from else None
    if m.lm.pretrained or m.vision.pretrained:
        return load_tokenizer(variant)
    for saved in (init, init / "checkpoints" / "last" / "model" if init else None):
        if saved is not None and (saved / "tokenizer").is_dir():
            return load_tokenizer(variant, saved=saved)
    root = Path(variant.data.root)
    if not (root / "qa.parquet").is_file():
        raise UsageError(f"{recipe_path}: a tiny model's tokenizer is built from the data's text, but "
                         f"data.root = {str(root)!r} has no qa.parquet: run `vlmem prepare-data` first or pass "
                         "--set data.root=FOLDER")
    return load_tokenizer(variant, texts=dataset_texts(read_qa_table(root)))


def _train_and_evaluate(variant: Recipe, run_dir: Path, benchmark: str, max_eval_samples: int) -> None:
    from vlmem.eval.generate import evaluate_run
    from vlmem.train.checkpoint import last_checkpoint
    from vlmem.train.loop import train
    from vlmem.trust import trusted_run_code

    train(variant, resume=last_checkpoint(run_dir) is not None)  # a finished run resumes to a no-op
    # the run folder was just written from the recipe the user named: its remote code is the user's choice
    own_choice = variant.model.vision.trust_remote_code or variant.model.lm.trust_remote_code
    with trusted_run_code(own_choice):
        evaluate_run(run_dir, benchmark, max_samples=max_eval_samples)


def worker_env(slot: int, jobs: int, gpus: int, visible: str | None) -> dict[str, str]:
    """Environment of parallel job `slot`: no progress bars (they would interleave) and, when
    there is a GPU per job, its own device (the `slot`-th of CUDA_VISIBLE_DEVICES if set)."""
    env = {"VLMEM_NO_PROGRESS": "1"}
    if gpus >= jobs:
        devices = visible.split(",") if visible else [str(i) for i in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = devices[slot]
    return env


def _worker(slot: int, jobs: int, gpus: int, threads: int, variant: Recipe, run_dir: Path, benchmark: str,
            max_eval_samples: int, results) -> None:
    """One variant in a fresh process; reports (run_dir, exit code, message) on `results`."""
    import traceback

    from vlmem.errors import EXIT_INTERRUPTED, VlmemError

    os.environ.update(worker_env(slot, jobs, gpus, os.environ.get("CUDA_VISIBLE_DEVICES")))  # before CUDA starts
    import torch

    torch.set_num_threads(threads)
    try:
        _train_and_evaluate(variant, run_dir, benchmark, max_eval_samples)
        results.put((str(run_dir), 0, ""))
    except KeyboardInterrupt:
        results.put((str(run_dir), EXIT_INTERRUPTED, "interrupted"))
    except VlmemError as exc:
        results.put((str(run_dir), exc.exit_code, str(exc)))
    except BaseException:  # a bug: hand the traceback on
        results.put((str(run_dir), 1, traceback.format_exc()))


def _run_parallel(todo: list, total: int, jobs: int, benchmark: str, max_eval_samples: int) -> list:
    """`jobs` variants at once, each in a fresh spawned process (a fork of a process that has run
    torch can deadlock) with its share of the CPU cores, and its own GPU when there is one per
    job. A failed variant does not stop the others; the failures are returned.
    On ^C the running variants get the signal too and stop; no queued variant starts, and
    re-running the command resumes them."""
    import multiprocessing
    import queue as queue_lib

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // jobs)
    gpus = torch.cuda.device_count()
    console.print(f"running {len(todo)} variants, {jobs} at a time, {threads} thread(s) each"
                  + (", one GPU each" if gpus >= jobs else ""))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    waiting = list(todo)
    running: dict[str, tuple] = {}  # run_dir -> (process, label, slot)
    free = list(range(jobs))
    failures: list[tuple[str, int, str]] = []

    def finish(key: str, code: int, message: str) -> None:
        process, label, slot = running.pop(key)
        process.join()
        free.append(slot)
        if code == 0:
            console.print(f"{label}: done")
        else:
            console.print(f"[red]{label}: failed[/red]")
            failures.append((label, code, message))

    try:
        while waiting or running:
            while waiting and free and not _interrupted(failures):
                i, label, variant, run_dir = waiting.pop(0)
                slot = free.pop(0)
                process = context.Process(target=_worker, args=(slot, jobs, gpus, threads, variant, run_dir, benchmark,
                                                                max_eval_samples, results), name=f"vlmem-{label}")
                process.start()
                running[str(run_dir)] = (process, label, slot)
                console.print(f"[{i + 1}/{total}] {label}: training -> {run_dir}")
            if not running:
                break
            try:
                finish(*results.get(timeout=1.0))
            except queue_lib.Empty:  # a worker killed from outside (OOM) never reports
                for key, (process, _, _) in list(running.items()):
                    if not process.is_alive():
                        try:  # it may have reported just before exiting
                            finish(*results.get(timeout=1.0))
                        except queue_lib.Empty:
                            finish(key, 1, f"the worker process died (exit code {process.exitcode})")
                        break
    except BaseException:  # ^C: the workers got SIGINT too; give them a moment, then stop them
        for process, _, _ in running.values():
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
        raise
    if _interrupted(failures):
        raise KeyboardInterrupt
    return failures


def _raise_first(failures: list[tuple[str, int, str]], total: int) -> None:
    """End the command with the first failure's message and exit code (after the table was written)."""
    from vlmem.errors import VlmemError

    label, code, message = failures[0]
    if code == 130:
        raise KeyboardInterrupt
    others = f" ({len(failures)} of {total} variants failed: {', '.join(f[0] for f in failures)})" \
        if len(failures) > 1 else f" (1 of {total} variants failed)"
    if code == 1 and message.startswith("Traceback"):
        console.print(message, markup=False, highlight=False)  # a traceback's [brackets] are not markup
        raise RuntimeError(f"ablation variant {label} crashed (traceback above){others}")
    error = VlmemError(f"ablation variant {label}: {message}{others}")
    error.exit_code = code
    raise error


def _interrupted(failures: list[tuple[str, int, str]]) -> bool:
    return any(code == 130 for _, code, _ in failures)


def _train_minutes(run_dir: Path) -> float | None:
    from vlmem.train.metrics import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    if not records:
        return None
    seconds = sum(r.get("seconds", 0.0) for r in records)
    return round(seconds / 60, 2) if seconds else None


COUNT_COLUMNS = ("memory_trainable", "trainable_params", "total_params")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and spread (population std) over seeds per variant, in first-seen order."""
    keys = [k for k in _columns(rows) if k not in ("variant", "seed", "status")]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["variant"], []).append(r)
    out = []
    for name, group in groups.items():
        entry = {"variant": name, "seeds": len(group), "failed": sum(g.get("status") == "failed" for g in group)}
        for k in keys:
            values = [g[k] for g in group if isinstance(g.get(k), (int, float))]
            texts = {g[k] for g in group if isinstance(g.get(k), str)}
            entry[k] = statistics.fmean(values) if values else (texts.pop() if len(texts) == 1 else None)
            entry[f"{k}_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0 if values else None
        out.append(entry)
    return out


def _columns(rows: list[dict]) -> list[str]:
    """Every key of every row, in first-seen order (a failed variant's row has no task columns)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def write_tables(rows: list[dict], out: Path, baseline: tuple[dict, set] | None = None) -> None:
    """ablation.csv / .md / .png; `baseline`: (flat scores, trained keys) of the blind baselines on the
    same questions (vlmem/eval/baselines.py), a row and column marks of the markdown table."""
    summary = summarise(rows)
    if not summary:
        return
    columns = [k for k in summary[0] if not k.endswith("_std") and k not in ("variant", "seeds", "failed")]
    tmp = out / f".ablation.csv.tmp-{os.getpid()}"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "ablation.csv")
    base = summary[0]
    flat, trained = baseline or ({}, set())
    lines = ["| variant | seeds | " + " | ".join(f"{c}*" if c in trained else c for c in columns) + " | Δ overall |",
             "|---|---|" + "---|" * len(columns) + "---|"]
    for s in summary:
        cells = []
        for c in columns:
            v, sd = s.get(c), s.get(f"{c}_std")
            if isinstance(v, str) or (v is not None and c in COUNT_COLUMNS):  # what trained, parameter counts
                cells.append(v if isinstance(v, str) else f"{v:,.0f}")
                continue
            cells.append("-" if v is None else f"{v:.2f}" + (f" ± {sd:.2f}" if sd else ""))
        delta = (s["overall"] - base["overall"]) if s.get("overall") is not None and base.get("overall") is not None else None
        name = s["variant"] + (f" (**failed**: {s['failed']} of {s['seeds']})" if s["failed"] else "")
        lines.append(f"| {name} | {s['seeds']} | " + " | ".join(cells) + f" | {'-' if delta is None else f'{delta:+.2f}'} |")
    notes = f"Deltas are against the first row ({base['variant']})."
    if baseline:
        cells = ["-" if flat.get(c) is None else f"{flat[c]:.2f}" for c in columns]
        lines.append("| *blind baseline* | - | " + " | ".join(cells) + " | - |")
        notes += (" *blind baseline*: chance on multiple choice, the best constant answer (from the training "
                  "split) on numeric tasks, on the same questions (docs/evaluation.md \"Baselines\").")
        if trained:
            notes += " `*`: a task family the runs trained on."
    (out / "ablation.md").write_text(notes + "\n\n" + "\n".join(lines) + "\n")
    _plot(summary, out / "ablation.png")
    table = Table("variant", "seeds", "overall", "Δ", title=str(out))
    for s in summary:
        delta = (s["overall"] - base["overall"]) if s.get("overall") is not None and base.get("overall") is not None else None
        table.add_row(s["variant"], str(s["seeds"]), "-" if s.get("overall") is None else f"{s['overall']:.2f}",
                      "-" if delta is None else f"{delta:+.2f}")
    if flat.get("overall") is not None:
        table.add_row("blind baseline", "-", f"{flat['overall']:.2f}", "-", style="dim")
    Console().print(table)


def _plot(summary: list[dict], path: Path) -> list[str]:
    """Bars per variant (spread over seeds as error bars); returns the metrics plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["variant"] for s in summary]
    # qa reports (TRM's ablations) carry both EM and token F1: plot the two side by side
    metrics = [("exact_match", "EM"), ("f1", "token F1")] if all(s.get("exact_match") is not None and
                                                                  s.get("f1") is not None for s in summary) \
        else [("overall", "overall")]
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) * len(metrics) ** 0.5 + 2), 3.4))
    width = 0.8 / len(metrics)
    for j, ((key, label), colour) in enumerate(zip(metrics, ("#4c72b0", "#dd8452"), strict=False)):
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, [s.get(key) or 0.0 for s in summary], width, yerr=[s.get(f"{key}_std") or 0.0 for s in summary],
               capsize=3, color=colour, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score" if len(metrics) > 1 else "overall score")
    if len(metrics) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [key for key, _ in metrics]
