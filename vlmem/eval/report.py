"""Write and show scoring results: ``<out>/<benchmark>.json`` + ``<out>/<benchmark>.md``.

`score_predictions_file` is the entry point of ``vlmem eval <benchmark> --predictions FILE
--out DIR``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmem.errors import UsageError


def _scorers() -> dict[str, tuple[Callable[[Any], dict[str, Any]], tuple[str, ...]]]:
    from vlmem.eval import qa, vsibench, vstibench

    return {
        "vsibench": (vsibench.score_vsibench, vsibench.REQUIRED_FIELDS),
        "vstibench": (vstibench.score_vstibench, vsibench.REQUIRED_FIELDS),
        "qa": (qa.score_qa, qa.REQUIRED_FIELDS),
    }


BENCHMARKS = ("vsibench", "vstibench", "qa")


def scorer_for(benchmark: str) -> tuple[Callable[[Any], dict[str, Any]], tuple[str, ...]]:
    """(score function, required record fields) for a benchmark name; UsageError if unknown."""
    scorers = _scorers()
    if benchmark not in scorers:
        raise UsageError(f"unknown benchmark {benchmark!r} (choose from {', '.join(BENCHMARKS)})")
    return scorers[benchmark]


# --------------------------------------------------------------------------- JSON


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings ("nan", "inf"), numpy -> Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --------------------------------------------------------------------------- tables


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the main table, shared by markdown and rich output."""
    official = result["official"]
    if "tasks" in official:  # vsibench / vstibench
        lenient = result.get("lenient", {}).get("tasks", {})
        counts = result["counts"]["tasks"]
        header = ["task", "n", "official", "lenient (not official)"]
        rows = [
            [t, str(counts.get(t, 0)), _fmt(v), _fmt(lenient.get(t))] for t, v in official["tasks"].items()
        ]
        rows.append(
            [
                "overall",
                str(result["counts"]["total"]),
                _fmt(official["overall"]),
                _fmt(result.get("lenient", {}).get("overall")),
            ]
        )
        return _with_baselines(header, rows, result.get("baselines"), "tasks")
    header = ["question_type", "n", "exact match", "token F1"]
    rows = [
        [t, str(m["count"]), _fmt(m["exact_match"]), _fmt(m["f1"])] for t, m in official["per_type"].items()
    ]
    rows.append(
        [
            "overall",
            str(result["counts"]["total"]),
            _fmt(official["metrics"]["exact_match"]),
            _fmt(official["metrics"]["f1"]),
        ]
    )
    return _with_baselines(header, rows, result.get("baselines"), "per_type")


def _with_baselines(header: list[str], rows: list[list[str]], baselines: dict | None, key: str):
    """Add the blind-baseline columns (vlmem/eval/baselines.py) and the trained-on mark."""
    if not baselines:
        return header, rows
    per = baselines.get(key, {})
    if key == "tasks":  # one column: chance for MC tasks, best constant for numeric ones
        header = [*header, "chance / best const.", "trained"]
        for r in rows[:-1]:
            b = per.get(r[0], {})
            value = b.get("chance") if b.get("chance") is not None else b.get("constant")
            r += [_fmt(value), "yes" if b.get("trained") else ""]
        rows[-1] += [_fmt(baselines.get("overall")), ""]
    else:
        header = [*header, "const. EM", "const. F1", "trained"]
        for r in rows[:-1]:
            b = per.get(r[0], {})
            r += [_fmt(b.get("exact_match")), _fmt(b.get("f1")), "yes" if b.get("trained") else ""]
        m = baselines.get("metrics", {})
        rows[-1] += [_fmt(m.get("exact_match")), _fmt(m.get("f1")), ""]
    return header, rows


