"""Scaling: μP multipliers, scaling laws (Kaplan, Step Law, LR annealing, loss-to-loss), fits."""

from jaxlab.scaling.annealing import (
    AnnealingLaw,
    fit_lr_annealing_law,
    lr_annealing_areas,
    lr_annealing_loss,
)
from jaxlab.scaling.deceleration import LossDeceleration, fit_loss_deceleration
from jaxlab.scaling.embedding import scale_embeddings, small_init_std
from jaxlab.scaling.hyperparameters import step_law
from jaxlab.scaling.kaplan import critical_batch_size, kaplan_loss, minimum_steps, minimum_tokens
from jaxlab.scaling.loss_to_loss import LossToLoss, fit_loss_to_loss, loss_to_loss
from jaxlab.scaling.mup import MupScales, mup_learning_rate_scaling, mup_scales
from jaxlab.scaling.power_law import PowerLaw, fit_power_law

__all__ = [
    "AnnealingLaw",
    "LossDeceleration",
    "LossToLoss",
    "MupScales",
    "PowerLaw",
    "critical_batch_size",
    "fit_loss_deceleration",
    "fit_loss_to_loss",
    "fit_lr_annealing_law",
    "fit_power_law",
    "kaplan_loss",
    "loss_to_loss",
    "lr_annealing_areas",
    "lr_annealing_loss",
    "minimum_steps",
    "minimum_tokens",
    "mup_learning_rate_scaling",
    "mup_scales",
    "scale_embeddings",
    "small_init_std",
    "step_law",
]
