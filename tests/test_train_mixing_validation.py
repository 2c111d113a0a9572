"""Dataset mixing (data.roots + data.weights) and held-out validation (train.eval_every)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vlmem.cli import main
from vlmem.data.mixing import MixSampler
from vlmem.train.validate import flat_scores, held_out_rows


def test_mixed_sampling_follows_the_weights():
    sampler = MixSampler(seed=3, sizes=[50, 200, 30], weights=[0.6, 0.3, 0.1], per_step=8)
    drawn = np.concatenate([sampler.step_indices(s) for s in range(1500)])
    folder = np.searchsorted(sampler.offsets, drawn, side="right") - 1
    share = np.bincount(folder, minlength=3) / len(folder)
    assert np.abs(share - [0.6, 0.3, 0.1]).max() < 0.02, share
    # within a folder, every sample is seen once per pass (epoch permutations, not draws with replacement)
    first = drawn[folder == 2][:30]
    assert sorted(first.tolist()) == list(range(250, 280))


def test_mixed_sampling_is_a_pure_function_of_seed_and_step():
    a = MixSampler(seed=0, sizes=[7, 11], weights=[], per_step=4)
    straight = [a.step_indices(s).tolist() for s in range(40)]
    b = MixSampler(seed=0, sizes=[7, 11], weights=[], per_step=4)  # a resumed run: asked from step 25 on
    assert [b.step_indices(s).tolist() for s in range(25, 40)] == straight[25:]
    assert b.step_indices(3).tolist() == straight[3]  # and back again
    c = MixSampler(seed=1, sizes=[7, 11], weights=[], per_step=4)
    assert [c.step_indices(s).tolist() for s in range(40)] != straight
    # weights [] = in proportion to the folders' sizes
    share = np.mean(np.concatenate(straight) >= 7)
    assert abs(share - 11 / 18) < 0.12


def test_held_out_subset_is_seeded_and_in_file_order():
    rows = [{"id": str(i)} for i in range(100)]
    a = held_out_rows(rows, 10, seed=0)
    assert a == held_out_rows(rows, 10, seed=0) and a != held_out_rows(rows, 10, seed=1)
    assert [int(r["id"]) for r in a] == sorted(int(r["id"]) for r in a) and len(a) == 10
    assert held_out_rows(rows[:5], 10, seed=0) == rows[:5]


def test_flat_scores_of_both_scorers():
    from vlmem.eval.qa import score_qa
    from vlmem.eval.vsibench import score_vsibench

    vsi = score_vsibench([
        {"id": "1", "question_type": "object_counting", "ground_truth": "4", "prediction": "4"},
        {"id": "2", "question_type": "object_counting", "ground_truth": "4", "prediction": "2"},
        {"id": "3", "question_type": "route_planning", "ground_truth": "A", "prediction": "B", "options": ["A. x", "B. y"]},
    ])
    flat = flat_scores(vsi)
    assert flat["eval/object_counting"] == pytest.approx(55.0)  # (1 + MRA(2, 4) = 0.1) / 2 and flat["eval/route_planning"] == 0.0
    assert flat["eval/questions"] == 3 and "eval/room_size_estimation" not in flat  # no questions: not logged
    qa = flat_scores(score_qa([{"id": "1", "ground_truth": "a red cup", "prediction": "red cup"}]))
    assert qa["eval/exact_match"] == 100.0 and qa["eval/overall"] == qa["eval/f1"] == 100.0


TINY = ["model.memory.kind=dual", "data.question_types=[]", "data.frames=4", "model.vision.image_size=32",
        "train.batch_size=2", "eval.frames=4", "eval.batch_size=8", "train.max_steps=4", "train.save_every=2",
        "data.roots=[\"data/a\",\"data/b\"]", "data.weights=[3,1]", "data.root=data/a",
        "train.eval_every=2", "train.eval_max_questions=6", "train.log_every=3"]


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    old = os.getcwd()
    os.chdir(root)
    for name, seed, scenes in (("a", 1, 3), ("b", 2, 2)):
        assert main(["prepare-data", "synthetic", "--out", f"data/{name}", "--scenes", str(scenes), "--frames", "6",
                     "--size", "32", "--seed", str(seed)]) == 0
    yield root
    os.chdir(old)


def test_mixed_run_validates_at_the_right_steps_and_resumes_exactly(two_folders, one_thread):
    args = [a for s in [*TINY, "run.name=mixval"] for a in ("--set", s)]
    assert main(["train", "tiny/base", *args]) == 0
    run = two_folders / "runs/mixval"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # eval at steps 2 and 4 (its own line at 2, merged into the step-4 training line); loss at 3 and 4
    assert [x["step"] for x in lines] == [2, 3, 4]
    assert "loss" not in lines[0] and "eval/overall" in lines[0] and lines[0]["eval/questions"] == 6
    assert "eval/overall" not in lines[1] and {"loss", "eval/overall"} <= set(lines[2])
    assert all(0.0 <= x["eval/overall"] <= 100.0 for x in (lines[0], lines[2]))
    final = load_file(str(run / "checkpoints/last/model/model.safetensors"))
    # validation does not change training: the same run without it ends with the same weights
    plain = [a for s in [*TINY[:-3], "train.log_every=3", "run.name=mixplain"] for a in ("--set", s)]
    assert main(["train", "tiny/base", *plain]) == 0
    unvalidated = load_file(str(two_folders / "runs/mixplain/checkpoints/last/model/model.safetensors"))
    assert all(torch.equal(final[k], unvalidated[k]) for k in final)
    # resume from step 2: the same samples of both folders, the same weights bit for bit, the same lines
    shutil.rmtree(run / "checkpoints/000004")
    (run / "checkpoints/last").unlink()
    os.symlink("000002", run / "checkpoints/last")
    assert main(["train", "tiny/base", "--resume", *args]) == 0
    again = load_file(str(run / "checkpoints/last/model/model.safetensors"))
    assert all(torch.equal(final[k], again[k]) for k in final)
    resumed = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in resumed] == [2, 3, 4]
    assert resumed[2]["loss"] == lines[2]["loss"] and resumed[2]["eval/overall"] == lines[2]["eval/overall"]


def test_bad_mixing_keys_are_one_config_error(two_folders, capsys):
    code = main(["train", "tiny/base", "--dry-run", "--set", "data.roots=[\"data/a\",\"data/b\"]",
                 "--set", "data.weights=[1]", "--set", "train.tbptt_mode=per_chunk"])
    err = capsys.readouterr().err
    assert code == 2
    assert "data.weights has 1 entries but data.roots has 2" in err
    assert "train.tbptt_mode = 'per_chunk' needs train.tbptt_frames > 0" in err


def test_eval_report_marks_what_the_run_trained_on(two_folders, one_thread):
    args = [a for s in [*TINY[:-3], "train.max_steps=1", "data.question_types=[\"object_counting\"]",
                        "run.name=countonly"] for a in ("--set", s)]
    assert main(["train", "tiny/base", *args]) == 0
    assert main(["eval", "vsibench", "--run", "runs/countonly", "--max-samples", "20"]) == 0
    result = json.loads((two_folders / "runs/countonly/eval/vsibench.json").read_text())
    b = result["baselines"]
    assert b["trained_types"] == ["object_counting"] and b["trained_tasks"] == ["object_counting"]
    counting = b["tasks"]["object_counting"]
    assert counting["trained"] and counting["constant_source"] == "training split"
    # the constant was fitted on the counting answers of both training folders' train splits
    import pyarrow.parquet as pq

    n_train = sum(1 for f in ("a", "b") for r in pq.read_table(f"data/{f}/qa.parquet").to_pylist()
                  if r["split"] == "train" and r["question_type"] == "object_counting")
    assert counting["constant_fit_on"] == n_train
    assert not any(e["trained"] for t, e in b["tasks"].items() if t != "object_counting")
    # the constants of the families it did not train on still come from the training split's answers
    assert all(e["constant_source"] == "training split" for e in b["tasks"].values() if "constant_source" in e)
    md = (two_folders / "runs/countonly/eval/vsibench.md").read_text()
    assert "Trained on: object_counting." in md


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate")),
                    reason="accelerate launcher not installed")
def test_two_processes_mix_and_validate_like_one(two_folders):
    """Mixed sampling splits the global batch like single-folder sampling; validation runs on the
    main process only and logs the same scores."""
    sets = ["data.question_types=[]", "train.max_steps=3", "train.log_every=1", "data.frames=4",
            "model.vision.image_size=32", "data.roots=[\"data/a\",\"data/b\"]", "data.root=data/a",
            "train.eval_every=2", "train.eval_max_questions=6"]
    args = [a for s in sets for a in ("--set", s)]
    assert main(["train", "tiny/base", *args, "--set", "train.batch_size=4", "--set", "run.name=mix1"]) == 0
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = {**os.environ, "VLMEM_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "-m", "vlmem", "train", "tiny/base",
                           *args, "--set", "train.batch_size=2", "--set", "run.name=mix2"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = [json.loads(x) for x in (two_folders / "runs/mix1/metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (two_folders / "runs/mix2/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3]  # one line per step: main only
    for a, b in zip(one, two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a.get("eval/overall") == pytest.approx(b.get("eval/overall"))
    assert "eval/overall" in one[1] and "eval/overall" in one[2] and "eval/overall" not in one[0]


def test_a_missing_held_out_split_fails_before_training(two_folders, capsys):
    code = main(["train", "tiny/base", "--dry-run", "--set", "data.root=data/a", "--set", "train.eval_every=5",
                 "--set", "data.eval_split=heldout"])
    err = capsys.readouterr().err
    assert code == 1 and "data/a/qa.parquet" in err and "split='heldout'" in err
