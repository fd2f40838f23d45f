"""jaxlab: JAX toolkit for optimization and loss-landscape research."""

from jaxlab import curvature, optim

__all__ = ["curvature", "optim"]
