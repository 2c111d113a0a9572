"""`vlmem eval --set`: overrides apply to the run's recipe lock; with --predictions they are a usage error."""

from __future__ import annotations

import pytest

from vlmem.cli import main
from vlmem.errors import ConfigError
from vlmem.runs import load_run_recipe


def _run_folder(tmp_path):
    from vlmem.recipe import load_recipe
    from vlmem.recipe.lock import write_lock

    run = tmp_path / "runs/x"
    run.mkdir(parents=True)
    write_lock(load_recipe("phase1"), run)
    return run


def test_set_overrides_the_run_recipe(tmp_path):
    run = _run_folder(tmp_path)
    recipe = load_run_recipe(run, ["model.geometry.cached_dir=feats/{data_source}", "data.frames=8"])
    assert recipe.model.geometry.cached_dir == "feats/{data_source}" and recipe.data.frames == 8
    assert load_run_recipe(run).model.geometry.cached_dir == "data/vlm_3r_data/{data_source}/spatial_features"
    with pytest.raises(ConfigError, match="model.geometry.nope"):
        load_run_recipe(run, ["model.geometry.nope=1"])


def test_set_with_predictions_is_a_usage_error(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": 1, "question_type": "object_counting", "ground_truth": "2", "prediction": "2"}\n')
    assert main(["eval", "vsibench", "--predictions", str(preds), "--set", "data.frames=8"]) == 2
    assert "--set" in capsys.readouterr().err
