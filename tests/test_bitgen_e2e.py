"""BitGen end to end on CPU: train a few steps through the LoRA warm-up switch, metrics lines,
resume from a mid-run checkpoint to the same weights, eval qa with the retrieval block, export
and reload to identical outputs."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from vlmem.cli import main

# 12 samples / batch 4 = 3 steps per epoch: warm-up (LoRA frozen) = steps 0-2, LoRA trains from step 3
SETS = ["data.frames=3", "data.question_types=[]", "eval.question_types=[]", "model.vision.image_size=32", "data.max_samples=12", "train.batch_size=4",
        "train.max_steps=4", "train.save_every=2", "train.log_every=1", "model.bitgen.queue_size=8",
        "model.bitgen.lora_warmup_epochs=1", "eval.frames=3", "eval.batch_size=4", "eval.max_new_tokens=4"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bitgen")
    data = root / "synth"
    assert main(["prepare-data", "synthetic", "--out", str(data), "--scenes", "4", "--frames", "4", "--size", "32"]) == 0
    run = root / "run"
    args = [a for s in [*SETS, f"data.root={data}", f"run.output_dir={run}"] for a in ("--set", s)]
    return root, data, run, args


def _train(args, *extra):
    return main(["train", "tiny/bitgen", *extra, *args])


def test_train_switch_metrics_and_resume(trained, capsys):
    _, _, run, args = trained
    assert _train(args) == 0
    err = capsys.readouterr().err
    assert "frozen for the warm-up" in err and "steps 0-2" in err
    assert "step 3 (epoch 1): DINOv2 LoRA adapters" in err and "now train" in err
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    for x in lines:
        assert {"itc/loss", "itc/i2t_acc", "itc/t2i_acc", "itm/loss", "itm/acc", "mem/kl", "mem/utilisation",
                "loss/memory_kl", "text/loss"} <= set(x)
        assert all(0.0 <= x[k] <= 1.0 for k in ("itc/i2t_acc", "itc/t2i_acc", "itm/acc", "mem/utilisation"))
        assert x["loss"] > 0
    model_dir = run / "checkpoints/last/model"
    adapter = json.loads((model_dir / "vision_adapter/adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"] and adapter["r"] == 16
    final = load_file(str(model_dir / "model.safetensors"))
    mid = load_file(str(run / "checkpoints/000002/model/model.safetensors"))
    lora = [k for k in final if "lora_B" in k]
    assert lora and all(torch.equal(mid[k], torch.zeros_like(mid[k])) for k in lora)  # frozen in the warm-up
    assert any(final[k].abs().sum() > 0 for k in lora)  # trained after the switch

    # crash after step 2 (drop the last checkpoint): resume re-enters the warm-up at step 2, switches
    # at step 3 and ends on the same weights
    shutil.rmtree(run / "checkpoints/000004")
    os.remove(run / "checkpoints/last")
    os.symlink("000002", run / "checkpoints/last")
    assert _train(args, "--resume") == 0
    err = capsys.readouterr().err
    assert "resumed" in err and "frozen for the warm-up" in err and "now train" in err
    again = load_file(str(run / "checkpoints/last/model/model.safetensors"))
    assert set(again) == set(final)
    assert all(torch.allclose(again[k], final[k], atol=1e-6) for k in final)
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_eval_qa_reports_retrieval_and_export_round_trip(trained):
    from vlmem.runs import load_trained

    root, data, run, args = trained
    if not (run / "checkpoints/last").exists():
        assert _train(args) == 0
    assert main(["eval", "qa", "--run", str(run), "--max-samples", "12"]) == 0
    report = json.loads((run / "eval/qa.json").read_text())
    assert "exact_match" in report["official"]["metrics"]
    r = report["retrieval"]
    assert r["samples"] == 12 and r["batch_size"] == 4
    assert all(0.0 <= r[k] <= 1.0 for k in ("i2t_acc", "t2i_acc", "itm_acc", "chance"))
    assert "Image-text retrieval" in (run / "eval/qa.md").read_text()

    out = root / "exported"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    assert (out / "vision_adapter/adapter_model.safetensors").is_file()
    _, a, tok = load_trained(run)
    _, b, _ = load_trained(out)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 3, 3, 32, 32), dtype=torch.uint8, generator=g)
    ids = torch.tensor([tok("How many chair(s) are in this room?")["input_ids"]] * 3)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        la = a(frames, ids, mask)[1]
        lb = b(frames, ids, mask)[1]
    assert torch.equal(la, lb)
    ra = a.retrieval_metrics(frames, ids, mask, generator=torch.Generator().manual_seed(0))
    assert ra == b.retrieval_metrics(frames, ids, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.generate(frames, ids, mask, max_new_tokens=3), b.generate(frames, ids, mask, max_new_tokens=3))
