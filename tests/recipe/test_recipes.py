"""Every shipped recipe validates; overrides, inheritance, errors and the lock behave (torchtune style)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from vlmem.errors import ConfigError, UsageError
from vlmem.recipe import load_recipe, recipe_hash, shipped_recipes_dir, write_lock
from vlmem.recipe.load import ablation_variants

SHIPPED = sorted(shipped_recipes_dir().rglob("*.toml"))


def test_recipes_are_shipped():
    names = {str(p.relative_to(shipped_recipes_dir())) for p in SHIPPED}
    assert {"phase1.toml", "phase2.toml", "phase3.toml", "tiny/base.toml", "tiny/phase1.toml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(shipped_recipes_dir())))
def test_shipped_recipe_validates(path: Path):
    recipe = load_recipe(path)
    assert recipe.run.description, f"{path} needs run.description for `vlmem recipe ls`"
    ablation_variants(recipe, str(path))  # every ablation variant validates too


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(shipped_recipes_dir())))
def test_shipped_recipe_accepts_overrides(path: Path):
    recipe = load_recipe(path, ["train.lr=5e-6", "run.seed=3", "data.frames=32"])
    assert recipe.train.lr == 5e-6 and recipe.run.seed == 3 and recipe.data.frames == 32


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_precedence_set_over_recipe_over_base_over_defaults(tmp_path):
    _write(tmp_path, "base.toml", "[train]\nlr = 1e-3\nbatch_size = 4\n[model.memory]\nL_w = 4\n")
    child = _write(tmp_path, "child.toml", 'base = "base.toml"\n[train]\nlr = 2e-3\n')
    r = load_recipe(child)
    assert (r.train.lr, r.train.batch_size, r.model.memory.L_w, r.model.memory.L_e) == (2e-3, 4, 4, 32)
    r = load_recipe(child, ["train.lr=3e-3"])
    assert r.train.lr == 3e-3


def test_all_problems_reported_at_once(tmp_path):
    bad = _write(tmp_path, "bad.toml", '[model.memory]\nkindd = "dual"\nL_w = 0\nkind = "foo"\n[train]\nlr = "fast"\n')
    with pytest.raises(ConfigError) as err:
        load_recipe(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert len(err.value.problems) == 4
    assert "unknown key 'model.memory.kindd'" in msg and "L_e" in msg  # names the valid keys
    assert "model.memory.kind = 'foo'" in msg and "'dual'" in msg and "'titans'" in msg
    assert "model.memory.L_w = 0" in msg
    assert "train.lr = 'fast'" in msg
    assert err.value.exit_code == 2


def test_bad_override_key_is_an_error():
    with pytest.raises(ConfigError) as err:
        load_recipe("tiny/base", ["model.memroy.L_w=3"])
    assert "model.memroy" in str(err.value) and "memory" in str(err.value)


def test_impossible_combinations():
    with pytest.raises(ConfigError, match="phase = 1 trains only the memory"):
        load_recipe("tiny/phase1", ['model.memory.kind="none"'])
    with pytest.raises(ConfigError, match="needs geometry"):
        load_recipe("tiny/base", ['model.geometry.source="none"'])
    with pytest.raises(ConfigError, match="does not divide"):
        load_recipe("tiny/phase1", ["model.memory.num_heads=5"])


def test_inheritance_loop_and_missing_base(tmp_path):
    _write(tmp_path, "a.toml", 'base = "b.toml"\n')
    _write(tmp_path, "b.toml", 'base = "a.toml"\n')
    with pytest.raises(ConfigError, match="loops"):
        load_recipe(tmp_path / "a.toml")
    _write(tmp_path, "c.toml", 'base = "nope.toml"\n')
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "c.toml")
    with pytest.raises(UsageError, match="not found"):
        load_recipe(tmp_path / "missing.toml")


def test_hash_is_stable_and_sensitive():
    a, b = load_recipe("tiny/base", ["train.lr=1e-3"]), load_recipe("tiny/base", ["train.lr=1e-3"])
    assert recipe_hash(a) == recipe_hash(b)
    assert recipe_hash(a) != recipe_hash(load_recipe("tiny/base", ["train.lr=2e-3"]))


def test_lock_file_is_a_loadable_recipe(tmp_path):
    recipe = load_recipe("tiny/base", ["run.seed=7"])
    path = write_lock(recipe, tmp_path, world_size=2, overrides=["run.seed=7"])
    data = tomllib.loads(path.read_text())
    assert data["lock"]["hash"] == recipe_hash(recipe)
    assert data["lock"]["seed"] == 7 and data["lock"]["world_size"] == 2
    assert "torch" in data["lock"]["packages"]
    again = load_recipe(path)
    assert recipe_hash(again) == recipe_hash(recipe)


def test_no_recipe_key_imports_a_dotted_path():
    """Components are enums: a dotted path is rejected, never imported."""
    with pytest.raises(ConfigError, match="valid choices"):
        load_recipe("tiny/base", ['model.memory.kind="os.system"'])


def test_a_named_variant_can_run_fewer_seeds(tmp_path):
    path = _write(tmp_path, "ab.toml", '[ablate]\nseeds = [0, 1, 2]\nquick = { "ablate.seeds" = [5] }\n'
                  '[ablate.variants]\nmain = {}\nbound = { "model.context_frames" = 0, "ablate.seeds" = [0] }\n')
    recipe = load_recipe(path)
    labels = [label for label, _ in ablation_variants(recipe, str(path))]
    assert labels == ["main/seed0", "main/seed1", "main/seed2", "bound/seed0"]
    assert [label for label, _ in ablation_variants(recipe, str(path), quick=True)] == ["main", "bound"]
    assert [v.run.seed for _, v in ablation_variants(recipe, str(path), quick=True)] == [5, 5]
    bad = _write(tmp_path, "bad.toml", '[ablate]\nseeds = [0, 1]\n[ablate.variants]\nx = { "ablate.seeds" = 3 }\n')
    with pytest.raises(ConfigError, match=r"ablate.variants.x.*non-empty list of integers"):
        ablation_variants(load_recipe(bad), str(bad))
