"""Regularizers and data-side tricks: penalties, mixing, reweighting, augmentation."""

from jaxlab.regularizers.augment import rand_augment  # the image ops: regularizers.augment
from jaxlab.regularizers.data_selection import (
    color_filter_scores,
    select_top_fraction,
    useful_upsample_indices,
)
from jaxlab.regularizers.mixing import (
    MixedBatch,
    cutmix,
    decoupled_mixup_loss,
    mixup,
)
from jaxlab.regularizers.penalties import (
    ELRState,
    conr_loss,
    elr_init,
    elr_loss,
    hgp_alignment_penalty,
    hutchinson_alignment_penalty,
    irm_objective,
    irmv1_penalty,
    multi_sample_dropout_loss,
    spectral_regularizer,
    wasserstein_init_regularizer,
)
from jaxlab.regularizers.representation import (
    NCRegularizers,
    dispersive_loss,
    nc_inducing_regularizers,
)
from jaxlab.regularizers.reweighting import (
    cooldown_temperature,
    scalarization_weights,
    temperature_sampling_probs,
)

__all__ = [
    "ELRState",
    "MixedBatch",
    "NCRegularizers",
    "color_filter_scores",
    "conr_loss",
    "cooldown_temperature",
    "cutmix",
    "decoupled_mixup_loss",
    "dispersive_loss",
    "elr_init",
    "elr_loss",
    "hgp_alignment_penalty",
    "hutchinson_alignment_penalty",
    "irm_objective",
    "irmv1_penalty",
    "mixup",
    "multi_sample_dropout_loss",
    "nc_inducing_regularizers",
    "rand_augment",
    "scalarization_weights",
    "select_top_fraction",
    "spectral_regularizer",
    "temperature_sampling_probs",
    "useful_upsample_indices",
    "wasserstein_init_regularizer",
]
