"""Optimizers by name, for command lines and config files.

``make_optimizer("sam", 0.1, rho=0.05, inner="momentum")`` builds
``sam(optax.sgd(0.1, momentum=0.9), rho=0.05)``. Names: jaxlab's own (``sgdw``, ``adamw``,
``momo``, ``momo_adam``), ``momentum`` (heavy-ball SGD, β = 0.9), the SAM family (``sam``,
``asam``, ``fsam``, ``gsam``, ``looksam``; keyword ``inner`` names the base optimizer, default
``momentum``; every other keyword goes to :func:`~jaxlab.optim.sam` if it is one of its
parameters and to the base optimizer otherwise), and any optax optimizer that takes a learning
rate first (``sgd``, ``adam``, ``lion``, ...).
"""

import inspect
from collections.abc import Callable

import optax

from jaxlab.optim.momentum_models import momo, momo_adam
from jaxlab.optim.sharpness_aware import sam
from jaxlab.optim.weight_decay import adamw, sgdw


def _momentum(learning_rate, momentum: float = 0.9, nesterov: bool = False):
    return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "momentum": _momentum,
    "sgdw": sgdw,
    "adamw": adamw,
    "momo": momo,
    "momo_adam": momo_adam,
}
SAM_VARIANTS: dict[str, dict] = {
    "sam": {},
    "asam": {"perturbation": "asam"},
    "fsam": {"perturbation": "fsam"},
    "gsam": {"combination": "gsam"},
    "looksam": {"combination": "looksam"},
}
_SAM_KEYWORDS = set(inspect.signature(sam).parameters) - {"inner", "axis_name"}


def _factory(name: str) -> Callable:
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    factory = getattr(optax, name, None)
    if name.startswith("_") or not callable(factory) or isinstance(factory, type):
        known = sorted([*OPTIMIZERS, *SAM_VARIANTS])
        raise ValueError(
            f"unknown optimizer {name!r}; jaxlab names: {known}, or an optax optimizer"
        )
    return factory


def _check_keywords(name: str, factory: Callable, hparams: dict) -> None:
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(hparams) - set(parameters) - {"learning_rate"})
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise ValueError(
            f"optimizer {name!r} has no hyperparameter(s) {unknown}; it takes "
            f"{sorted(set(parameters) - {'learning_rate'})}"
        )


def make_optimizer(
    name: str, learning_rate: optax.ScalarOrSchedule, *, axis_name: str | None = None, **hparams
) -> optax.GradientTransformation:
    """The optimizer ``name`` with ``learning_rate`` and keyword hyperparameters.

    Args:
      name: see the module docstring.
      learning_rate: a float or an optax schedule.
      axis_name: data-parallel axis for the SAM family (its perturbed gradient is local and must
        be averaged); the train step averages the other optimizers' inputs itself.
      **hparams: the optimizer's keyword arguments.

    Raises:
      ValueError: unknown name or hyperparameter (naming it and the accepted ones).
    """
    if name in SAM_VARIANTS:
        inner_name = hparams.pop("inner", "momentum")
        if inner_name in SAM_VARIANTS:
            raise ValueError(f"inner must be a base optimizer, got inner={inner_name!r}")
        sam_kwargs = {k: hparams.pop(k) for k in list(hparams) if k in _SAM_KEYWORDS}
        inner = make_optimizer(inner_name, learning_rate, **hparams)
        return sam(inner, axis_name=axis_name, **SAM_VARIANTS[name], **sam_kwargs)
    factory = _factory(name)
    _check_keywords(name, factory, hparams)
    return factory(learning_rate, **hparams)
