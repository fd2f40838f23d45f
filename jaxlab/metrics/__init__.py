"""Metrics of representations, kernels, weights and predictions: RankMe, neural collapse, AVH,
empirical NTK and alignment, principal angles and spectral drift, zero-sum learning, calibration."""

from jaxlab.metrics.calibration import (
    Calibration,
    expected_calibration_error,
    plot_reliability_diagram,
)
from jaxlab.metrics.hardness import angular_visual_hardness
from jaxlab.metrics.interference import zero_sum_learning_ratio
from jaxlab.metrics.kernels import empirical_ntk, kernel_target_alignment
from jaxlab.metrics.neural_collapse import neural_collapse
from jaxlab.metrics.rank import rankme
from jaxlab.metrics.subspace import principal_angles, spectral_drift

__all__ = [
    "Calibration",
    "angular_visual_hardness",
    "empirical_ntk",
    "expected_calibration_error",
    "kernel_target_alignment",
    "neural_collapse",
    "plot_reliability_diagram",
    "principal_angles",
    "rankme",
    "spectral_drift",
    "zero_sum_learning_ratio",
]
