"""The `vlmem` command line. Every command is a thin call into a library function.

Errors: a `VlmemError` prints one message and exits with its code (1 runtime,
2 usage/config); Ctrl-C exits 130; `--debug` or VLMEM_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vlmem.errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, VlmemError, exit_code_for

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="vlmem",
    help="Memory-augmented vision-language models for spatial video reasoning.\n\n"
    "Example (the whole loop on the embedded default, CPU, minutes):\n\n"
    "  vlmem prepare-data synthetic --out data/synth\n\n"
    "  vlmem train recipes/tiny/phase1.toml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
recipe_app = typer.Typer(help="List, show and validate recipes.", no_args_is_help=True)
prepare_app = typer.Typer(help="Convert a data source into a vlmem dataset folder (qa.parquet + videos + scenes).",
                          no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")
app.add_typer(prepare_app, name="prepare-data")
eval_app = typer.Typer(help="Answer a benchmark with a trained run (or score a predictions file) exactly as the "
                            "official scorer does.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

_state = {"debug": os.environ.get("VLMEM_DEBUG", "") not in ("", "0")}

# -- shared option types ------------------------------------------------------
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: --set train.lr=5e-6 (repeatable).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output dataset folder.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset folder.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (question sampling, synthetic scenes).")]
FramesOpt = Annotated[int, typer.Option("--frames", help="Frames sampled uniformly from each video.")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Let the run folder's recipe.lock.toml enable "
                                        "trust_remote_code / load a model stored inside the run (runs its Python "
                                        "code; off by default, see docs/security.md).")]


def _trust(on: bool) -> None:
    from vlmem.trust import allow_run_code

    allow_run_code(on, err_console)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    if debug:
        _state["debug"] = True
    _trust(False)  # every command starts untrusting; --trust-remote-code turns it on for that command only


# -- recipe -------------------------------------------------------------------
@recipe_app.command("ls")
def recipe_ls() -> None:
    """List the shipped recipes with a one-line description.

    Example: vlmem recipe ls
    """
    from vlmem.recipe.load import load_recipe, shipped_recipes_dir

    root = shipped_recipes_dir()
    table = Table("recipe", "description", title=f"recipes in {root}")
    for path in sorted(root.rglob("*.toml")):
        try:
            description = load_recipe(path).run.description
        except VlmemError as exc:
            description = Text(f"invalid: {str(exc).splitlines()[0]}", style="red")
        table.add_row(str(path.relative_to(root)), description)
    console.print(table)


@recipe_app.command("show")
def recipe_show(recipe: Annotated[str, typer.Argument(help="Recipe file or shipped name (tiny/phase1).")],
                set_: SetOpt = None) -> None:
    """Print the fully resolved recipe (defaults + base + recipe + --set) as TOML.

    Example: vlmem recipe show tiny/phase1 --set train.lr=5e-6
    """
    from vlmem.recipe import load_recipe, recipe_hash, recipe_to_toml

    r = load_recipe(recipe, set_ or [])
    sys.stdout.write(f"# hash = {recipe_hash(r)}\n" + recipe_to_toml(r))


@recipe_app.command("validate")
def recipe_validate(recipes: Annotated[list[str], typer.Argument(help="Recipe files or shipped names.")],
                    set_: SetOpt = None) -> None:
    """Check recipes without loading any weights or data; exit 2 if any is invalid.

    Example: vlmem recipe validate recipes/*.toml recipes/*/*.toml
    """
    from vlmem.recipe import load_recipe
    from vlmem.recipe.load import ablation_variants

    failures = []
    for name in recipes:
        try:
            r = load_recipe(name, set_ or [])
            n = len(ablation_variants(r, name))
            console.print(f"[green]ok[/green] {name}" + (f" ({n} ablation variants)" if n > 1 else ""))
        except VlmemError as exc:
            failures.append(str(exc))
    if failures:
        raise _Invalid("\n".join(failures))


class _Invalid(VlmemError):
    exit_code = EXIT_USAGE


# -- train ----------------------------------------------------------------------
@app.command("train")
def train_cmd(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped name (tiny/phase1).")],
    phase: Annotated[int | None, typer.Option(help="Train this phase instead of the recipe's (continues from the "
                                                   "previous phase's run).")] = None,
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from checkpoints/last.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print trainable/total parameters per component and exit.")] = False,
    check_all_videos: Annotated[bool, typer.Option("--check-all-videos", help="Before training, decode the frames of "
                                                   "every video (default: as many videos as ~20 s allow).")] = False,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Train a recipe (one process here, or many under `accelerate launch -m vlmem train ...`).

    Examples:

      vlmem train recipes/tiny/phase1.toml

      vlmem train recipes/tiny/phase1.toml --phase 2

      vlmem train recipes/tiny/phase1.toml --resume --set train.max_steps=400

      vlmem train copied/run/recipe.lock.toml --resume    # a moved or copied run, resumed where it is
    """
    from vlmem.recipe import load_recipe
    from vlmem.recipe.load import phase_overrides
    from vlmem.train.loop import train
    from vlmem.train.resume import lock_run_dir, lock_run_overrides

    _trust(trust_remote_code)
    overrides = phase_overrides(recipe, phase, set_ or []) + lock_run_overrides(recipe, resume, set_ or [])
    r = load_recipe(recipe, overrides)
    run_of_lock = lock_run_dir(recipe)
    if run_of_lock is not None:  # a recipe.lock.toml is read from a run folder: the same trust rules as eval
        from vlmem.trust import check_run_recipe

        check_run_recipe(r, run_of_lock / "recipe.lock.toml", run_of_lock)
    train(r, resume=resume, dry_run=dry_run, overrides=tuple(overrides), all_videos=check_all_videos)


