"""TRM VLM end to end on CPU: train tiny/trm a few steps on tiny synthetic data (feature cache on),
evaluate EM / F1 with `evaluate_run(..., "qa")`, export, reload the export to identical logits."""

from __future__ import annotations

import json

import torch

from vlmem.cli import main

TINY = ["data.frames=4", "eval.frames=4", "data.question_types=[]", "eval.question_types=[]",
        "model.vision.image_size=32", "model.decoder.hidden_size=32", "model.decoder.trm_n=2", "model.decoder.trm_T=2",
        "model.decoder.resampler_latents=8", "train.max_steps=3", "train.batch_size=2", "train.log_every=1",
        "eval.max_samples=6", "eval.batch_size=6"]


def test_trm_train_eval_export(tmp_path, monkeypatch, request):
    from vlmem.eval.generate import evaluate_run
    from vlmem.export import export_run
    from vlmem.recipe import load_recipe
    from vlmem.runs import load_trained
    from vlmem.train.loop import train

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on 2 shared cores: one intra-op thread is faster
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "3", "--frames", "4", "--size", "32"]) == 0
    recipe = load_recipe("tiny/trm", [*TINY, 'run.output_dir="runs/trm"'])
    run = train(recipe)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and all(m["loss"] > 0 for m in metrics)
    assert metrics[-1]["feature_cache_hits"] > 0  # frozen tower: tokens computed once per video
    config = json.loads((run / "checkpoints/last/model/config.json").read_text())
    assert config["components"] == ["lm", "projector"]

    result = evaluate_run(run, "qa")
    assert set(result["official"]["metrics"]) == {"exact_match", "f1"}
    assert result["counts"]["total"] == 6 and (run / "eval/qa.json").is_file()

    out = export_run(run, tmp_path / "exported")
    assert "- decoder: trm" in (out / "README.md").read_text()
    _, a, tok = load_trained(run)
    _, b, _ = load_trained(out)
    frames = torch.randint(0, 255, (1, 4, 3, 32, 32), dtype=torch.uint8)
    ids = torch.tensor([[tok.bos_token_id, 5, 6, 7]])
    mask = torch.ones_like(ids)
    assert torch.equal(a(frames, ids, mask)[1], b(frames, ids, mask)[1])
    assert torch.equal(a.generate(frames, ids, mask, max_new_tokens=4), b.generate(frames, ids, mask, max_new_tokens=4))
