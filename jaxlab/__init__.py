"""jaxlab: JAX toolkit for optimization and loss-landscape research."""

from jaxlab import curvature, losses, optim, regularizers

__all__ = ["curvature", "losses", "optim", "regularizers"]
