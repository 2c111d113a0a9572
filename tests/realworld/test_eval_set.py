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


def test_sensor_run_on_a_benchmark_without_sensor_data_fails_before_the_model(tmp_path):
    """A run trained with sensor geometry, scored on VSI-Bench (videos only): refused by the data check that
    runs before the model loads, naming the key and what sensor geometry needs."""
    from vlmem.data.vsibench import prepare_vsibench
    from vlmem.errors import DataError
    from vlmem.eval.generate import check_eval_data
    from vlmem.recipe import load_recipe

    from .miniature import make_vsibench_world

    parquet = make_vsibench_world(tmp_path)
    prepare_vsibench(parquet, tmp_path / "VSI-Bench", tmp_path / "vsibench")
    sensor = load_recipe("tiny/base")
    assert sensor.model.geometry.source == "sensor"
    with pytest.raises(DataError, match="model.geometry.source = 'sensor'.*ScanNet/ARKitScenes"):
        check_eval_data(sensor, tmp_path / "vsibench", "eval", 4)
    cached = load_recipe("phase1", [f"model.geometry.cached_dir={tmp_path}/vsibench_features/{{data_source}}"])
    assert check_eval_data(cached, tmp_path / "vsibench", "eval", 4) == 6
    elsewhere = load_recipe("phase1", [f"model.geometry.cached_dir={tmp_path}/nope/{{data_source}}"])
    with pytest.raises(DataError, match="--set model.geometry.cached_dir"):
        check_eval_data(elsewhere, tmp_path / "vsibench", "eval", 4)
    make_vsibench_world(tmp_path / "b", points=False)  # VLM-3R's script as it is: no pts3d
    no_points = load_recipe("phase1", [f"model.geometry.cached_dir={tmp_path}/b/vsibench_features/{{data_source}}"])
    with pytest.raises(DataError, match="no key 'points' \\(or 'pts3d'\\)"):
        check_eval_data(no_points, tmp_path / "vsibench", "eval", 4)
    vlm3r_fusion = load_recipe("phase1", [f"model.geometry.cached_dir={tmp_path}/b/vsibench_features/{{data_source}}",
                                          "model.fusion.position_injection=false"])
    assert check_eval_data(vlm3r_fusion, tmp_path / "vsibench", "eval", 4) == 6