@app.command("cache-features")
def cache_features_cmd(
    recipe: Annotated[str, typer.Argument(help="Recipe file or shipped name (tiny/phase1).")],
    phase: Annotated[int | None, typer.Option(help="The phase whose frozen weights to use (as `train --phase`).")] = None,
    set_: SetOpt = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Split(s) to encode (default: data.train_split; "
                                                                    "repeatable).")] = None,
) -> None:
    """Encode every video with the frozen vision (+ fusion) weights into train.feature_cache_dir, ahead of
    training; runs, ablation variants and processes with the same weights and sampling read it.

    Examples:

      vlmem cache-features tiny/phase1   # into its train.feature_cache_dir, cache/features

      vlmem cache-features my.toml --set train.feature_cache_dir=/scratch/features --split train --split eval

      accelerate launch -m vlmem cache-features recipes/phase1.toml   # each process takes every N-th video
    """
    from vlmem.recipe import load_recipe
    from vlmem.recipe.load import phase_overrides
    from vlmem.train.feature_cache import fill_feature_cache

    overrides = phase_overrides(recipe, phase, set_ or [])
    counts = fill_feature_cache(load_recipe(recipe, overrides), tuple(split or ()))
    console.print(f"process {counts['process']}: {counts['videos']} videos, {counts['written']} encoded, "
                  f"{counts['present']} already cached, {counts['evicted']} evicted -> {counts['folder']}")


