"""`vlmem ablate`: every variant trained + evaluated, tables written, finished variants skipped."""

from __future__ import annotations

import csv

import pytest

from vlmem.cli import main
from vlmem.recipe import shipped_recipes_dir


@pytest.mark.parametrize("jobs", [1, 2])
def test_ablation_grid_runs_and_resumes(tmp_path, monkeypatch, capsys, jobs):
    monkeypatch.chdir(tmp_path)
    assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "4", "--frames", "8", "--size", "32"]) == 0
    recipe = tmp_path / "grid.toml"
    recipe.write_text(f'''base = "{shipped_recipes_dir() / "tiny/base.toml"}"
[run]
name = "grid"
description = "test grid"
[data]
frames = 4
question_types = []
[model]
pool = 1
[model.memory]
kind = "dual"
[model.vision]
image_size = 32
[train]
max_steps = 1
batch_size = 2
save_every = 0
[eval]
max_samples = 4
frames = 4
[ablate]
grid = {{ "model.memory.L_w" = [1, 2] }}
seeds = [0, 1]
''')
    assert main(["ablate", str(recipe), "--jobs", str(jobs)]) == 0
    out = tmp_path / "runs/ablate/grid/full"
    rows = list(csv.DictReader((out / "ablation.csv").open()))
    assert [(r["variant"], r["seed"]) for r in rows] == [("L_w=1", "0"), ("L_w=1", "1"), ("L_w=2", "0"), ("L_w=2", "1")]
    assert all(r["overall"] != "" for r in rows)
    md = (out / "ablation.md").read_text()
    assert "L_w=2" in md and "Δ overall" in md
    assert (out / "ablation.png").stat().st_size > 0
    for r in rows:  # every variant is an ordinary finished run
        run = out / f"{r['variant']}_seed{r['seed']}"
        assert (run / "checkpoints" / "last").exists() and (run / "eval" / "vsibench.json").is_file()
    capsys.readouterr()
    assert main(["ablate", str(recipe)]) == 0  # everything finished: all skipped
    assert capsys.readouterr().err.count("done, skipped") == 4


def test_bad_grid_key_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "bad.toml"
    recipe.write_text(f'base = "{shipped_recipes_dir() / "tiny/base.toml"}"\n[ablate]\ngrid = {{ "model.memory.Lw" = [1] }}\n')
    assert main(["ablate", str(recipe)]) == 2
    assert "model.memory.Lw" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_score_of_reads_vsibench_and_qa_reports():
    from vlmem.ablate import _score_of

    vsi = {"official": {"overall": 50.0, "tasks": {"object_counting": {"score": 40.0}, "room_size_estimation": 60.0}}}
    assert _score_of(vsi) == (50.0, {"object_counting": 40.0, "room_size_estimation": 60.0})
    qa = {"official": {"overall": 70.0, "metrics": {"exact_match": 60.0, "f1": 70.0},
                       "per_type": {"caption": {"exact_match": 60.0, "f1": 70.0, "count": 3}}}}
    overall, flat = _score_of(qa)
    assert overall == 70.0
    assert flat == {"caption/em": 60.0, "caption/f1": 70.0, "exact_match": 60.0, "f1": 70.0}


def test_score_of_averages_only_the_tasks_that_had_questions():
    from vlmem.ablate import _score_of

    counting_only = {"official": {"overall": 36.5, "tasks": {"object_rel_direction": 0.0, "object_counting": 73.0,
                                                             "room_size_estimation": None}},
                     "counts": {"tasks": {"object_rel_direction": 0, "object_counting": 112, "room_size_estimation": 0}}}
    overall, flat = _score_of(counting_only)
    assert overall == 73.0  # not the official 36.5, which counts the absent rel-direction task as 0
    assert flat == {"official_overall": 36.5, "object_counting": 73.0}


def test_parallel_variant_failure_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """A variant failing in a worker process (here: no dataset) ends the command with the
    worker's own error message and exit code, not a traceback from the process pool."""
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "nodata.toml"
    recipe.write_text(f'base = "{shipped_recipes_dir() / "tiny/base.toml"}"\n[data]\nroot = "data/missing"\n'
                      '[ablate]\ngrid = { "model.memory.L_w" = [1, 2] }\njobs = 2\n')
    code = main(["ablate", str(recipe)])
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert "data/missing" in err and "Traceback" not in err
    assert not (tmp_path / "runs/ablate/nodata/full/ablation.csv").exists()


def test_parallel_jobs_get_their_own_gpu_only_when_there_is_one_each():
    from vlmem.ablate import worker_env

    assert worker_env(1, 2, 0, None) == {"VLMEM_NO_PROGRESS": "1"}  # CPU: share the cores
    assert worker_env(1, 4, 2, None) == {"VLMEM_NO_PROGRESS": "1"}  # fewer GPUs than jobs: leave them shared
    assert worker_env(1, 2, 2, None)["CUDA_VISIBLE_DEVICES"] == "1"
    assert worker_env(1, 2, 2, "3,5")["CUDA_VISIBLE_DEVICES"] == "5"  # the slot-th of what the user made visible


def test_interrupted_parallel_ablation_starts_no_queued_variant(tmp_path):
    """^C (SIGINT to the terminal's process group) during `--jobs 2`: exit 130 promptly, the two
    running variants stop, and the queued ones never start (re-running resumes them)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    assert main(["prepare-data", "synthetic", "--out", str(tmp_path / "data"), "--scenes", "4", "--frames", "8",
                 "--size", "32"]) == 0
    recipe = tmp_path / "slow.toml"
    recipe.write_text(f'base = "{shipped_recipes_dir() / "tiny/base.toml"}"\n[data]\nroot = "data"\nframes = 4\n'
                      '[model.vision]\nimage_size = 32\n[train]\nmax_steps = 100000\nbatch_size = 2\nsave_every = 0\n'
                      '[ablate]\ngrid = { "model.memory.L_w" = [1, 2, 3, 4] }\n')
    env = {**os.environ, "VLMEM_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vlmem", "ablate", str(recipe), "--jobs", "2"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    out = tmp_path / "runs/ablate/tiny-base/full"
    deadline = time.monotonic() + 120
    while not any(out.glob("*/metrics.jsonl")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert any(out.glob("*/metrics.jsonl")), proc.communicate()[1].decode()[-2000:]
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, proc.stderr.read().decode()[-2000:]
    started = {p.name for p in out.iterdir() if p.is_dir()}
    assert started <= {"L_w=1", "L_w=2"}, started
