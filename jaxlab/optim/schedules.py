"""Learning-rate schedules (``optax.Schedule``: step count → value) and AdamW timescale helpers.

Every schedule warms up linearly from ``init_value`` to ``peak_value`` over ``warmup_steps`` and
then decays; after ``total_steps`` it stays at its final value.
"""

import jax.numpy as jnp
import optax

from jaxlab.optim._checks import check_non_negative, check_positive

DECAY_SHAPES = ("linear", "cosine", "sqrt")


def _check_steps(total_steps: int, warmup_steps: int, decay_steps: int | None = None) -> None:
    if not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive int, got total_steps={total_steps!r}")
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be an int in [0, total_steps={total_steps}), "
            f"got warmup_steps={warmup_steps!r}"
        )
    if decay_steps is not None and (
        not isinstance(decay_steps, int) or not 0 < decay_steps <= total_steps - warmup_steps
    ):
        raise ValueError(
            f"decay_steps must be an int in (0, total_steps - warmup_steps = "
            f"{total_steps - warmup_steps}], got decay_steps={decay_steps!r}"
        )


def _with_warmup(decay, peak_value: float, warmup_steps: int, init_value: float) -> optax.Schedule:
    """Linear warmup to ``peak_value`` for ``warmup_steps``, then ``decay(steps after warmup)``."""

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        warm = init_value + (peak_value - init_value) * t / max(warmup_steps, 1)
        return jnp.where(t < warmup_steps, warm, decay(t - warmup_steps)).astype(jnp.float32)

    return schedule


def _decay_shape(shape: str, progress):
    """Fraction of the peak left at ``progress`` ∈ [0, 1] of the decay phase (1 → 0)."""
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return 1.0 - jnp.sqrt(progress)


def warmup_linear_decay_to_zero(
    peak_value: float, total_steps: int, warmup_steps: int = 0, *, init_value: float = 0.0
) -> optax.Schedule:
    """Linear warmup, then linear decay to exactly zero at ``total_steps`` (D2Z).

    .. math::
      η_t = η_{\\max} \\frac{T − t}{T − T_w} \\quad (T_w ≤ t ≤ T), \\qquad η_t = 0 \\ (t ≥ T)

    References:
      Bergsma et al., "Straight to Zero: Why Linearly Decaying the Learning Rate to Zero Works
      Best for LLMs", ICLR 2025, https://arxiv.org/abs/2502.15938.
    """
    return warmup_stable_decay(
        peak_value,
        total_steps,
        warmup_steps,
        decay_steps=total_steps - warmup_steps,
        decay_shape="linear",
        init_value=init_value,
    )


def warmup_cosine_to_fraction(
    peak_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    *,
    final_fraction: float = 0.1,
    init_value: float = 0.0,
) -> optax.Schedule:
    """Linear warmup, then cosine decay to ``final_fraction · peak_value`` at ``total_steps``.

    .. math::
      η_t = η_{\\min} + (η_{\\max} − η_{\\min})\\,\\tfrac12\\bigl(1 + \\cos(π\\,
      \\tfrac{t − T_w}{T − T_w})\\bigr), \\qquad η_{\\min} = f\\,η_{\\max}

    ``final_fraction=0.1`` is the common "cosine to 10 %" baseline of Bergsma et al. (2025).
    """
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"final_fraction must be in [0, 1], got final_fraction={final_fraction!r}")
    return warmup_stable_decay(
        peak_value,
        total_steps,
        warmup_steps,
        decay_steps=total_steps - warmup_steps,
        decay_shape="cosine",
        final_value=final_fraction * peak_value,
        init_value=init_value,
    )


def warmup_stable_decay(
    peak_value: float,
    total_steps: int,
    warmup_steps: int,
    *,
    decay_steps: int,
    decay_shape: str = "linear",
    final_value: float = 0.0,
    init_value: float = 0.0,
) -> optax.Schedule:
    """Warmup–stable–decay (WSD, "trapezoidal"): warm up, hold the peak, decay in the last steps.

    The decay phase covers the last ``decay_steps`` steps and goes from ``peak_value`` to
    ``final_value`` with shape ``linear`` (1 − p), ``cosine`` (½(1 + cos πp)) or ``sqrt``
    (1 − √p), where p ∈ [0, 1] is the progress through the decay phase.

    References:
      Hu et al., "MiniCPM", 2024, https://arxiv.org/abs/2404.06395; Hägele et al., "Scaling Laws
      and Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS 2024,
      https://arxiv.org/abs/2405.18392 (the 1 − sqrt cooldown).
    """
    _check_steps(total_steps, warmup_steps, decay_steps)
    check_positive("peak_value", peak_value)
    check_non_negative("final_value", final_value)
    check_non_negative("init_value", init_value)
    if decay_shape not in DECAY_SHAPES:
        raise ValueError(f"decay_shape must be one of {DECAY_SHAPES}, got {decay_shape!r}")
    decay_start = total_steps - warmup_steps - decay_steps  # steps after warmup

    def decay(t):
        progress = jnp.clip((t - decay_start) / decay_steps, 0.0, 1.0)
        return final_value + (peak_value - final_value) * _decay_shape(decay_shape, progress)

    return _with_warmup(decay, peak_value, warmup_steps, init_value)


def adamw_ema_timescale(learning_rate: float, weight_decay: float) -> float:
    """The EMA timescale 1/(ηλ), in steps, of AdamW's weights (coupled decay).

    AdamW's step θ ← (1 − ηλ)θ − ηu makes θ an exponential moving average of −u/λ with rate ηλ,
    so the weights remember about 1/(ηλ) steps. For ``independent`` decay pass
    ``learning_rate=η_t/η_max`` (1 at the peak). Multiply by the batch size for a timescale in
    samples, or divide by the steps per epoch for one in epochs.

    References:
      Wang & Aitchison, "How to set AdamW's weight decay as you scale model and dataset size",
      ICML 2025, https://arxiv.org/abs/2405.13698; Bergsma et al. (2025), ibid.
    """
    check_positive("learning_rate", learning_rate)
    check_positive("weight_decay", weight_decay)
    return 1.0 / (learning_rate * weight_decay)


def adamw_update_weights(learning_rates, weight_decay: float) -> jnp.ndarray:
    """Weight of each step's update in AdamW's final parameters, viewed as an EMA.

    With per-step rates a_t = η_t λ, unrolling θ_{t+1} = (1 − a_t)θ_t + a_t(−u_t/λ) gives
    θ_T = Π_t(1 − a_t) θ_0 + Σ_t c_t (−u_t/λ) with

    .. math::  c_t = a_t \\prod_{s > t} (1 − a_s), \\qquad \\sum_t c_t = 1 − \\prod_t (1 − a_t).

    Args:
      learning_rates: η_t for t = 0..T−1 (e.g. a schedule evaluated at ``jnp.arange(T)``).
      weight_decay: λ (coupled convention).

    Returns:
      c_t for t = 0..T−1.
    """
    check_non_negative("weight_decay", weight_decay)
    a = jnp.asarray(learning_rates, jnp.float32) * weight_decay
    keep = jnp.cumprod((1.0 - a)[::-1])[::-1]  # Π_{s ≥ t}(1 − a_s)
    later = jnp.concatenate([keep[1:], jnp.ones((1,), keep.dtype)])  # Π_{s > t}
    return a * later
