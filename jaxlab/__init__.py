"""jaxlab: JAX toolkit for optimization and loss-landscape research."""

from jaxlab import curvature, losses, optim

__all__ = ["curvature", "losses", "optim"]
