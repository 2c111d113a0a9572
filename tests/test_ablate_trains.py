"""Every shipped ablation trains what it varies: `vlmem ablate --dry-run` over every variant."""

from __future__ import annotations

import pytest

from vlmem.cli import main
from vlmem.recipe import load_recipe, shipped_recipes_dir

SHIPPED = sorted(p.name for p in (shipped_recipes_dir() / "ablate").glob("*.toml"))
# the component a varied recipe key belongs to (DecoderVLM's decoder is its "lm")
COMPONENT_OF = {"model.memory": "memory", "model.fusion": "fusion", "model.decoder": "lm"}
MEMORY_PARAMS_OFF = {"none"}  # kinds without parameters


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate-dry") / "synth"
    assert main(["prepare-data", "synthetic", "--out", str(root), "--scenes", "2", "--frames", "8", "--size", "32"]) == 0
    return root


def _varied(recipe) -> dict[str, dict]:
    ab = recipe.ablate
    out = {name: dict(o) for name, o in ab.variants.items()}
    for key, values in ab.grid.items():
        for v in values:
            out.setdefault(f"{key.split('.')[-1]}={v}", {})[key] = v
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_ablation_trains_what_it_varies(name, synth, capsys):
    from vlmem.ablate import dry_run_ablation

    path = str(shipped_recipes_dir() / "ablate" / name)
    sets = [f"data.root={synth}", "train.init_from=", "model.vision.image_size=32"]
    rows = dry_run_ablation(path, sets)
    varied = _varied(load_recipe(path))
    memory_varied = any(k.startswith("model.memory.") for o in varied.values() for k in o) or \
        any(k == "model.memory.L_w" for k in load_recipe(path).ablate.grid)
    checked = 0
    for row in rows:
        label = row["variant"].split("/seed")[0]
        overrides = next((o for n, o in varied.items() if label == n or label.startswith(n)), {})
        for key, value in overrides.items():
            if key == "train.trainable":
                needs = [c for c in value if c in row["params"]]
            else:
                needs = [c for prefix, c in COMPONENT_OF.items() if key.startswith(prefix + ".")]
            for c in needs:
                if c == "memory" and row["memory"] in MEMORY_PARAMS_OFF:
                    continue
                assert row["params"][c][0] > 0, f"{name} [{label}]: varies {key} but {c} trains 0 parameters"
                checked += 1
        if memory_varied and row["memory"] not in MEMORY_PARAMS_OFF:
            assert row["context_frames"] > 0, f"{name} [{label}]: memory varied but the LM sees every frame"
            assert row["params"]["memory"][0] > 0, f"{name} [{label}]: memory varied but frozen"
    assert checked, f"{name}: no varied component found"
    assert "trainable" in capsys.readouterr().out


def test_ablate_dry_run_from_the_cli(synth, capsys):
    assert main(["ablate", str(shipped_recipes_dir() / "ablate/memory_sizes.toml"), "--dry-run",
                 "--set", f"data.root={synth}", "--set", "train.init_from="]) == 0
    out = capsys.readouterr().out
    assert "memory_sizes.toml" in out and "45,696" in out  # the dual memory: trainable


def test_adam_betas_reach_the_optimizer():
    import torch

    from vlmem.train.params import make_optimizer

    recipe = load_recipe(str(shipped_recipes_dir() / "trm.toml"))
    assert recipe.train.adam_betas == [0.9, 0.95]  # the seed's
    model = torch.nn.Module()
    model.memory = torch.nn.Linear(2, 2)
    model.projector = torch.nn.Linear(2, 2)
    opt = make_optimizer(model, recipe)
    assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)
    assert load_recipe(str(shipped_recipes_dir() / "tiny/base.toml")).train.adam_betas == [0.9, 0.999]


def test_adam_betas_out_of_range_is_a_config_error(tmp_path, capsys):
    assert main(["recipe", "validate", str(shipped_recipes_dir() / "trm.toml"), "--set", "train.adam_betas=[0.9, 1.5]"]) == 2
    assert "adam_betas" in capsys.readouterr().err


def test_qa_ablation_plot_shows_em_and_f1_and_tables_say_what_trained(tmp_path):
    from vlmem.ablate import _plot, write_tables

    rows = [{"variant": f"n={n}", "seed": 0, "overall": f1, "exact_match": em, "f1": f1, "trained": "lm+projector",
             "memory_trainable": 0, "trainable_params": 1_234_567, "total_params": 2_000_000, "minutes": 0.1}
            for n, em, f1 in ((2, 10.0, 20.0), (4, 30.0, 40.0))]
    write_tables(rows, tmp_path)
    md = (tmp_path / "ablation.md").read_text()
    assert "lm+projector" in md and "1,234,567" in md
    assert _plot([{**r, "seeds": 1} for r in rows], tmp_path / "p.png") == ["exact_match", "f1"]
    assert _plot([{"variant": "a", "overall": 1.0}], tmp_path / "q.png") == ["overall"]


def test_init_partial_loads_what_fits_and_names_the_rest(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from vlmem.errors import CheckpointError
    from vlmem.train.checkpoint import MODEL_FILE, load_model_weights

    saved = {"a.weight": torch.ones(2, 2), "b.weight": torch.ones(3, 2), "gone.weight": torch.ones(1)}
    save_file(saved, str(tmp_path / MODEL_FILE))
    model = torch.nn.Module()
    model.a, model.b = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 4, bias=False)  # b reshaped, gone removed
    fresh_b = model.b.weight.detach().clone()
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model_weights(model, tmp_path)
    load_model_weights(model, tmp_path, strict_keys=False)
    assert torch.equal(model.a.weight, torch.ones(2, 2)) and torch.equal(model.b.weight, fresh_b)
    err = capsys.readouterr().err
    assert "2 saved tensors" in err and "init_partial" in err
