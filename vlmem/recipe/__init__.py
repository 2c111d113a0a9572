"""Recipes: TOML -> typed, validated `Recipe`; overrides; base inheritance; lock file."""

from vlmem.recipe.load import (
    apply_overrides,
    default_trainable,
    find_recipe,
    load_recipe,
    shipped_recipes_dir,
)
from vlmem.recipe.lock import recipe_hash, recipe_to_toml, write_lock
from vlmem.recipe.schema import Recipe

__all__ = [
    "Recipe",
    "apply_overrides",
    "default_trainable",
    "find_recipe",
    "load_recipe",
    "recipe_hash",
    "recipe_to_toml",
    "shipped_recipes_dir",
    "write_lock",
]
