"""Fuzzing the recipe validation through the CLI (see recipe_mutations.py)."""
