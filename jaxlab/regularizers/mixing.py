"""Sample mixing: mixup, CutMix, and the decoupled-mixup loss.

The mixing functions take a random ``key`` first, then a batch ``x`` ``[B, ...]`` and soft labels
``y`` ``[B, C]`` (one-hot or already soft), and pair each example ``i`` with ``perm[i]`` of a
random permutation of the batch. They return a :class:`MixedBatch` holding the mixed inputs and
labels together with ``lam`` and ``perm``, so a loss on integer labels can use
``labels_a = labels`` and ``labels_b = labels[perm]``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class MixedBatch(NamedTuple):
    """Output of :func:`mixup` / :func:`cutmix`.

    Attributes:
      inputs: mixed inputs, shape and dtype of ``x``.
      labels: mixed labels ``lam · y + (1 − lam) · y[perm]``, float32 ``[B, C]``.
      lam: float32 scalar weight of the original example ``i``.
      perm: int32 ``[B]`` partner indices.
    """

    inputs: jax.Array
    labels: jax.Array
    lam: jax.Array
    perm: jax.Array


def _check_batch(x, y, alpha, lam) -> None:
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got alpha={alpha}")
    if jnp.ndim(y) != 2 or jnp.shape(x)[:1] != jnp.shape(y)[:1]:
        raise ValueError(
            f"y must be [B, C] with B = x.shape[0], got x.shape={jnp.shape(x)}, "
            f"y.shape={jnp.shape(y)}"
        )
    if isinstance(lam, int | float) and not 0 <= lam <= 1:
        raise ValueError(f"lam must lie in [0, 1], got lam={lam}")


def _draw(key, batch: int, alpha: float, lam):
    k_lam, k_perm, k_rest = jax.random.split(key, 3)
    if lam is None:
        lam = jax.random.beta(k_lam, alpha, alpha)
    perm = jax.random.permutation(k_perm, batch).astype(jnp.int32)
    return jnp.asarray(lam, jnp.float32), perm, k_rest


def _mix_labels(y, lam, perm):
    y = y.astype(jnp.promote_types(y.dtype, jnp.float32))
    return lam * y + (1 - lam) * y[perm]


def mixup(key: jax.Array, x: jax.Array, y: jax.Array, *, alpha: float = 1.0, lam=None):
    r"""Mixup: convex combinations of example pairs and of their labels.

    .. math::
      \lambda \sim \mathrm{Beta}(\alpha, \alpha),\quad
      \tilde x_i = \lambda x_i + (1 - \lambda) x_{\pi(i)},\quad
      \tilde y_i = \lambda y_i + (1 - \lambda) y_{\pi(i)}

    with one λ per batch and π a uniform random permutation of the batch.

    Args:
      key: ``jax.random`` key.
      x: inputs ``[B, ...]`` (float; mixed in float32 and cast back to ``x.dtype``).
      y: labels ``[B, C]`` (one-hot or soft).
      alpha: Beta concentration (paper: 0.1–0.4 on ImageNet, 1.0 on CIFAR).
      lam: optional fixed λ in [0, 1] instead of a Beta draw (``lam=1`` is the identity).

    Returns:
      A :class:`MixedBatch` ``(inputs, labels, lam, perm)``.

    References:
      Zhang et al., "mixup: Beyond Empirical Risk Minimization", https://arxiv.org/abs/1710.09412;
      Guo et al., "MixUp as Locally Linear Out-Of-Manifold Regularization",
      https://arxiv.org/abs/1809.02499.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_batch(x, y, alpha, lam)
    lam, perm, _ = _draw(key, x.shape[0], alpha, lam)
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    inputs = (lam * xf + (1 - lam) * xf[perm]).astype(x.dtype)
    return MixedBatch(inputs, _mix_labels(y, lam, perm), lam, perm)


