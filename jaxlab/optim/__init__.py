"""Optimizer transforms that compose with optax."""

from jaxlab.optim.averaging import (
    EmaParamsState,
    LawaState,
    ema_params_init,
    ema_params_update,
    lawa_average,
    lawa_init,
    lawa_push,
)
from jaxlab.optim.schedules import (
    adamw_ema_timescale,
    adamw_update_weights,
    warmup_cosine_to_fraction,
    warmup_linear_decay_to_zero,
    warmup_stable_decay,
)
from jaxlab.optim.weight_decay import WEIGHT_DECAY_MODES, adamw, sgdw, with_weight_decay

__all__ = [
    "WEIGHT_DECAY_MODES",
    "EmaParamsState",
    "LawaState",
    "adamw",
    "adamw_ema_timescale",
    "adamw_update_weights",
    "ema_params_init",
    "ema_params_update",
    "lawa_average",
    "lawa_init",
    "lawa_push",
    "sgdw",
    "warmup_cosine_to_fraction",
    "warmup_linear_decay_to_zero",
    "warmup_stable_decay",
    "with_weight_decay",
]
