"""jaxlab: JAX toolkit for optimization and loss-landscape research."""

from jaxlab import curvature, data, losses, metrics, models, optim, regularizers, scaling, train

__all__ = [
    "curvature",
    "data",
    "losses",
    "metrics",
    "models",
    "optim",
    "regularizers",
    "scaling",
    "train",
]
