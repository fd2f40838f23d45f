"""Neural-collapse metrics NC1–NC4 of penultimate-layer features and the last-layer classifier."""

import functools

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast
from jaxlab.metrics._checks import as_float, as_labels, check_int


def _class_statistics(h, labels, num_classes):
    """Class means (C, D), global mean (D,), within- and between-class covariances (D, D)."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=h.dtype)
    counts = jnp.sum(onehot, axis=0)
    means = (onehot.T @ h) / jnp.where(counts > 0, counts, 1.0)[:, None]
    global_mean = jnp.mean(h, axis=0)
    within = h - means[labels]
    sigma_w = within.T @ within / h.shape[0]
    centred = means - global_mean[None, :]
    sigma_b = centred.T @ centred / num_classes
    return means, centred, sigma_w, sigma_b


def _safe_sqrt(x):
    """√x with a zero (not NaN) gradient at x = 0."""
    return jnp.where(x > 0, jnp.sqrt(jnp.where(x > 0, x, 1.0)), 0.0)


def _safe_normalise(x):
    n = _safe_sqrt(jnp.sum(x * x))
    return x / jnp.where(n > 0, n, 1.0)


def neural_collapse(
    features: jax.Array,
    labels: jax.Array,
    classifier_weights: jax.Array | None = None,
    *,
    num_classes: int | None = None,
    bias: jax.Array | None = None,
) -> dict[str, jax.Array]:
    r"""Papyan et al.'s neural-collapse metrics NC1–NC4 (all 0 at exact collapse).

    With class means :math:`\mu_c`, global mean :math:`\mu_G` (mean of all features), centred
    means :math:`M = [\mu_c - \mu_G]_c \in \mathbb R^{C\times D}`,
    :math:`\Sigma_W = \mathrm{Ave}_i (h_i - \mu_{y_i})(h_i - \mu_{y_i})^\top` and
    :math:`\Sigma_B = \mathrm{Ave}_c (\mu_c - \mu_G)(\mu_c - \mu_G)^\top`:

    * ``nc1`` = :math:`\mathrm{tr}(\Sigma_W \Sigma_B^\dagger)/C` (within-class variability
      collapse; pseudo-inverse with NumPy's default relative cut-off).
    * ``nc2`` = :math:`\| MM^\top/\|MM^\top\|_F - (I - \mathbf 1\mathbf 1^\top/C)/\sqrt{C-1}\|_F`,
      the distance of the normalised Gram matrix of centred means from that of a simplex ETF
      (0 iff the means form a simplex ETF up to scale and rotation); plus Papyan's two parts,
      ``nc2_equinorm`` = std/mean of :math:`\|\mu_c - \mu_G\|` and ``nc2_equiangular`` =
      :math:`\mathrm{Ave}_{c\ne c'} |\cos(\mu_c - \mu_G, \mu_{c'} - \mu_G) + 1/(C-1)|`.
    * ``nc3`` = :math:`\|W/\|W\|_F - M/\|M\|_F\|_F^2` (self-duality of classifier and means).
    * ``nc4`` = fraction of examples where the classifier's :math:`\arg\max_c (Wh + b)_c`
      differs from the nearest class mean :math:`\arg\min_c \|h - \mu_c\|` (NCC mismatch).

    Every class must occur in ``labels`` (an absent class gets a zero mean; not checked, so the
    function stays jittable). ``nc3``/``nc4`` need ``classifier_weights``.

    Args:
      features: ``(N, D)`` penultimate-layer features.
      labels: ``(N,)`` integer labels in ``[0, C)``.
      classifier_weights: ``(C, D)`` last-layer weights, one row per class (a Flax ``Dense``
        kernel is ``(D, C)``: pass its transpose), or None.
      num_classes: C; taken from ``classifier_weights`` when given (must then agree).
      bias: optional ``(C,)`` classifier bias for ``nc4``.

    Returns:
      Dict with float32 scalars ``nc1``, ``nc2``, ``nc2_equinorm``, ``nc2_equiangular`` and, with
      a classifier, ``nc3`` and ``nc4``.

    References:
      Papyan, Han, Donoho, "Prevalence of Neural Collapse during the Terminal Phase of Deep
      Learning Training", https://arxiv.org/abs/2008.08186; Tirer, Huang, Niles-Weed,
      "Perturbation Analysis of Neural Collapse", https://arxiv.org/abs/2210.16658; Dang et al.,
      "Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data",
      https://arxiv.org/abs/2301.00437.

    Examples:
      >>> import jax.numpy as jnp
      >>> etf = jnp.eye(3) - 1 / 3  # a simplex ETF in R^3
      >>> out = neural_collapse(jnp.repeat(etf, 2, axis=0), jnp.repeat(jnp.arange(3), 2), etf)
      >>> [round(float(out[k]), 4) for k in ("nc1", "nc2", "nc3", "nc4")]
      [0.0, 0.0, 0.0, 0.0]
    """
    h = upcast(as_float("features", features, ndim=2))
    labels = as_labels("labels", labels, h.shape[0])
    w = None
    if classifier_weights is not None:
        w = upcast(as_float("classifier_weights", classifier_weights, ndim=2))
        if w.shape[1] != h.shape[1]:
            raise ValueError(
                f"classifier_weights.shape={w.shape} must be (C, {h.shape[1]}) (one row per class)"
            )
        if num_classes is not None and num_classes != w.shape[0]:
            raise ValueError(
                f"num_classes={num_classes!r} disagrees with classifier_weights.shape={w.shape}"
            )
        num_classes = w.shape[0]
    if num_classes is None:
        raise ValueError("num_classes must be given when classifier_weights is None")
    check_int("num_classes", num_classes, 2)
    if bias is not None:
        if classifier_weights is None:
            raise ValueError("bias needs classifier_weights")
        bias = upcast(as_float("bias", bias))
        if bias.shape != (num_classes,):
            raise ValueError(f"bias.shape={bias.shape} must be ({num_classes},)")

    return _neural_collapse(h, labels, w, bias, num_classes=num_classes)


@functools.partial(jax.jit, static_argnames="num_classes")
def _neural_collapse(h, labels, w, bias, *, num_classes):
    c = num_classes
    means, centred, sigma_w, sigma_b = _class_statistics(h, labels, c)
    out = {"nc1": jnp.trace(sigma_w @ jnp.linalg.pinv(sigma_b, hermitian=True)) / c}

    gram = centred @ centred.T
    etf = (jnp.eye(c) - jnp.ones((c, c)) / c) / jnp.sqrt(c - 1.0)
    out["nc2"] = _safe_sqrt(jnp.sum(jnp.square(_safe_normalise(gram) - etf)))
    norms = _safe_sqrt(jnp.diagonal(gram))
    mean_norm = jnp.mean(norms)
    std_norm = _safe_sqrt(jnp.mean(jnp.square(norms - mean_norm)))
    out["nc2_equinorm"] = std_norm / jnp.where(mean_norm > 0, mean_norm, 1.0)
    safe = jnp.where(norms > 0, norms, 1.0)
    cos = gram / (safe[:, None] * safe[None, :])
    off = ~jnp.eye(c, dtype=bool)
    out["nc2_equiangular"] = jnp.sum(jnp.where(off, jnp.abs(cos + 1.0 / (c - 1)), 0.0)) / (
        c * (c - 1)
    )
    if w is not None:
        out["nc3"] = jnp.sum(jnp.square(_safe_normalise(w) - _safe_normalise(centred)))
        logits = h @ w.T + (0.0 if bias is None else bias[None, :])
        dist = jnp.sum(jnp.square(h[:, None, :] - means[None, :, :]), axis=-1)
        mismatch = jnp.argmax(logits, axis=-1) != jnp.argmin(dist, axis=-1)
        out["nc4"] = jnp.mean(mismatch.astype(jnp.float32))
    return out
