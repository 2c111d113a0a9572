"""The real researcher's path, rehearsed on a format-exact miniature (tests/realworld/miniature.py):

VLM-3R-DATA json + per-source CUT3R `spatial_features/<scene>.pt` + a LLaVA-OneVision checkpoint
-> `prepare-data vlm3r` -> the shipped `recipes/phase1.toml`, `phase2.toml`, `phase3.toml` changed only
by `--set` for size -> `prepare-data vsibench` -> `eval vsibench` (refused without the benchmark's
features, then scored with them) -> `export` (adapter and merged) -> plain transformers + peft load
in a separate Python process (the lines of docs/export.md), logits compared with vlmem's eval path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlmem.cli import main

HERE = Path(__file__).parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import miniature  # noqa: E402

SIZE = ["model.vision.pretrained=ckpt/llava-onevision-tiny", "data.frames=4", "eval.frames=4",
        "train.max_steps=2", "train.grad_accum=1", "model.geometry.dim=16"]


def _sets(extra=()):
    return [a for s in (*SIZE, *extra) for a in ("--set", s)]


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return miniature.make_world(tmp_path)


def _count_llava_reads(monkeypatch) -> list[str]:
    from transformers import LlavaOnevisionForConditionalGeneration as cls

    reads: list[str] = []
    original = cls.from_pretrained.__func__

    def counted(klass, path, *args, **kwargs):
        reads.append(str(path))
        return original(klass, path, *args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(counted))
    return reads


def _plain_load_script(adapter: Path, merged: Path, base: Path) -> str:
    """docs/export.md's lines (with this miniature's paths), then logits for a prompt."""
    text = (REPO / "docs/export.md").read_text()
    block = re.search(r"<!-- plain-load -->\s*```python\n(.*?)```", text, re.S).group(1)
    block = (block.replace("llava-hf/llava-onevision-qwen2-7b-ov-hf", str(base))
             .replace("exported/vlm2-phase3-merged/hf_merged", str(merged))
             .replace("exported/vlm2-phase3/hf_adapter", str(adapter)))
    assert "vlmem" not in block.replace("vlm2-phase3", "")
    return block + """
import json, sys
ids = tokenizer("How many chair(s) are in this room?", return_tensors="pt").input_ids
fresh = LlavaOnevisionForConditionalGeneration.from_pretrained(BASE).eval()
vision_lora = [n for n, _ in model.named_modules() if "vision_tower" in n and n.endswith("lora_A")]
lm_lora = [n for n, _ in model.named_modules() if "language_model" in n and n.endswith("lora_A")]
with torch.no_grad():
    out = {"ids": ids[0].tolist(), "adapter": model(input_ids=ids).logits[0].tolist(),
           "merged": merged(input_ids=ids).logits[0].tolist(), "base": fresh(input_ids=ids).logits[0].tolist(),
           "vision_lora": len(vision_lora), "lm_lora": len(lm_lora), "vlmem_imported": "vlmem" in sys.modules}