# -- eval -----------------------------------------------------------------------
RunOpt = Annotated[Path | None, typer.Option("--run", help="Run folder (runs/NAME) or exported folder.")]
PredOpt = Annotated[Path | None, typer.Option("--predictions", help="Score this jsonl/parquet/lmms-eval log instead "
                                                                    "of running a model.")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Dataset folder (default: the recipe's data.root).")]
EvalOutOpt = Annotated[Path | None, typer.Option("--out", help="Report folder (default: RUN/eval).")]
EvalFramesOpt = Annotated[int, typer.Option("--frames", help="Frames per video (default: the recipe's).")]
MaxSamplesOpt = Annotated[int, typer.Option("--max-samples", help="Evaluate only the first N questions (0 = all).")]


def _eval(benchmark: str, run: Path | None, predictions: Path | None, data: Path | None, out: Path | None,
          frames: int, max_samples: int, trust_remote_code: bool = False,
          set_: list[str] | None = None) -> None:
    _trust(trust_remote_code)
    if (run is None) == (predictions is None):
        raise _Invalid("give exactly one of --run RUN (generate answers) or --predictions FILE (score a file)")
    if set_ and predictions is not None:
        raise _Invalid("--set overrides the run's recipe; it does nothing with --predictions (nothing is run)")
    if predictions is not None:
        from vlmem.eval.report import score_predictions_file

        result = score_predictions_file(predictions, benchmark, out or predictions.parent, console=console,
                                        data=data)
    else:
        from vlmem.eval.generate import evaluate_run

        result = evaluate_run(run, benchmark, data=data, frames=frames, out=out, max_samples=max_samples,
                              console=console, overrides=tuple(set_ or ()))
    console.print(f"wrote {', '.join(result.get('report_files', {}).values())}")


@eval_app.command("vsibench")
def eval_vsibench_cmd(run: RunOpt = None, predictions: PredOpt = None, data: DataOpt = None, out: EvalOutOpt = None,
                      frames: EvalFramesOpt = 0, max_samples: MaxSamplesOpt = 0,
                      trust_remote_code: TrustOpt = False, set_: SetOpt = None) -> None:
    """VSI-Bench: official prompts, greedy answers (16 tokens), official scoring (MC accuracy, MRA), x100.

    Examples:

      vlmem eval vsibench --run runs/tiny-phase1

      vlmem eval vsibench --predictions preds.jsonl --out reports/

      vlmem eval vsibench --run runs/vlm2-phase3 --data data/vsibench --set model.geometry.cached_dir=data/vsibench_features/{data_source}
    """
    _eval("vsibench", run, predictions, data, out, frames, max_samples, trust_remote_code, set_)


@eval_app.command("vstibench")
def eval_vstibench_cmd(run: RunOpt = None, predictions: PredOpt = None, data: DataOpt = None, out: EvalOutOpt = None,
                       frames: EvalFramesOpt = 0, max_samples: MaxSamplesOpt = 0,
                       trust_remote_code: TrustOpt = False, set_: SetOpt = None) -> None:
    """VSTI-Bench (VLM-3R's camera/temporal benchmark): MC accuracy + MRA, plain mean over 10 types.

    Example: vlmem eval vstibench --run runs/tiny-phase1
    """
    _eval("vstibench", run, predictions, data, out, frames, max_samples, trust_remote_code, set_)


@eval_app.command("qa")
def eval_qa_cmd(run: RunOpt = None, predictions: PredOpt = None, data: DataOpt = None, out: EvalOutOpt = None,
                frames: EvalFramesOpt = 0, max_samples: MaxSamplesOpt = 0,
                trust_remote_code: TrustOpt = False, set_: SetOpt = None) -> None:
    """Open QA (PixMo style): exact match and token F1 with SQuAD normalisation.

    Example: vlmem eval qa --run runs/trm
    """
    _eval("qa", run, predictions, data, out, frames, max_samples, trust_remote_code, set_)


@eval_app.command("stream")
def eval_stream_cmd(run: Annotated[Path, typer.Option("--run", help="Run folder (runs/NAME) or exported folder.")],
                    data: DataOpt = None, out: EvalOutOpt = None,
                    split: Annotated[str, typer.Option("--split", help="Split (default: the recipe's eval.split).")] = "",
                    max_streams: Annotated[int, typer.Option("--max-streams", help="First N streams of each length "
                                                                                    "(0 = all).", min=0)] = 0,
                    fps: Annotated[float, typer.Option("--fps", help="Frames per second read through the memory "
                                                                     "(default: every frame).")] = 0.0,
                    trust_remote_code: TrustOpt = False, set_: SetOpt = None) -> None:
    """Long-horizon streams (`prepare-data synthetic --stream-rooms`): one memory scan per stream, answers read
    at each question's query time (10% / 50% / 100%); scores, ms per frame and RAM by stream length, and a plot.

    Example: vlmem eval stream --run runs/lh-surprise --data data/long-horizon --max-streams 4
    """
    from vlmem.eval.stream import evaluate_stream

    _trust(trust_remote_code)
    result = evaluate_stream(run, data=data, out=out, split=split or None, max_streams=max_streams, fps=fps,
                             console=console, overrides=tuple(set_ or ()))
    console.print(f"wrote {', '.join(result['report_files'].values())}")


# -- ablate -----------------------------------------------------------------------
@app.command("ablate")
def ablate_cmd(
    recipe: Annotated[str, typer.Argument(help="Ablation recipe (recipes/ablate/NAME.toml).")],
    set_: SetOpt = None,
    quick: Annotated[bool, typer.Option("--quick", help="Apply the recipe's \\[ablate.quick] overrides (fewer "
                                                        "steps / samples) for a fast check.")] = False,
    max_eval_samples: MaxSamplesOpt = 0,
    jobs: Annotated[int, typer.Option("--jobs", min=0, help="Variants trained at once, each in its own process "
                                      "(0 = the recipe's ablate.jobs).")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what each variant trains (trainable/total "
                                          "parameters per component, LM context frames) and exit.")] = False,
) -> None:
    """Train and evaluate every variant of an ablation grid; write ablation.csv, ablation.md and a plot.

    Finished variants are skipped, interrupted ones resumed: re-run the same command to continue.

    Examples:

      vlmem ablate recipes/ablate/memory_components.toml --quick

      vlmem ablate recipes/ablate/memory_sizes.toml --set train.max_steps=100

      vlmem ablate recipes/ablate/memory_matters.toml --jobs 2    # two variants at once, one core each

      vlmem ablate recipes/ablate/memory_components.toml --dry-run    # what each variant trains
    """
    from vlmem.ablate import dry_run_ablation, run_ablation

    if dry_run:
        dry_run_ablation(recipe, set_ or [], quick=quick)
        return

    out = run_ablation(recipe, set_ or [], quick=quick, max_eval_samples=max_eval_samples, jobs=jobs)
    console.print(f"wrote {out / 'ablation.csv'}, {out / 'ablation.md'}, {out / 'ablation.png'}")


@app.command("inspect-memory")
def inspect_memory_cmd(
    run: Annotated[Path, typer.Option("--run", help="Run folder (runs/NAME) or exported folder.")],
    video: Annotated[str, typer.Option("--video", help="Scene name: the dataset's videos/<scene>.mp4.")],
    data: DataOpt = None,
    frames: EvalFramesOpt = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: RUN/inspect/<scene>).")] = None,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Replay one video through a trained model: per-frame slot contents, writes, gate, attention -> trace.json + PNGs.

    Example: vlmem inspect-memory --run runs/tiny-phase1 --video synth_00003
    """
    from vlmem.inspect import inspect_memory

    _trust(trust_remote_code)
    result = inspect_memory(run, video, data=data, frames=frames, out=out, console=console)
    console.print(f"wrote {', '.join(str(p) for p in result['files'])}")


# -- export -----------------------------------------------------------------------
@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Option("--run", help="Run folder (runs/NAME).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write.")],
    merge_lora: Annotated[bool, typer.Option("--merge-lora", help="Merge LoRA adapters into the LM weights.")] = False,
    dtype: Annotated[str, typer.Option("--dtype", help="fp32 | bf16 | fp16 for the saved weights.")] = "fp32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier `vlmem export` output "
                                            "(never any other folder).")] = False,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Write safetensors weights, config, tokenizer, recipe lock and a model card, loadable by eval/inspect-memory.

    Example: vlmem export --run runs/tiny-phase1 --out exported/tiny-phase1 --dtype bf16
    """
    from vlmem.export import export_run

    _trust(trust_remote_code)
    path = export_run(run, out, merge_lora=merge_lora, dtype=dtype, overwrite=overwrite)
    console.print(f"exported {run} -> {path}")


# -- ask --------------------------------------------------------------------------
@app.command("ask")
def ask_cmd(
    question: Annotated[str | None, typer.Argument(help="The question (or --questions FILE).")] = None,
    run: Annotated[Path | None, typer.Option("--run", help="Run folder (runs/NAME) or exported folder.")] = None,
    video: Annotated[Path | None, typer.Option("--video", help="Video file (mp4, ...) or folder of frames.")] = None,
    questions: Annotated[Path | None, typer.Option("--questions", help="JSON lines: {\"question\": ..., "
                                                   "\"options\": [...]?, \"query_frame\": N?} per line.")] = None,
    options: Annotated[str, typer.Option("--options", help="Multiple-choice options of QUESTION, '|'-separated: "
                                                           "'A. two|B. three'.")] = "",
    fps: Annotated[float, typer.Option("--fps", help="Frames per second read through the memory (default: every "
                                                     "frame).")] = 0.0,
    frames: Annotated[int, typer.Option("--frames", help="Frames sampled uniformly instead (0 = use --fps).")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Answer length (default: the recipe's "
                                                                         "eval.max_new_tokens).")] = 0,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Answer questions about a video of any length: it is decoded as a stream and every sampled frame goes
    through the model's memory (constant RAM); a model without memory samples data.frames uniformly.

    Example: vlmem ask --run runs/phase1 --video my_room.mp4 "How many chairs are there?"

    Example: vlmem ask --run runs/lh-dual --video data/stream/videos/eval_k0400_0000.mp4 --questions q.jsonl --json
    """
    import json

    from vlmem.ask import Question, ask, read_questions

    _trust(trust_remote_code)
    if run is None or video is None:
        raise _Invalid("give --run RUN and --video FILE")
    if (question is None) == (questions is None):
        raise _Invalid("give exactly one of a QUESTION argument or --questions FILE")
    if questions is not None and options:
        raise _Invalid("--options goes with a QUESTION argument; put options into the --questions file instead")
    qs = read_questions(questions) if questions is not None else [
        Question(question, [o.strip() for o in options.split("|") if o.strip()] or None, id="1")]
    result = ask(run, video, qs, fps=fps, frames=frames, max_new_tokens=max_new_tokens)
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table("question", "answer", title=f"{video} ({result['memory']} memory)")
    for rec in result["answers"]:
        table.add_row(rec["question"], rec["prediction"])
    console.print(table)
    console.print(f"{result['sampling']}; read {result['frames_read']} of {result['video_frames']} frames in "
                  f"{result['seconds']:.1f} s ({result['ms_per_frame']:.1f} ms/frame), LM context: the last "
                  f"{result['context_frames']} frames")


# -- prepare-data ---------------------------------------------------------------
def _summarise(manifest: dict, out: Path) -> None:
    counts = manifest.get("counts", {})
    table = Table("question_type", "questions", title=f"{manifest.get('source')} -> {out}")
    for qtype, n in sorted(counts.get("by_question_type", {}).items()):
        table.add_row(qtype, str(n))
    console.print(table)
    skipped = counts.get("skipped", 0)
    line = f"converted {counts.get('scenes', 0)} scenes, {counts.get('questions', 0)} questions"
    console.print(line + (f", skipped {skipped}: see {out / 'manifest.json'}" if skipped else ""))


@prepare_app.command("synthetic")
def prepare_synthetic_cmd(
    out: OutOpt = Path("data/synth"),
    scenes: Annotated[int, typer.Option(help="Number of rooms.", min=1)] = 24,
    frames: Annotated[int, typer.Option(help="Frames per video.", min=1)] = 32,
    size: Annotated[int, typer.Option(help="Frame width and height in pixels.", min=8)] = 64,
    seed: SeedOpt = 0,
    walk: Annotated[str, typer.Option(help="Camera path: sweep (objects pass through view once), orbit, or tour "
                                           "(turn on the spot, one small object per stop).")] = "sweep",
    stops: Annotated[int, typer.Option(help="Stops of the tour walk (frames are split evenly between them).",
                                       min=1)] = 16,
    categories: Annotated[str, typer.Option(help="Comma-separated object categories (default: all; the tour: "
                                                 "the narrow ones).")] = "",
    eval_fraction: Annotated[float, typer.Option(help="Fraction of scenes held out as the eval split.")] = 0.25,
    instances: Annotated[str, typer.Option(help="MIN,MAX instances of every chosen category (default: each "
                                                 "category's own range).")] = "",
    families: Annotated[str, typer.Option(help="Comma-separated question families (default: all).")] = "",
    stream_rooms: Annotated[str, typer.Option(help="Stream mode: K_TRAIN[,K_EVAL,...] tour rooms walked one after "
                                                   "another per video (--scenes train streams of K_TRAIN rooms, "
                                                   "--eval-streams of every K; --frames per room). docs/data.md")] = "",
    eval_streams: Annotated[int, typer.Option(help="Stream mode: eval streams of each length.", min=0)] = 4,
    overwrite: OverwriteOpt = False,
) -> None:
    """Procedural rooms rendered to videos + depth + poses, with VSI-Bench-style questions. No downloads.

    Example: vlmem prepare-data synthetic --out data/synth --scenes 24 --frames 32 --size 64

    Example: vlmem prepare-data synthetic --out data/tour --walk tour --stops 16 --frames 64 --size 32

    Example (long-horizon streams: train on 4 rooms, evaluate on 4, 40 and 400):
    vlmem prepare-data synthetic --out data/stream --stream-rooms 4,40,400 --scenes 256 --frames 8 --stops 8 --size 32
    """
    from vlmem.data.synthetic import prepare_synthetic

    cats = [c.strip() for c in categories.split(",") if c.strip()] or None
    if stream_rooms:
        from vlmem.data.stream import parse_rooms, prepare_stream

        if walk not in ("sweep", "tour") or instances or families:
            raise UsageError("--stream-rooms always walks tours with both stream question families: drop --walk "
                             "(other than tour), --instances and --families")
        manifest = prepare_stream(out, parse_rooms(stream_rooms), streams=scenes, eval_streams=eval_streams,
                                  frames=frames, size=size, seed=seed, stops=stops, categories=cats,
                                  overwrite=overwrite)
        _summarise(manifest, out)
        return
    fams = [f.strip() for f in families.split(",") if f.strip()] or None
    count_range = None
    if instances:
        try:
            lo, hi = (int(x) for x in instances.split(","))
        except ValueError:
            raise UsageError(f"--instances must be MIN,MAX (two integers), got {instances!r}") from None
        count_range = (lo, hi)
    manifest = prepare_synthetic(out, scenes=scenes, frames=frames, size=size, seed=seed, categories=cats, walk=walk,
                                 overwrite=overwrite, eval_fraction=eval_fraction, families=fams,
                                 instances=count_range, stops=stops)
    _summarise(manifest, out)


@prepare_app.command("vsibench-meta")
def prepare_vsibench_meta_cmd(
    meta: Annotated[list[Path], typer.Option("--meta", help="VSI-Bench meta_info JSON (repeatable).")],
    out: OutOpt,
    videos: Annotated[Path | None, typer.Option(help="Folder with <scene>.mp4 or <dataset>/<scene>.mp4.")] = None,
    seed: SeedOpt = 0,
    split: Annotated[str, typer.Option(help="Split name written to qa.parquet.")] = "train",
    overwrite: OverwriteOpt = False,
) -> None:
    """Scenes from VSI-Bench meta_info JSON -> training questions (videos optional).

    Example: vlmem prepare-data vsibench-meta --meta scannet_meta_info_val.json --out data/vsimeta
    """
    from vlmem.data.vsibench_meta import prepare_vsibench_meta

    manifest = prepare_vsibench_meta(meta, out, videos=videos, overwrite=overwrite, seed=seed, split=split)
    _summarise(manifest, out)


@prepare_app.command("scannet")
def prepare_scannet_cmd(
    root: Annotated[Path, typer.Option(help="ScanNet folder containing scans/<scene>/ (or the scans/ folder).")],
    out: OutOpt,
    frames: FramesOpt = 32,
    seed: SeedOpt = 0,
    split: Annotated[str, typer.Option(help="Split name written to qa.parquet.")] = "train",
    overwrite: OverwriteOpt = False,
) -> None:
    """ScanNet scans (.sens, axisAlignment, aggregation/segs/ply) -> videos, geometry, scenes, questions.

    Example: vlmem prepare-data scannet --root /data/scannet --out data/scannet
    """
    from vlmem.data.scannet import prepare_scannet

    _summarise(prepare_scannet(root, out, frames=frames, overwrite=overwrite, seed=seed, split=split), out)


@prepare_app.command("arkitscenes")
def prepare_arkitscenes_cmd(
    root: Annotated[Path, typer.Option(help="ARKitScenes raw/3dod split folder with <video_id>/ folders.")],
    out: OutOpt,
    frames: FramesOpt = 32,
    seed: SeedOpt = 0,
    split: Annotated[str, typer.Option(help="Split name written to qa.parquet.")] = "train",
    overwrite: OverwriteOpt = False,
) -> None:
    """ARKitScenes 3dod (lowres_wide, depth, .pincam, .traj, 3dod annotation) -> the same dataset folder.

    Example: vlmem prepare-data arkitscenes --root /data/ARKitScenes/3dod/Validation --out data/arkit
    """
    from vlmem.data.arkitscenes import prepare_arkitscenes

    _summarise(prepare_arkitscenes(root, out, frames=frames, overwrite=overwrite, seed=seed, split=split), out)


@prepare_app.command("vsibench")
def prepare_vsibench_cmd(
    parquet: Annotated[Path, typer.Option(help="VSI-Bench test parquet.")],
    videos: Annotated[Path, typer.Option(help="Folder with {dataset}/{scene_name}.mp4.")],
    out: OutOpt,
    overwrite: OverwriteOpt = False,
) -> None:
    """The VSI-Bench benchmark (parquet + videos) as an eval dataset folder.

    Example: vlmem prepare-data vsibench --parquet test.parquet --videos VSI-Bench/ --out data/vsibench
    """
    from vlmem.data.vsibench import prepare_vsibench

    _summarise(prepare_vsibench(parquet, videos, out, overwrite=overwrite), out)


@prepare_app.command("pixmo")
def prepare_pixmo_cmd(
    parquet: Annotated[Path, typer.Option(help="pixmo-cap or pixmo-ask-model-anything parquet.")],
    images: Annotated[Path, typer.Option(help="Folder of the downloaded images.")],
    out: OutOpt,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    val_fraction: Annotated[float, typer.Option(help="Share of images in split \"val\".")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Share of images in split \"test\".")] = 0.1,
) -> None:
    """PixMo captions / open QA with locally available images -> open-QA rows, split by image into train/val/test.

    Example: vlmem prepare-data pixmo --parquet pixmo-cap.parquet --images /data/pixmo --out data/pixmo
    """
    from vlmem.data.pixmo import prepare_pixmo

    _summarise(prepare_pixmo(parquet, images, out, overwrite=overwrite, seed=seed, val_fraction=val_fraction,
                             test_fraction=test_fraction), out)


@prepare_app.command("vlm3r")
def prepare_vlm3r_cmd(
    json_path: Annotated[Path, typer.Option("--json", help="VLM-3R-DATA LLaVA-style JSON.")],
    videos: Annotated[Path, typer.Option(help="Folder the records' `video` paths are relative to.")],
    out: OutOpt,
    overwrite: OverwriteOpt = False,
) -> None:
    """VLM-3R-DATA records (id, scene_name, question_type, video, conversations) -> rows.

    Example: vlmem prepare-data vlm3r --json vsibench_train.json --videos /data/vlm3r --out data/vlm3r
    """
    from vlmem.data.vlm3r import prepare_vlm3r

    _summarise(prepare_vlm3r(json_path, videos, out, overwrite=overwrite), out)


# -- entry point ----------------------------------------------------------------
def _click_exceptions(name: str) -> tuple[type, ...]:
    """Typer vendors click (typer._click) in recent releases; older ones use click itself."""
    found = []
    for module in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:
        _state["debug"] = True
    exit_exc, abort_exc, click_exc = (_click_exceptions(n) for n in ("Exit", "Abort", "ClickException"))
    try:
        result = app(args=argv, prog_name="vlmem", standalone_mode=False)
        if isinstance(result, int) and result:  # click returns the exit code of --help / no-args handling
            return result
    except exit_exc as exc:
        return exc.exit_code
    except abort_exc:
        err_console.print("interrupted")
        return EXIT_INTERRUPTED
    except click_exc as exc:
        exc.show()
        return EXIT_USAGE
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return EXIT_INTERRUPTED
    except VlmemError as exc:
        if _state["debug"]:
            traceback.print_exc()
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        return exit_code_for(exc)
    except OSError as exc:
        if exc.errno not in _DISK_ERRNOS:
            return _internal_error(exc)
        if _state["debug"]:
            traceback.print_exc()
        where = exc.filename or "a file"
        err_console.print(Text.assemble(("error: ", "bold red"), f"cannot write {where}: {exc.strerror} (disk full, "
                          "read-only or not permitted): free some space or choose a folder you can write to"),
                          highlight=False, soft_wrap=True)
        return exit_code_for(exc)
    except Exception as exc:  # a bug, not a user mistake: say so, keep the traceback one flag away
        return _internal_error(exc)
    return 0


# full disk, read-only or not-permitted folder: the user's environment, not a bug
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _internal_error(exc: BaseException) -> int:
    if _state["debug"]:
        traceback.print_exc()
    else:
        err_console.print(Text.assemble(("internal error: ", "bold red"), f"{type(exc).__name__}: {exc}\n"
                          "(run with --debug for the traceback, and please report it)"), highlight=False)
    return exit_code_for(exc)


if __name__ == "__main__":
    sys.exit(main())
