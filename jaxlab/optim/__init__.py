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
from jaxlab.optim.gradient_projection import BloopState, bloop, scale_by_perp_grad
from jaxlab.optim.induced_metric import (
    InducedMetricState,
    induced_metric_sgd,
    scale_by_induced_metric,
)
from jaxlab.optim.momentum_models import MomoAdamState, MomoState, momo, momo_adam
from jaxlab.optim.momentum_variants import (
    DotMomentumState,
    GravityState,
    dot_momentum,
    dot_sgd,
    grams,
    gravity,
    scale_by_grams,
    scale_by_gravity,
)
from jaxlab.optim.sam_gradient import sam_value_and_grad
from jaxlab.optim.schedules import (
    adamw_ema_timescale,
    adamw_update_weights,
    warmup_cosine_to_fraction,
    warmup_linear_decay_to_zero,
    warmup_stable_decay,
)
from jaxlab.optim.sharpness_aware import SAMDiagnostics, SAMState, gsam_rho_schedule, sam
from jaxlab.optim.trajectory_loss import (
    SafMemory,
    mesa_loss,
    saf_loss,
    saf_memory_init,
    saf_memory_update,
)
from jaxlab.optim.weight_decay import WEIGHT_DECAY_MODES, adamw, sgdw, with_weight_decay
from jaxlab.optim.weight_perturbation import AMP_BALLS, amp_value_and_grad, awp_value_and_grad

__all__ = [
    "AMP_BALLS",
    "WEIGHT_DECAY_MODES",
    "BloopState",
    "DotMomentumState",
    "EmaParamsState",
    "GravityState",
    "InducedMetricState",
    "LawaState",
    "MomoAdamState",
    "MomoState",
    "SAMDiagnostics",
    "SAMState",
    "SafMemory",
    "adamw",
    "adamw_ema_timescale",
    "adamw_update_weights",
    "amp_value_and_grad",
    "awp_value_and_grad",
    "bloop",
    "dot_momentum",
    "dot_sgd",
    "ema_params_init",
    "ema_params_update",
    "grams",
    "gravity",
    "gsam_rho_schedule",
    "induced_metric_sgd",
    "lawa_average",
    "lawa_init",
    "lawa_push",
    "mesa_loss",
    "momo",
    "momo_adam",
    "saf_loss",
    "saf_memory_init",
    "saf_memory_update",
    "sam",
    "sam_value_and_grad",
    "scale_by_grams",
    "scale_by_gravity",
    "scale_by_induced_metric",
    "scale_by_perp_grad",
    "sgdw",
    "warmup_cosine_to_fraction",
    "warmup_linear_decay_to_zero",
    "warmup_stable_decay",
    "with_weight_decay",
]
