"""jaxlab: JAX toolkit for optimization and loss-landscape research."""

from jaxlab import optim

__all__ = ["optim"]
