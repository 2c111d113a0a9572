"""Issue 15: trust boundaries and failure handling, one test per defect found by the fault tour.

A run folder someone hands you never runs code; `--overwrite` only replaces vlmem's own output;
resume is exact or refused; every user mistake is a clear message with exit 1 or 2.
(Hostile names in converters: tests/data/test_hostile_names.py.)"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import tomllib
import torch
from safetensors.torch import load_file, save_file

from vlmem.cli import main

TINY = ["model.memory.kind=dual", "data.question_types=[]", "data.frames=6", "model.vision.image_size=32",
        "model.vision.patch_size=8", "model.pool=1", "train.batch_size=2", "train.log_every=1", "eval.frames=6",
        "eval.batch_size=4", "model.memory.dropout=0.1"]


def _sets(*extra: str) -> list[str]:
    return [a for s in [*TINY, *extra] for a in ("--set", s)]


def _train(*args: str) -> int:
    return main(["train", "tiny/base", *args])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """data/synth and runs/base: 4 steps, checkpoints at 2 and 4 (memory dropout on)."""
    root = tmp_path_factory.mktemp("trust")
    old = os.getcwd()
    os.chdir(root)
    assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "6", "--frames", "8", "--size", "32"]) == 0
    assert _train(*_sets("run.name=base", "train.max_steps=4", "train.save_every=2")) == 0
    yield root
    os.chdir(old)


def _copy_run(work: Path, name: str) -> Path:
    dst = work / "runs" / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(work / "runs/base", dst, symlinks=True)
    return dst


def _edit_lock(run: Path, edit) -> None:
    lock = run / "recipe.lock.toml"
    data = tomllib.loads(lock.read_text())
    edit(data)
    lock.write_text(tomli_w.dumps(data))


# -- 1. a run folder never runs code ---------------------------------------------------------------
def _plant_payload(run: Path, sentinel: Path) -> None:
    payload = run / "payload"
    payload.mkdir()
    (payload / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel",
                     "AutoTokenizer": ["evil.EvilTokenizer", None]}}))
    (payload / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}}))
    (payload / "evil.py").write_text(f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('ran')\n")


def test_1_run_folder_lock_cannot_enable_remote_code(work, capsys, tmp_path):
    run = _copy_run(work, "evil")
    sentinel = tmp_path / "PWNED"
    _plant_payload(run, sentinel)

    def edit(d):
        d["model"]["lm"]["pretrained"] = str(run / "payload")
        d["model"]["lm"]["trust_remote_code"] = True
    _edit_lock(run, edit)
    commands = [["eval", "vsibench", "--run", str(run), "--max-samples", "2"],
                ["export", "--run", str(run), "--out", str(tmp_path / "exp")],
                ["inspect-memory", "--run", str(run), "--video", "synth_00000"],
                ["train", str(run / "recipe.lock.toml"), "--resume"]]
    for cmd in commands:
        capsys.readouterr()
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert "recipe.lock.toml" in err and "trust_remote_code = true" in err and "--trust-remote-code" in err, err
        assert "pretrained" in err and "inside the run folder" in err
    assert not sentinel.exists() and not (tmp_path / "exp").exists()
    # the flag is printed when on (and then the user's choice is honoured)
    capsys.readouterr()
    main(["eval", "vsibench", "--run", str(run), "--max-samples", "2", "--trust-remote-code"])
    assert "--trust-remote-code is on" in capsys.readouterr().err


def test_1_pretrained_inside_run_without_remote_code_is_refused(work, capsys):
    run = _copy_run(work, "inside")
    (run / "payload").mkdir()
    _edit_lock(run, lambda d: d["model"]["vision"].__setitem__("pretrained", "payload"))
    assert main(["eval", "vsibench", "--run", str(run), "--max-samples", "2"]) == 2
    assert "[model.vision] pretrained = 'payload' is a folder inside the run folder" in capsys.readouterr().err


# -- 3. export --overwrite only replaces an earlier export ----------------------------------------------
def test_3_export_overwrite_only_replaces_its_own_output(work, capsys, tmp_path):
    run = work / "runs/base"
    dataset = tmp_path / "dataset"
    shutil.copytree(work / "data/synth", dataset)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    before_ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    for out in (dataset, user, run / "checkpoints", run, run.parent):
        capsys.readouterr()
        assert main(["export", "--run", str(run), "--out", str(out), "--overwrite"]) == 2, out
        err = capsys.readouterr().err
        assert str(out) in err and ("not written by vlmem export" in err or str(run) in err), err
    assert (user / "notes.txt").read_text() == "precious" and (dataset / "qa.parquet").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before_ckpts
    exported = tmp_path / "exported"
    assert main(["export", "--run", str(run), "--out", str(exported)]) == 0
    assert main(["export", "--run", str(run), "--out", str(exported), "--overwrite"]) == 0  # its own: replaced
    assert (exported / ".vlmem-output.json").is_file() and (exported / "model.safetensors").is_file()
    # prepare-data and inspect-memory refuse the same way (a marker, or their legacy files)
    assert main(["prepare-data", "synthetic", "--out", str(user), "--overwrite", "--scenes", "2"]) == 2
    assert (user / "notes.txt").read_text() == "precious"


# -- 4. resume restores the RNG exactly or refuses ------------------------------------------------------
def _rewind(run: Path, step: str = "000002") -> None:
    (run / "checkpoints/last").unlink()
    (run / "checkpoints/last").symlink_to(step)


def test_4_resume_is_exact_or_refused(work, capsys):
    reference = load_file(str(work / "runs/base/checkpoints/000004/model/model.safetensors"))
    run = _copy_run(work, "rng")
    lock = str(run / "recipe.lock.toml")
    _rewind(run)
    assert main(["train", lock, "--resume"]) == 0  # intact: bit-identical to the uninterrupted run
    resumed = load_file(str(run / "checkpoints/000004/model/model.safetensors"))
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    state = run / "checkpoints/000002/training_state"
    rng = state / "random_states_0.pkl"
    good = rng.read_bytes()
    cases = {"missing": None, "truncated": good[: len(good) // 2], "tampered": good[:-40] + bytes(40)}
    for case, content in cases.items():
        _rewind(run)
        rng.unlink(missing_ok=True)
        if content is not None:
            rng.write_bytes(content)
        capsys.readouterr()
        assert main(["train", lock, "--resume"]) == 1, case
        err = capsys.readouterr().err
        assert "random_states_0.pkl" in err and ("missing" in err or "changed or truncated" in err), (case, err)
        assert "internal error" not in err
    rng.write_bytes(good)
    # a damaged optimizer.bin / trainer_state.json / weights: a clear message too, exit 1
    for name, damage in (("optimizer.bin", b"garbage"), ("model.safetensors", b"\0" * 10),
                         ("trainer_state.json", b"{not json")):
        keep = (state / name).read_bytes()
        (state / name).write_bytes(damage)
        _rewind(run)
        capsys.readouterr()
        assert main(["train", lock, "--resume"]) == 1, name
        err = capsys.readouterr().err
        assert name in err and "internal error" not in err, err
        (state / name).write_bytes(keep)


# -- 6. user mistakes: clear messages, exit 1 / 2 ---------------------------------------------------------
def test_6_non_utf8_recipe_and_predictions_exit_2(work, capsys, tmp_path):
    recipe = tmp_path / "latin1.toml"
    recipe.write_bytes('[run]\nname = "caf\xe9"\n'.encode("latin-1"))
    assert main(["recipe", "validate", str(recipe)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["train", str(recipe)]) == 2
    preds = tmp_path / "preds.jsonl"
    preds.write_bytes('{"id": "1", "prediction": "caf\xe9"}\n'.encode("latin-1"))
    assert main(["eval", "vsibench", "--predictions", str(preds)]) == 2
    err = capsys.readouterr().err
    assert "preds.jsonl" in err and "not UTF-8" in err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_6_full_disk_or_read_only_output_is_a_clear_error(work, capsys, monkeypatch, tmp_path, code):
    import vlmem.data.writer as writer

    def refuse(table, path):
        raise OSError(code, os.strerror(code), str(path))
    monkeypatch.setattr(writer, "write_table_atomic", refuse)
    out = tmp_path / "out"
    assert main(["prepare-data", "synthetic", "--out", str(out), "--scenes", "2", "--frames", "4", "--size", "16"]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and os.strerror(code) in err and "internal error" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written


@pytest.mark.parametrize("command", ["train", "eval", "export", "inspect-memory"])
def test_6_full_disk_in_every_writing_command(work, capsys, monkeypatch, tmp_path, command):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "somefile"))
    target, argv = {
        "train": ("vlmem.train.loop.write_lock", ["train", "tiny/base", *_sets("run.name=full", "train.max_steps=1")]),
        "eval": ("vlmem.eval.report._atomic_write", ["eval", "vsibench", "--run", "runs/base", "--max-samples", "2",
                                                     "--out", str(tmp_path / "ev")]),
        "export": ("vlmem.export.save_file", ["export", "--run", "runs/base", "--out", str(tmp_path / "exp")]),
        "inspect-memory": ("vlmem.inspect.write_plots", ["inspect-memory", "--run", "runs/base", "--video",
                                                        "synth_00000", "--out", str(tmp_path / "insp")]),
    }[command]
    monkeypatch.setattr(target, full)
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "No space left on device" in err and "internal error" not in err, err
    assert not (tmp_path / "exp").exists() and not (tmp_path / "insp").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_6_prepare_data_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert main(["prepare-data", "synthetic", "--out", str(target), "--overwrite", "--scenes", "2"]) == 2
    assert "is not a folder" in capsys.readouterr().err and target.read_text() == "keep me"


# -- 6 + 9. wrong-shape geometry / corrupt video fail before any run folder exists -----------------------
def test_9_validation_reads_geometry_and_decodes_videos_before_the_model(work, capsys, tmp_path):
    for case in ("geometry", "video"):
        data = tmp_path / f"data-{case}"
        shutil.copytree(work / "data/synth", data)
        if case == "geometry":
            path = sorted((data / "geometry").glob("*.safetensors"))[0]
            g = load_file(str(path))
            g["poses"] = g["poses"][:, :3].contiguous()  # [F, 3, 4]
            save_file(g, str(path))
        else:
            import pyarrow.parquet as pq

            video = [r["video"] for r in pq.read_table(data / "qa.parquet").to_pylist() if r["split"] == "train"][0]
            path = data / video
            raw = path.read_bytes()
            start, end = raw.find(b"mdat") + 200, raw.find(b"moov") - 4
            path.write_bytes(raw[:start] + bytes(end - start) + raw[end:])  # opens, first frame ok, later ones not
        capsys.readouterr()
        code = _train(*_sets(f"run.name=bad-{case}", f"data.root={json.dumps(str(data))}", "train.max_steps=1"))
        err = capsys.readouterr().err
        assert code == 1, err
        assert path.name in err and "internal error" not in err
        if case == "geometry":
            assert "poses has shape [" in err and "expected [F, 4, 4]" in err
        assert not (work / f"runs/bad-{case}").exists()


# -- 7. a run killed before its first checkpoint leaves no duplicate metric lines --------------------------
def test_7_restart_before_first_checkpoint_does_not_duplicate_metrics(work):
    run = work / "runs/dup"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in (1, 2, 3)))
    assert _train(*_sets("run.name=dup", "train.max_steps=3", "train.save_every=0")) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


# -- 8. a moved run folder resumes where it is -------------------------------------------------------------
def test_8_moved_run_resumes_in_place(work, capsys, tmp_path):
    src = _copy_run(work, "tomove")
    moved = tmp_path / "elsewhere" / "moved-run"
    moved.parent.mkdir()
    shutil.move(str(src), moved)
    _rewind(moved)
    lock = moved / "recipe.lock.toml"
    assert main(["train", str(lock), "--resume"]) == 0
    assert os.readlink(moved / "checkpoints/last") == "000004" and not src.exists()
    assert not (work / "runs/base/checkpoints/.state-000004").exists()
    reference = load_file(str(work / "runs/base/checkpoints/000004/model/model.safetensors"))
    resumed = load_file(str(moved / "checkpoints/000004/model/model.safetensors"))
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    # a recipe that really differs is refused, and the advice names the folder given
    assert main(["train", str(lock), "--resume", "--set", "train.lr=0.5"]) == 2
    assert f"vlmem train {lock} --resume" in capsys.readouterr().err


# -- 10. smaller ones --------------------------------------------------------------------------------------
def test_10_dangling_last_is_reported_as_such(work, capsys):
    run = _copy_run(work, "dangling")
    shutil.rmtree(run / "checkpoints/000004")
    assert main(["eval", "vsibench", "--run", str(run), "--max-samples", "2"]) == 1
    err = capsys.readouterr().err
    assert "points to '000004', which does not exist" in err
    assert _train(*_sets("run.name=dangling", "train.max_steps=4", "train.save_every=2"), "--resume") == 1
    assert "which does not exist" in capsys.readouterr().err


def test_10_eval_predictions_checks_ids_against_data(work, capsys, tmp_path):
    import pyarrow.parquet as pq

    ids = [r["id"] for r in pq.read_table(work / "data/synth/qa.parquet").to_pylist()][:3]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "question_type": "object_counting", "ground_truth": "1",
                                         "prediction": "1"}) + "\n" for i in [*ids, "not-in-data"]))
    assert main(["eval", "vsibench", "--predictions", str(preds), "--data", str(work / "data/synth")]) == 2
    err = capsys.readouterr().err
    assert "1 of 4 prediction id(s) are not questions of --data" in err and "not-in-data" in err
    preds.write_text("".join(preds.read_text().splitlines(keepends=True)[:3]))
    assert main(["eval", "vsibench", "--predictions", str(preds), "--data", str(work / "data/synth")]) == 0


def test_10_stale_temp_folders_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.tmp-{dead}"
    (stale / "videos").mkdir(parents=True)
    alive = tmp_path / f".out.tmp-{os.getppid()}"  # a live process's folder is left alone
    alive.mkdir()
    assert main(["prepare-data", "synthetic", "--out", str(tmp_path / "out"), "--scenes", "2", "--frames", "4",
                 "--size", "16"]) == 0
    assert not stale.exists() and alive.exists()


# -- 5. ablate with one job: a failing variant does not stop the others -----------------------------------
def test_5_ablate_one_job_goes_on_after_a_failed_variant(tmp_path, monkeypatch, capsys):
    import csv

    from vlmem.recipe import shipped_recipes_dir

    monkeypatch.chdir(tmp_path)
    assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "4", "--frames", "8", "--size", "32"]) == 0
    recipe = tmp_path / "grid.toml"
    recipe.write_text(f'''base = "{shipped_recipes_dir() / "tiny/base.toml"}"
[run]
name = "grid"
[data]
frames = 4
question_types = []
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
grid = {{ "data.root" = ["data/missing", "data/synth"] }}
jobs = 1
''')
    code = main(["ablate", str(recipe)])
    err = capsys.readouterr().err
    assert code == 2, err  # the failed variant's own exit code (its dataset is missing)
    assert "data/missing" in err and "1 of 2 variants failed" in err and "Traceback" not in err
    out = tmp_path / "runs/ablate/grid/full"
    rows = list(csv.DictReader((out / "ablation.csv").open()))
    assert [(r["variant"], r["status"]) for r in rows] == [("root=data/missing", "failed"), ("root=data/synth", "ok")]
    assert rows[0]["overall"] == "" and rows[1]["overall"] != ""
    assert "**failed**" in (out / "ablation.md").read_text()


# -- 10. ARKitScenes .traj with nan / inf; no ffmpeg noise before vlmem's own video error -----------------
def test_10_arkitscenes_traj_nan_is_skipped_with_reason(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent / "data"))
    import fixtures_real as fx

    from vlmem.data.arkitscenes import prepare_arkitscenes

    root = fx.make_arkit_root(tmp_path, vids=("41069025", "41069042"))
    traj = root / "3dod" / "Training" / "41069042" / "41069042_frames" / "lowres_wide.traj"
    lines = traj.read_text().splitlines()
    lines[0] = " ".join([lines[0].split()[0], "nan", "0", "0", "inf", "0", "0"])
    traj.write_text("\n".join(lines) + "\n")
    manifest = prepare_arkitscenes(root, tmp_path / "out", frames=2)
    (skip,) = manifest["skipped"]
    assert skip["item"] == "41069042" and "line 1 has a non-finite value" in skip["reason"]


def test_10_no_ffmpeg_noise_before_the_video_error(work, tmp_path):
    import pyarrow.parquet as pq

    video = [r["video"] for r in pq.read_table(work / "data/synth/qa.parquet").to_pylist()][0]
    raw = (work / "data/synth" / video).read_bytes()
    start, end = raw.find(b"mdat") + 200, raw.find(b"moov") - 4
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(raw[:start] + bytes(end - start) + raw[end:])
    code = ("import numpy as np, sys\nfrom vlmem.data.video import read_frames\n"
            "try:\n    read_frames(sys.argv[1], np.arange(8))\nexcept Exception as e:\n    print(type(e).__name__)")
    proc = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "DataError"
    assert "h264 @" not in proc.stderr and "NAL unit" not in proc.stderr, proc.stderr


def test_1_own_recipe_trust_is_scoped_and_never_leaks_between_commands(tmp_path):
    """ablate evaluates runs it just wrote from the user's own recipe (which may set trust_remote_code);
    that allowance ends with the block, and every CLI command starts untrusting."""
    from vlmem.errors import UsageError
    from vlmem.recipe import load_recipe
    from vlmem.trust import allow_run_code, check_run_recipe, run_code_allowed, trusted_run_code

    recipe = load_recipe("tiny/base", ["model.lm.trust_remote_code=true"])
    lock = tmp_path / "recipe.lock.toml"
    with pytest.raises(UsageError, match="--trust-remote-code"):
        check_run_recipe(recipe, lock, tmp_path)
    with trusted_run_code(True):
        check_run_recipe(recipe, lock, tmp_path)
    assert not run_code_allowed()
    allow_run_code(True)
    main(["recipe", "show", "tiny/base"])
    assert not run_code_allowed()
