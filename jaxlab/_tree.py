"""Pytree reductions accumulated in float32 (float64 when x64 is on), whatever the leaf dtype."""

import jax
import jax.numpy as jnp


def accumulation_dtype(x) -> jnp.dtype:
    """float64 for float64 leaves, else float32: the dtype that norms and inner products use."""
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


def tree_vdot(a, b) -> jax.Array:
    """Σ_leaves ⟨a, b⟩ with every product and sum in at least float32."""
    leaves = [
        jnp.vdot(x.astype(accumulation_dtype(x)), y.astype(accumulation_dtype(x)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    ]
    return sum(leaves, jnp.zeros((), jnp.float32))


def tree_sq_norm(a) -> jax.Array:
    """‖a‖² over all leaves, accumulated in at least float32."""
    return tree_vdot(a, a)


def tree_norm(a) -> jax.Array:
    """‖a‖₂ over all leaves, accumulated in at least float32."""
    return jnp.sqrt(tree_sq_norm(a))
