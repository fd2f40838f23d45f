"""Sharpness monitoring inside the training loop, compiled once.

λ_max of the Hessian (Lanczos), its ratio to the optimizer's stability threshold (2/η for GD,
(2 + 2β)/η for heavy-ball momentum) and optionally Hutchinson's trace, measured on a fixed
monitoring batch with the model in inference mode. The measure is a jitted function of
``(params, model_state)`` with static configuration, so calling it every N steps never
recompiles.
"""

from collections.abc import Callable

import jax

from jaxlab.curvature.stability import hessian_sharpness


def sharpness_monitor(
    curvature_loss_fn: Callable,
    batch,
    *,
    learning_rate: float,
    optimizer: str = "gd",
    momentum: float = 0.9,
    num_trace_probes: int = 0,
    max_steps: int = 20,
    seed: int = 0,
) -> Callable:
    """Build ``monitor(state) -> dict`` of ``sharpness_*`` scalars for :func:`~jaxlab.train.fit`.

    Args:
      curvature_loss_fn: ``(params, (model_state, batch)) -> loss`` in inference mode (the third
        function of :func:`~jaxlab.train.objectives.classification_objective`).
      batch: the fixed monitoring batch (host arrays; kept on the device).
      learning_rate: η of the stability threshold.
      optimizer: ``'gd'`` or ``'momentum'`` (see
        :func:`~jaxlab.curvature.stability.stability_threshold`).
      momentum: β for ``'momentum'``.
      num_trace_probes: Hutchinson probes (0: no trace).
      max_steps: Lanczos steps.
      seed: key of the Lanczos start vector and the probes (the same at every call).

    Returns:
      ``monitor(state)`` returning ``sharpness_lambda_max``, ``sharpness_ratio`` (λ_max over the
      threshold) and, with probes, ``sharpness_trace``.
    """
    if optimizer not in ("gd", "momentum"):
        raise ValueError(f"optimizer must be 'gd' or 'momentum', got {optimizer!r}")
    batch = jax.device_put(batch)
    key = jax.random.PRNGKey(seed)

    def monitor(state):
        out = hessian_sharpness(
            curvature_loss_fn,
            state.params,
            (state.model_state, batch),
            key=key,
            learning_rate=learning_rate,
            optimizer=optimizer,
            momentum=momentum,
            num_trace_probes=num_trace_probes,
            max_steps=max_steps,
        )
        names = ["lambda_max", "ratio"] + (["trace"] if num_trace_probes else [])
        return {f"sharpness_{name}": out[name] for name in names}

    return monitor
