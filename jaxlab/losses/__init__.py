"""Losses: per-example values, data first, keyword-only hyperparameters (optax.losses style)."""