print(json.dumps(out))
""".replace("BASE", repr(str(base)))


def test_real_path_phase1_to_export(world, tmp_path, monkeypatch, capsys):
    # -- data: VLM-3R-DATA (its own layout and names) and VSI-Bench (test.parquet with `pruned`)
    assert main(["prepare-data", "vlm3r", "--json", "data/vlm_3r_data/vlm3r_train.json",
                 "--videos", "data/vlm_3r_data", "--out", "data/vlm3r"]) == 0
    import pyarrow.parquet as pq

    rows = pq.read_table("data/vlm3r/qa.parquet").to_pylist()
    assert len(rows) == 20 and {r["dataset"] for r in rows} == {"scannet", "arkitscenes", "scannetpp"}
    assert "object_rel_direction_hard" in {r["question_type"] for r in rows}  # VLM-3R's _v1, mapped
    assert not any(r["question_type"].endswith(("_v1", "_v2", "_v3")) for r in rows)
    assert main(["prepare-data", "vsibench", "--parquet", "VSI-Bench/test.parquet", "--videos", "VSI-Bench",
                 "--out", "data/vsibench"]) == 0
    assert [r["pruned"] for r in pq.read_table("data/vsibench/qa.parquet").to_pylist()].count(True) == 3

    # -- the shipped paper recipes, changed only by --set for size; the LLaVA checkpoint read once per run
    reads = _count_llava_reads(monkeypatch)
    for phase in (1, 2, 3):
        before = len(reads)
        assert main(["train", str(REPO / f"recipes/phase{phase}.toml"), *_sets()]) == 0, phase
        assert len(reads) - before == 1, f"phase {phase}: the checkpoint was read {len(reads) - before} times"
        lock = (tmp_path / f"runs/vlm2-phase{phase}/recipe.lock.toml").read_text()
        assert 'source = "cached"' in lock and "{data_source}/spatial_features" in lock
    metrics = [json.loads(x) for x in (tmp_path / "runs/vlm2-phase3/metrics.jsonl").read_text().splitlines()]
    assert metrics and all(m["loss"] == m["loss"] for m in metrics)

    # -- VSI-Bench: the run's geometry folder has no features for the benchmark's videos: refused
    # before the model loads or any question is answered, naming the key to set
    capsys.readouterr()
    before = len(reads)
    code = main(["eval", "vsibench", "--run", "runs/vlm2-phase3", "--data", "data/vsibench", "--frames", "4"])
    err = capsys.readouterr().err
    assert code == 1 and "model.geometry.cached_dir" in " ".join(err.split()) and len(reads) == before
    assert not (tmp_path / "runs/vlm2-phase3/eval/vsibench.json").exists()
    assert main(["eval", "vsibench", "--run", "runs/vlm2-phase3", "--data", "data/vsibench", "--frames", "4",
                 "--set", "model.geometry.cached_dir=vsibench_features/{data_source}"]) == 0
    report = json.loads((tmp_path / "runs/vlm2-phase3/eval/vsibench.json").read_text())
    assert report["counts"]["total"] == 6 and report["debiased"]["count"] == 3
    assert report["scorer"]["aggregation"] == "main"

    # -- export: adapter for plain peft, merged standalone checkpoint; one checkpoint read each
    before = len(reads)
    assert main(["export", "--run", "runs/vlm2-phase3", "--out", "exported/vlm2-phase3"]) == 0
    assert main(["export", "--run", "runs/vlm2-phase3", "--out", "exported/vlm2-phase3-merged", "--merge-lora"]) == 0
    assert len(reads) - before == 2
    adapter_cfg = json.loads((tmp_path / "exported/vlm2-phase3/hf_adapter/adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str((tmp_path / "ckpt/llava-onevision-tiny").resolve())
    assert "language_model" in adapter_cfg["target_modules"]
    assert "`hf_adapter/`" in (tmp_path / "exported/vlm2-phase3/README.md").read_text()
    assert "`hf_merged/`" in (tmp_path / "exported/vlm2-phase3-merged/README.md").read_text()

    # -- plain transformers + peft, in another process that never imports vlmem
    script = _plain_load_script(tmp_path / "exported/vlm2-phase3/hf_adapter",
                                tmp_path / "exported/vlm2-phase3-merged/hf_merged", world["checkpoint"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    assert plain["vision_lora"] == 0 and plain["lm_lora"] == 2 * 4  # 2 layers x q/k/v/o, none on SigLIP
    assert not plain["vlmem_imported"]

    from vlmem.runs import load_trained

    _, model, _ = load_trained(tmp_path / "exported/vlm2-phase3")
    ids = torch.tensor([plain["ids"]])
    with torch.no_grad():
        ours = model.lm(input_ids=ids).logits[0]
    diff = {k: (torch.tensor(plain[k]) - ours).abs().max().item() for k in ("adapter", "merged", "base")}
    print(f"max |logits - vlmem eval path|: {diff}")
    assert diff["adapter"] <= 1e-5 and diff["merged"] <= 1e-4
    assert diff["base"] > 100 * max(diff["adapter"], 1e-6)  # the adapter really changed the LM

    # -- the memory / fusion weights, rebuilt by the loader, are the trained ones
    from vlmem.export_hf import load_vlmem_modules

    parts = load_vlmem_modules(tmp_path / "exported/vlm2-phase3")
    for name in ("memory", "fusion"):
        mine, theirs = parts[name].state_dict(), getattr(model, name).state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), name
