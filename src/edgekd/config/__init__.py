"""Configuration: schemas (schema.py) and loading with all-at-once error reporting (loading.py)."""

from .loading import load_any, load_recipe_and_profile
from .schema import Budgets, Profile, Recipe

__all__ = ["Budgets", "Profile", "Recipe", "load_any", "load_recipe_and_profile"]
