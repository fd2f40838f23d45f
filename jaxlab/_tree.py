"""Pytree reductions accumulated in float32 (float64 when x64 is on), whatever the leaf dtype."""

import functools

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


def upcast(x: jax.Array) -> jax.Array:
    """``x`` in its accumulation dtype (bfloat16/float16/float32 → float32; float64 stays)."""
    return x.astype(accumulation_dtype(x))


def tree_accumulation_dtype(tree) -> jnp.dtype:
    """float32, or float64 when some leaf is float64: the dtype of optimizer scalars."""
    return functools.reduce(
        jnp.promote_types, [accumulation_dtype(x) for x in jax.tree.leaves(tree)], jnp.float32
    )


def leaf_flags(mask, tree) -> list[bool]:
    """One static bool per leaf of ``tree`` from an ``optax.masked``-style mask.

    ``mask`` is None (every leaf), a pytree of bools that is a prefix of ``tree``, or a function
    of ``tree`` returning one. The bools must be Python/NumPy values, not traced.
    """
    if mask is None:
        return [True] * len(jax.tree.leaves(tree))
    mask = mask(tree) if callable(mask) else mask
    full = jax.tree.map(lambda m, x: jax.tree.map(lambda _: bool(m), x), mask, tree)
    return jax.tree.leaves(full)