def baseline_details(baselines: dict) -> list[str]:
    """Markdown lines: where each constant came from, and what the run trained on."""
    lines = ["## Baselines", "", f"*{baselines.get('note', '')}*", ""]
    trained = baselines.get("trained_types")
    lines += [f"Trained on: {', '.join(trained)}." if trained else
              "Trained on: unknown (no run, or its training folders are not on this machine).", ""]
    per = baselines.get("tasks") or baselines.get("per_type") or {}
    rows = [[name, f"{b['constant_value']:.4g}" if "constant_value" in b else str(b["constant"]),
             b.get("constant_source", ""), str(b.get("constant_fit_on", ""))]
            for name, b in per.items() if "constant_value" in b or isinstance(b.get("constant"), str)]
    if rows:
        lines += [_md_table(["task", "constant answer", "chosen on", "answers"], rows), ""]
    lines += [f"- {w}" for w in baselines.get("warnings", [])]
    return lines


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(result: dict[str, Any], benchmark: str) -> str:
    parts = [f"# {benchmark} results", ""]
    scorer = result.get("scorer", {})
    if scorer.get("source"):
        parts += [f"Scorer semantics: `{scorer['source']}`. Scores are percentages.", ""]
    header, rows = summary_rows(result)
    parts += [_md_table(header, rows), ""]
    parts += debiased_lines(result)
    if "lenient" in result:
        parts += [f"*{result['lenient'].get('note', 'lenient: not the official number')}*", ""]
        per_type = result["official"].get("per_type", {})
        if per_type:
            parts += ["## Per question type", ""]
            lp = result["lenient"].get("per_type", {})
            counts = result["counts"]["per_type"]
            parts += [
                _md_table(
                    ["question_type", "n", "official", "lenient"],
                    [[t, str(counts.get(t, 0)), _fmt(v), _fmt(lp.get(t))] for t, v in per_type.items()],
                ),
                "",
            ]
    for name, groups in result.get("breakdowns", {}).items():
        parts += [f"## By {name.replace('_', ' ')}", ""]
        parts += [
            _md_table(
                ["group", "n", "official overall", "lenient overall"],
                [
                    [g, str(v["count"]), _fmt(v["official_overall"]), _fmt(v["lenient_overall"])]
                    for g, v in groups.items()
                ],
            ),
            "",
        ]
    if result.get("retrieval"):
        r = result["retrieval"]
        keys = [k for k in ("i2t_acc", "t2i_acc", "itc_loss", "itm_acc", "itm_loss", "chance") if k in r]
        parts += ["## Image-text retrieval and matching", "",
                  f"*{r.get('note', '')}; batches of {r.get('batch_size')}, {r.get('samples')} samples*", "",
                  _md_table(keys, [[f"{r[k]:.4f}" for k in keys]]), ""]
    if result.get("baselines"):
        parts += baseline_details(result["baselines"]) + [""]
    if result.get("warnings"):
        parts += ["## Warnings", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    return "\n".join(parts)


def debiased_lines(result: dict[str, Any]) -> list[str]:
    """VSI-Bench-Debiased beside the full score, when the records carry VSI-Bench's `pruned` column."""
    d = result.get("debiased")
    if not d:
        return []
    return [f"VSI-Bench-Debiased (rows with pruned = false): official overall {_fmt(d.get('official_overall'))}, "
            f"lenient {_fmt(d.get('lenient_overall'))} on {d.get('count')} questions ({d.get('pruned')} pruned "
            "left out)", ""]


def write_report(result: dict[str, Any], out_dir: str | Path, benchmark: str) -> dict[str, Path]:
    """Write ``<out_dir>/<benchmark>.json`` and ``<out_dir>/<benchmark>.md`` atomically."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    json_path = out / f"{benchmark}.json"
    md_path = out / f"{benchmark}.md"
    _atomic_write(
        json_path, json.dumps(_jsonable(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    _atomic_write(md_path, render_markdown(result, benchmark))
    return {"json": json_path, "md": md_path}


def print_report(result: dict[str, Any], console: Any = None) -> None:
    """Show the main table (and warnings) with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    header, rows = summary_rows(result)
    table = Table(title=f"{result.get('benchmark', 'eval')} (percent)")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for i, r in enumerate(rows):
        table.add_row(*r, style="bold" if i == len(rows) - 1 else None)
    console.print(table)
    for line in debiased_lines(result)[:1]:
        console.print(line)
    if "lenient" in result:
        console.print(f"[dim]{result['lenient'].get('note', '')}[/dim]")
    if result.get("baselines"):
        b = result["baselines"]
        trained = ", ".join(b.get("trained_types") or []) or "unknown"
        console.print(f"[dim]baselines on the same questions: {b.get('note', '')}; trained on: {trained}[/dim]")
    if result.get("retrieval"):
        r = result["retrieval"]
        console.print("retrieval (" + r.get("note", "") + "): " + ", ".join(
            f"{k} {r[k]:.3f}" for k in ("i2t_acc", "t2i_acc", "itm_acc", "chance") if k in r))
    for w in result.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")


def score_predictions_file(
    path: str | Path,
    benchmark: str = "vsibench",
    out_dir: str | Path | None = None,
    console: Any = None,
    data: str | Path | None = None,
) -> dict[str, Any]:
    """Load ``path``, score it as ``benchmark``, write the report to ``out_dir`` (if given).
    With ``data`` (a dataset folder), every prediction's id must be one of its questions.

    Returns the result dict; when written, ``result["report_files"]`` holds the paths.
    Pass a rich ``console`` to also print the table.
    """
    from vlmem.eval.baselines import baselines_for
    from vlmem.eval.predictions import load_predictions

    score, required = scorer_for(benchmark)
    try:
        records = load_predictions(path, required=required)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}): predictions files must be UTF-8 "
                         "JSON / JSON lines, or parquet") from None
    if data is not None:
        check_prediction_ids(records, Path(data), path)
    result = score(records)
    result["baselines"] = baselines_for(benchmark, records)
    result["predictions_file"] = str(path)
    if out_dir is not None:
        files = write_report(result, out_dir, benchmark)
        result["report_files"] = {k: str(v) for k, v in files.items()}
    if console is not None:
        print_report(result, console)
    return result


def check_prediction_ids(records: list[dict[str, Any]], data: Path, path: str | Path) -> None:
    """`--data` with `--predictions`: every prediction must answer a question of that dataset."""
    from vlmem.data.dataset import read_qa_table

    ids = {str(r["id"]) for r in read_qa_table(data)}
    unknown = [str(r.get("id")) for r in records if str(r.get("id")) not in ids]
    if unknown:
        raise UsageError(f"{path}: {len(unknown)} of {len(records)} prediction id(s) are not questions of --data "
                         f"{data} (e.g. {unknown[:3]}): score them against the dataset they were made for")