def cutmix(key: jax.Array, x: jax.Array, y: jax.Array, *, alpha: float = 1.0, lam=None):
    r"""CutMix: paste a random box from a partner image; labels weighted by the exact area.

    .. math::
      \lambda \sim \mathrm{Beta}(\alpha, \alpha),\quad
      h = \lfloor H\sqrt{1-\lambda}\rfloor,\ w = \lfloor W\sqrt{1-\lambda}\rfloor,\quad
      (c_y, c_x) \sim U(\{0..H-1\} \times \{0..W-1\}),

    the box is rows ``clip(c_y ∓ h//2, 0, H)`` and columns ``clip(c_x ∓ w//2, 0, W)`` (one box
    for the whole batch, as in the official code), ``x̃_i = M ⊙ x_i + (1 − M) ⊙ x_{π(i)}`` with
    ``M`` zero inside the box, and the label weight is recomputed from the clipped box:
    ``λ' = 1 − area / (H W)``, ``ỹ_i = λ' y_i + (1 − λ') y_{π(i)}``.

    Args:
      key: ``jax.random`` key.
      x: images ``[B, H, W, ...]`` (channels last, any trailing axes).
      y: labels ``[B, C]`` (one-hot or soft).
      alpha: Beta concentration (paper: 1.0).
      lam: optional fixed λ in [0, 1] for the box size (``lam=1`` gives an empty box).

    Returns:
      A :class:`MixedBatch`; its ``lam`` is the area-corrected λ'.

    References:
      Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
      Features", https://arxiv.org/abs/1905.04899 (box sampling follows the official
      clovaai/CutMix-PyTorch ``rand_bbox``).
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_batch(x, y, alpha, lam)
    if x.ndim < 3:
        raise ValueError(f"x must be [B, H, W, ...], got x.shape={x.shape}")
    height, width = x.shape[1:3]
    lam, perm, k_box = _draw(key, x.shape[0], alpha, lam)
    cut = jnp.sqrt(1 - jnp.clip(lam, 0, 1))
    half_h = jnp.floor(height * cut).astype(jnp.int32) // 2
    half_w = jnp.floor(width * cut).astype(jnp.int32) // 2
    k_y, k_x = jax.random.split(k_box)
    cy = jax.random.randint(k_y, (), 0, height)
    cx = jax.random.randint(k_x, (), 0, width)
    y1, y2 = jnp.clip(cy - half_h, 0, height), jnp.clip(cy + half_h, 0, height)
    x1, x2 = jnp.clip(cx - half_w, 0, width), jnp.clip(cx + half_w, 0, width)
    rows, cols = jnp.arange(height), jnp.arange(width)
    in_rows = (rows >= y1) & (rows < y2)
    in_cols = (cols >= x1) & (cols < x2)
    box = in_rows[:, None] & in_cols[None, :]
    box = box.reshape((1, height, width) + (1,) * (x.ndim - 3))
    inputs = jnp.where(box, x[perm], x)
    lam = 1 - ((y2 - y1) * (x2 - x1)).astype(jnp.float32) / (height * width)
    return MixedBatch(inputs, _mix_labels(y, lam, perm), lam, perm)


def _log_softmax_without(logits, exclude):
    """log softmax over all classes except ``exclude`` (per row); the excluded entry is -inf."""
    classes = jnp.arange(logits.shape[-1])
    masked = jnp.where(classes[None, :] == exclude[:, None], -jnp.inf, logits)
    return jax.nn.log_softmax(masked, axis=-1)


def decoupled_mixup_loss(
    logits: jax.Array,
    labels_a: jax.Array,
    labels_b: jax.Array,
    lam,
    *,
    eta: float = 0.1,
) -> jax.Array:
    r"""Decoupled mixup loss: mixup cross-entropy plus a decoupled-softmax term for each class.

    .. math::
      \ell = -\lambda \log p_a - (1-\lambda)\log p_b
        - \eta\,[a \ne b]\Big(\log\frac{e^{z_a}}{\sum_{k\ne b} e^{z_k}}
        + \log\frac{e^{z_b}}{\sum_{k\ne a} e^{z_k}}\Big)

    The decoupled terms score each mixed class with the other mixed class removed from the
    softmax denominator, so both classes can be confident at once (hard mixed samples are not
    suppressed). As in the official OpenMixup ``soft_mix_cross_entropy``, examples whose two
    labels coincide get the plain cross-entropy only.

    Args:
      logits: ``[B, C]`` logits of the mixed inputs (C ≥ 2).
      labels_a: ``[B]`` integer labels of the original examples.
      labels_b: ``[B]`` integer labels of the partners (``labels[perm]``).
      lam: weight of ``labels_a``, a scalar or ``[B]``.
      eta: weight of the decoupled terms (paper's ImageNet configs: 0.1; ``eta=0`` is mixup CE).

    Returns:
      float32 per-example losses ``[B]``.

    References:
      Liu et al., "Harnessing Hard Mixed Samples with Decoupled Regularizer" (NeurIPS 2023),
      https://arxiv.org/abs/2203.10761; official code Westlake-AI/openmixup
      ``openmixup/models/losses/cross_entropy_loss.py``.
    """
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be [B, C] with C >= 2, got logits.shape={logits.shape}")
    for name, lab in (("labels_a", labels_a), ("labels_b", labels_b)):
        if lab.shape != logits.shape[:1]:
            raise ValueError(f"{name} must have shape {logits.shape[:1]}, got {lab.shape}")
    if jnp.shape(lam) not in ((), logits.shape[:1]):
        raise ValueError(f"lam must be a scalar or [B], got lam.shape={jnp.shape(lam)}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got eta={eta}")
    z = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    lam = jnp.broadcast_to(jnp.asarray(lam, z.dtype), labels_a.shape)

    def pick(logp, labels):
        return jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]

    logp = jax.nn.log_softmax(z, axis=-1)
    mix_ce = -lam * pick(logp, labels_a) - (1 - lam) * pick(logp, labels_b)
    differ = labels_a != labels_b
    # Where a == b nothing is excluded (index -1), so no -inf arises; those rows are zeroed.
    dec_a = pick(_log_softmax_without(z, jnp.where(differ, labels_b, -1)), labels_a)
    dec_b = pick(_log_softmax_without(z, jnp.where(differ, labels_a, -1)), labels_b)
    decoupled = jnp.where(differ, -(dec_a + dec_b), 0)
    return mix_ce + eta * decoupled
