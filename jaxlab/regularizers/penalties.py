"""Regularization penalties and regularized losses.

Invariance (IRMv1, Hessian alignment HGP / Hutchinson), noisy labels (ELR), multi-sample dropout,
imbalanced regression (ConR) and continual learning (spectral and Wasserstein-to-init).

Penalties are pure functions of model outputs (or of a loss function and parameters), data first,
keyword-only hyperparameters with the papers' defaults. Per-example quantities are returned per
example; penalties that are inherently batch-level (a squared batch gradient) return a scalar and
take ``axis_name`` so that the batch statistic is formed over all devices before it is squared.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.losses.reduce import weighted_mean


def _f32(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def irmv1_penalty(
    logits: jax.Array,
    labels: jax.Array,
    *,
    loss_fn: Callable = optax.losses.softmax_cross_entropy_with_integer_labels,
    unbiased: bool = False,
    where: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""IRMv1 penalty of one environment: the squared gradient of its risk at a dummy scale ``w=1``.

    .. math::
      P^e = \Big(\frac{\partial}{\partial w} R^e(w\cdot z)\Big|_{w=1}\Big)^2,\qquad
      \frac{\partial}{\partial w}\ell(w z_i, y_i)\Big|_{w=1} = \langle\nabla_z \ell(z_i, y_i),
      z_i\rangle =: d_i,

    so ``P = (mean_i d_i)²``. With ``unbiased=True`` it is the product of the two half-batch means
    ``mean_{i even} d_i · mean_{i odd} d_i`` (the unbiased estimate of the squared expected
    gradient, as in the paper's Section 3.2 and DomainBed), which can be negative.

    Args:
      logits: model outputs of one environment, ``[B, ...]`` (``Φ(x)``, the dummy classifier is
        the scalar ``w``).
      labels: targets accepted by ``loss_fn``.
      loss_fn: per-example loss ``(logits, labels) -> [B]``; default softmax cross-entropy with
        integer labels (the official Colored-MNIST code uses the binary logistic loss:
        ``optax.losses.sigmoid_binary_cross_entropy``).
      unbiased: use the split-batch product instead of the square of the full-batch mean.
      where: optional ``[B]`` mask of valid examples.
      axis_name: ``pmap``/``shard_map`` axis holding shards of this environment's batch; the mean
        gradient is formed across it before squaring (each device splits its own shard).

    Returns:
      A float32 scalar.

    References:
      Arjovsky et al., "Invariant Risk Minimization", https://arxiv.org/abs/1907.02893; official
      code facebookresearch/InvariantRiskMinimization (``penalty``) and DomainBed ``IRM``.
    """
    logits = _f32(logits)
    d = jax.jvp(lambda z: loss_fn(z, labels), (logits,), (logits,))[1]
    if d.shape != logits.shape[:1]:
        raise ValueError(f"loss_fn must return per-example losses [B], got shape {d.shape}")
    if where is not None and jnp.shape(where) != d.shape:
        raise ValueError(f"where must have shape {d.shape}, got where.shape={jnp.shape(where)}")
    valid = jnp.ones(d.shape, bool) if where is None else jnp.asarray(where, bool)
    if not unbiased:
        return jnp.square(weighted_mean(d, where=valid, axis_name=axis_name))
    even = jnp.arange(d.shape[0]) % 2 == 0
    g_even = weighted_mean(d, where=valid & even, axis_name=axis_name)
    g_odd = weighted_mean(d, where=valid & ~even, axis_name=axis_name)
    return g_even * g_odd


def irm_objective(env_risks: jax.Array, env_penalties: jax.Array, *, lam: float) -> jax.Array:
    r"""IRMv1 objective ``Σ_e R^e + λ Σ_e P^e`` over environments (paper eq. IRMv1).

    The official code averages over environments instead (and divides the total by λ when
    λ > 1); that differs by the constant factor ``1/E`` (and ``1/λ``).

    Args:
      env_risks: ``[E]`` risks of the environments.
      env_penalties: ``[E]`` :func:`irmv1_penalty` values.
      lam: penalty weight λ ≥ 0 (paper: large, 1e2–1e5, after an annealing period).

    Returns:
      A float32 scalar.

    References:
      Arjovsky et al., "Invariant Risk Minimization", https://arxiv.org/abs/1907.02893.
    """
    if jnp.ndim(env_risks) != 1 or jnp.shape(env_risks) != jnp.shape(env_penalties):
        raise ValueError(
            f"env_risks and env_penalties must both be [E], got {jnp.shape(env_risks)} and "
            f"{jnp.shape(env_penalties)}"
        )
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got lam={lam}")
    return jnp.sum(_f32(env_risks)) + lam * jnp.sum(_f32(env_penalties))


class ELRState(NamedTuple):
    """Temporal-ensembling targets of ELR: one probability row per training example.

    Attributes:
      targets: float32 ``[N, C]``, zeros at initialisation (as in the official code).
    """

    targets: jax.Array


def elr_init(num_examples: int, num_classes: int) -> ELRState:
    """Zero targets ``[num_examples, num_classes]`` for :func:`elr_loss`."""
    if num_examples < 1 or num_classes < 2:
        raise ValueError(
            f"need num_examples >= 1 and num_classes >= 2, got num_examples={num_examples}, "
            f"num_classes={num_classes}"
        )
    return ELRState(jnp.zeros((num_examples, num_classes), jnp.float32))


def elr_loss(
    logits: jax.Array,
    labels: jax.Array,
    state: ELRState,
    indices: jax.Array,
    *,
    lam: float = 3.0,
    beta: float = 0.7,
    clip: float = 1e-4,
) -> tuple[jax.Array, ELRState]:
    r"""Early-learning regularization: cross-entropy plus a pull toward ensembled early predictions.

    .. math::
      \hat p_i = \mathrm{clip}(\mathrm{softmax}(z_i), \epsilon, 1-\epsilon),\qquad
      t_i \leftarrow \beta\, t_i + (1-\beta)\,\frac{\mathrm{sg}(\hat p_i)}{\sum_k \hat p_{ik}},

    .. math::
      \ell_i = \mathrm{CE}(z_i, y_i) + \lambda \log\big(1 - \langle t_i, \hat p_i\rangle\big)

    with the target updated first and then used (official code order); ``sg`` is stop-gradient.
    ``⟨t, p̂⟩ ≤ 1 − ε`` because ``t`` sums to at most 1 and ``p̂ ≤ 1 − ε``, so the log is finite.
    The batch mean of ``ℓ`` is the paper's loss.

    Args:
      logits: ``[B, C]``.
      labels: ``[B]`` integer (possibly noisy) labels.
      state: :class:`ELRState` from :func:`elr_init` (``[N, C]`` targets).
      indices: ``[B]`` int dataset indices of the batch examples (distinct within a batch).
      lam: regularization weight λ (paper: 3 on CIFAR-10, 7 on CIFAR-100).
      beta: target momentum β (paper: 0.7 on CIFAR-10, 0.9 on CIFAR-100; 1 freezes the targets).
      clip: probability clamp ε (official code: 1e-4).

    Returns:
      ``(per_example_loss [B] float32, new_state)``; shapes are fixed, so it jits.

    References:
      Liu et al., "Early-Learning Regularization Prevents Memorization of Noisy Labels",
      https://arxiv.org/abs/2007.00151; official code shengliu66/ELR (``elr_loss``).
    """
    if logits.ndim != 2 or state.targets.shape[1:] != logits.shape[1:]:
        raise ValueError(
            f"logits must be [B, C] with C = targets.shape[1], got logits.shape={logits.shape}, "
            f"targets.shape={state.targets.shape}"
        )
    for name, arr in (("labels", labels), ("indices", indices)):
        if jnp.shape(arr) != logits.shape[:1]:
            raise ValueError(f"{name} must have shape {logits.shape[:1]}, got {jnp.shape(arr)}")
    if lam < 0 or not 0 <= beta <= 1 or not 0 < clip < 0.5:
        raise ValueError(
            "need lam >= 0, 0 <= beta <= 1, 0 < clip < 0.5, "
            f"got lam={lam}, beta={beta}, clip={clip}"
        )
    z, indices = _f32(logits), jnp.asarray(indices, jnp.int32)
    p = jnp.clip(jax.nn.softmax(z, axis=-1), clip, 1 - clip)
    p_sg = jax.lax.stop_gradient(p)
    t = beta * state.targets[indices] + (1 - beta) * p_sg / jnp.sum(p_sg, -1, keepdims=True)
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(z, labels)
    loss = ce + lam * jnp.log(1 - jnp.sum(t * p, axis=-1))
    return loss, ELRState(state.targets.at[indices].set(t))


def multi_sample_dropout_loss(
    key: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    *,
    head_fn: Callable[[jax.Array], jax.Array],
    num_samples: int = 8,
    rate: float = 0.5,
    loss_fn: Callable = optax.losses.softmax_cross_entropy_with_integer_labels,
) -> jax.Array:
    r"""Multi-sample dropout: the mean loss of one shared head under M independent dropout masks.

    .. math::
      \ell_i = \frac{1}{M}\sum_{m=1}^{M} L\Big(h\big(\tfrac{b^{(m)} \odot f_i}{1-r}\big), y_i\Big),
      \qquad b^{(m)}_{ij} \sim \mathrm{Bernoulli}(1-r)

    Sample ``m`` uses the key ``jax.random.split(key, num_samples)[m]`` (``vmap`` over masks), so
    ``num_samples=1`` is ordinary inverted dropout with ``split(key, 1)[0]`` and ``rate=0`` is the
    plain loss for any M.

    Args:
      key: ``jax.random`` key.
      features: ``[B, ...]`` features shared by all samples (the output of the trunk).
      labels: targets accepted by ``loss_fn``.
      head_fn: the weight-shared head ``features -> logits`` (close over its params).
      num_samples: number of dropout samples M (paper's experiments: 8).
      rate: dropout rate r in [0, 1) (paper: 0.5).
      loss_fn: per-example loss ``(logits, labels) -> [B]``.

    Returns:
      float32 per-example losses ``[B]``.

    References:
      Inoue, "Multi-Sample Dropout for Accelerated Training and Better Generalization",
      https://arxiv.org/abs/1905.09788.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got num_samples={num_samples}")
    if not 0 <= rate < 1:
        raise ValueError(f"rate must lie in [0, 1), got rate={rate}")

    def one(k):
        keep = jax.random.bernoulli(k, 1 - rate, features.shape)
        dropped = jnp.where(keep, features / (1 - rate), jnp.zeros((), features.dtype))
        return _f32(loss_fn(head_fn(dropped.astype(features.dtype)), labels))

    features = jnp.asarray(features)
    losses = jax.vmap(one)(jax.random.split(key, num_samples))
    if losses.shape[1:] != jnp.shape(features)[:1]:
        raise ValueError(f"loss_fn must return per-example losses [B], got {losses.shape[1:]}")
    return jnp.mean(losses, axis=0)


def _env_count(env_batches) -> int:
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(env_batches)}
    if len(sizes) != 1 or None in sizes or sizes == {0}:
        raise ValueError(
            f"env_batches leaves must share a leading environments axis, got sizes {sizes}"
        )
    return sizes.pop()


def _hvp(loss_fn, params, batch, v):
    """H v of ``loss_fn(·, batch)`` at ``params`` (forward-over-reverse; differentiable)."""
    return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (v,))[1]


def _sq_dist_to(trees, ref) -> jax.Array:
    """``[E]`` squared distances ‖tree_e − ref‖² of a stacked pytree to a pytree."""
    leaves = [
        jnp.sum(jnp.square(_f32(t) - _f32(r)[None]).reshape(t.shape[0], -1), axis=1)
        for t, r in zip(jax.tree.leaves(trees), jax.tree.leaves(ref), strict=True)
    ]
    return sum(leaves)


def _alignment(first, second, alpha, beta) -> jax.Array:
    """(1/E) Σ_e α‖a_e − sg(ā)‖² + β‖g_e − sg(ḡ)‖² from stacked (a_e, g_e) and their references."""
    (a, a_ref), (g, g_ref) = first, second
    a_ref, g_ref = jax.lax.stop_gradient((a_ref, g_ref))
    return jnp.mean(alpha * _sq_dist_to(a, a_ref) + beta * _sq_dist_to(g, g_ref))


def _check_weights(alpha, beta) -> None:
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")


def hgp_alignment_penalty(
    loss_fn: Callable,
    params,
    env_batches,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
) -> jax.Array:
    r"""HGP: align Hessian–gradient products and gradients of the risk across environments.

    .. math::
      P = \frac1E\sum_{e=1}^E \alpha\,\big\|H_e g_e - \mathrm{sg}(\bar H \bar g)\big\|^2
        + \beta\,\big\|g_e - \mathrm{sg}(\bar g)\big\|^2,

    with ``g_e = ∇R_e(θ)``, ``H_e = ∇²R_e(θ)`` and ``R̄ = mean_e R_e`` (so ``ḡ = mean_e g_e``,
    ``H̄ = mean_e H_e``); ``sg`` is stop-gradient, as in the reference implementation. The
    products ``H v`` are exact forward-over-reverse HVPs (the reference code forms
    ``‖g‖ ∇‖g‖ = H g``, which is the same vector away from ``g = 0``).

    Args:
      loss_fn: ``(params, batch) -> scalar`` mean risk of one environment; in the paper
        ``params`` are the classifier head's parameters and ``batch`` holds the features.
      params: the parameters θ the Hessian and gradient are taken in (a pytree).
      env_batches: pytree whose leaves have a leading environments axis of size E (stacked,
        equally shaped batches; ``vmap`` runs over it).
      alpha: weight of the Hessian–gradient term (reference code: 0.5).
      beta: weight of the gradient term (reference code: 0.5).

    Returns:
      A float32 scalar, differentiable in ``params``; 0 when all environments are identical.

    References:
      Hemati et al., "Understanding Hessian Alignment for Domain Generalization" (ICCV 2023),
      https://arxiv.org/abs/2308.11778; the detached references, the 1/E average and
      α = β = 0.5 follow a public port of the authors' DomainBed ``HGP`` algorithm.
    """
    _check_weights(alpha, beta)
    _env_count(env_batches)
    grads = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, env_batches)
    hg = jax.vmap(lambda b, g: _hvp(loss_fn, params, b, g), in_axes=(0, 0))(env_batches, grads)

    def mean_loss(p, batches):
        return jnp.mean(jax.vmap(loss_fn, in_axes=(None, 0))(p, batches))

    g_bar = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    hg_bar = _hvp(mean_loss, params, env_batches, g_bar)
    return _alignment((hg, hg_bar), (grads, g_bar), alpha, beta)


def hutchinson_alignment_penalty(
    key: jax.Array,
    loss_fn: Callable,
    params,
    env_batches,
    *,
    num_probes: int = 1,
    alpha: float = 0.5,
    beta: float = 0.5,
) -> jax.Array:
    r"""Hessian alignment through Hutchinson estimates of the Hessian diagonals (and gradients).

    .. math::
      \hat D_e = \frac1S\sum_{s=1}^S v_s \odot H_e v_s,\qquad
      P = \frac1E\sum_{e} \alpha\,\big\|\hat D_e - \mathrm{sg}(\bar D)\big\|^2
        + \beta\,\big\|g_e - \mathrm{sg}(\bar g)\big\|^2,

    with Rademacher probes ``v_s`` shared by all environments (so identical environments give
    exactly 0) and ``D̄ = mean_e D̂_e``, ``ḡ = mean_e g_e``. ``E[D̂_e] = diag(H_e)``.

    Args:
      key: ``jax.random`` key for the probes.
      loss_fn: ``(params, batch) -> scalar`` mean risk of one environment.
      params: parameters θ (the classifier head in the paper).
      env_batches: pytree with a leading environments axis of size E.
      num_probes: Hutchinson probes S per step.
      alpha: weight of the Hessian-diagonal term.
      beta: weight of the gradient term.

    Returns:
      A float32 scalar, differentiable in ``params``.

    References:
      Hemati et al., "Understanding Hessian Alignment for Domain Generalization" (ICCV 2023),
      https://arxiv.org/abs/2308.11778; Bekas et al., "An estimator for the diagonal of a
      matrix", 2007.
    """
    _check_weights(alpha, beta)
    if num_probes < 1:
        raise ValueError(f"num_probes must be >= 1, got num_probes={num_probes}")
    _env_count(env_batches)
    leaves, treedef = jax.tree.flatten(params)

    def probe(k):
        ks = jax.random.split(k, len(leaves))
        return treedef.unflatten(
            [jax.random.rademacher(k_, x.shape, x.dtype) for k_, x in zip(ks, leaves, strict=True)]
        )

    probes = jax.vmap(probe)(jax.random.split(key, num_probes))

    def diag(batch):
        def one(v):
            return jax.tree.map(jnp.multiply, v, _hvp(loss_fn, params, batch, v))

        return jax.tree.map(lambda d: jnp.mean(d, axis=0), jax.vmap(one)(probes))

    diags = jax.vmap(diag)(env_batches)
    grads = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, env_batches)
    mean = jax.tree.map(lambda t: jnp.mean(t, axis=0), (diags, grads))
    return _alignment((diags, mean[0]), (grads, mean[1]), alpha, beta)


def conr_loss(
    features: jax.Array,
    targets: jax.Array,
    preds: jax.Array,
    *,
    temperature: float = 0.2,
    omega: float = 1.0,
    eta: float = 0.01,
    weights: jax.Array | None = None,
) -> jax.Array:
    r"""ConR: contrastive regularizer for imbalanced regression, one value per anchor.

    With ``q_i = f_i / ‖f_i‖`` and ``s_ij = ⟨q_i, q_j⟩ / τ``, positives ``P_i = {j ≠ i :
    |y_i − y_j| ≤ ω}`` and negatives ``N_i = {j : |y_i − y_j| > ω, |ŷ_i − ŷ_j| ≤ ω}`` (predicted
    close, truly far),

    .. math::
      \ell_i = -\frac{1}{|P_i|}\sum_{j\in P_i}\log\frac{e^{s_{ij}}}
        {\sum_{p\in P_i} e^{s_{ip}} + \sum_{k\in N_i} S_{ik}\, e^{s_{ik}}},\qquad
      S_{ik} = w_i\, e^{\eta\,|y_i - y_k|},

    and ``ℓ_i = 0`` when ``N_i`` (or ``P_i``) is empty. The pushing weight ``S`` grows with the
    label distance. Labels are continuous; no binning. Unlike the official snippet, which sums
    ``exp(0) = 1`` over every non-positive entry in the denominator, the denominator here runs
    over ``P_i ∪ N_i`` only, as in the paper's equation.

    Args:
      features: ``[N, D]`` features (e.g. both augmented views stacked, labels repeated).
      targets: ``[N]`` continuous labels ``y``.
      preds: ``[N]`` predictions ``ŷ``.
      temperature: τ (0.2; the official README snippet uses 0.07).
      omega: similarity threshold ω on label and prediction distance (official code: 1).
      eta: pushing-weight rate η (official code: 0.01).
      weights: optional ``[N]`` per-anchor weights ``w_i`` (e.g. inverse label density); they
        scale ``S`` and ``ℓ_i`` as in the official code.

    Returns:
      float32 per-anchor losses ``[N]`` (the paper averages them).

    References:
      Keramati et al., "ConR: Contrastive Regularizer for Deep Imbalanced Regression" (ICLR 2024),
      https://arxiv.org/abs/2309.06651; official code BorealisAI/ConR.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got features.shape={features.shape}")
    n = features.shape[0]
    for name, arr in (("targets", targets), ("preds", preds), ("weights", weights)):
        if arr is not None and jnp.shape(arr) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {name}.shape={jnp.shape(arr)}")
    if temperature <= 0 or omega < 0 or eta < 0:
        raise ValueError(
            "need temperature > 0, omega >= 0, eta >= 0, got "
            f"temperature={temperature}, omega={omega}, eta={eta}"
        )
    f = _f32(features)
    q = f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
    s = (q @ q.T) / temperature
    y, y_hat = _f32(targets), _f32(preds)
    w = jnp.ones((n,), y.dtype) if weights is None else _f32(weights)
    label_dist = jnp.abs(y[:, None] - y[None, :])
    pos = (label_dist <= omega) & ~jnp.eye(n, dtype=bool)
    neg = (label_dist > omega) & (jnp.abs(y_hat[:, None] - y_hat[None, :]) <= omega)
    log_push = jnp.log(jnp.maximum(w, 1e-30))[:, None] + eta * label_dist
    terms = jnp.where(pos, s, jnp.where(neg, s + log_push, -jnp.inf))
    has_pos, has_neg = jnp.any(pos, axis=1), jnp.any(neg, axis=1)
    log_denom = jax.nn.logsumexp(jnp.where(has_pos[:, None], terms, 0), axis=1)
    num_pos = jnp.maximum(jnp.sum(pos, axis=1), 1)
    per_anchor = jnp.sum(jnp.where(pos, log_denom[:, None] - s, 0), axis=1) / num_pos
    return jnp.where(has_pos & has_neg, w * per_anchor, 0)


def spectral_regularizer(
    w: jax.Array, *, k: int = 2, num_iterations: int = 20, key: jax.Array | None = None
) -> jax.Array:
    r"""Spectral regularization: keep a layer's largest singular value near 1.

    .. math::
      R(W) = \big(\sigma_{\max}(W)^k - 1\big)^2,\qquad \sigma_{\max} = u^\top W v

    with ``u, v`` the top singular vectors from ``num_iterations`` power iterations, held
    constant under differentiation (so ``∇σ = u vᵀ``, the exact gradient of a simple top
    singular value). A kernel of rank > 2 is reshaped to ``[prod(shape[:-1]), shape[-1]]``
    (flax ``Dense``/``Conv`` layout). Sum it over layers and add ``λ·R`` to the loss.

    Args:
      w: weight matrix (or kernel) of one layer.
      k: power of σ_max that is pulled toward 1 (paper: 2).
      num_iterations: power iterations.
      key: key for the start vector; ``None`` uses a fixed key (deterministic).

    Returns:
      A float32 scalar (float64 for float64 ``w``).

    References:
      Lewandowski et al., "Learning Continually by Spectral Regularization",
      https://arxiv.org/abs/2406.06811.
    """
    if w.ndim < 2:
        raise ValueError(f"w must have rank >= 2, got w.shape={w.shape}")
    if k < 1 or num_iterations < 1:
        raise ValueError(
            f"need k >= 1 and num_iterations >= 1, got k={k}, num_iterations={num_iterations}"
        )
    mat = _f32(w).reshape(-1, w.shape[-1])
    key = jax.random.key(0) if key is None else key
    v0 = jax.random.normal(key, (mat.shape[1],), mat.dtype)
    m = jax.lax.stop_gradient(mat)

    def step(v, _):
        v = m.T @ (m @ v)
        return v / jnp.maximum(jnp.linalg.norm(v), 1e-30), None

    v, _ = jax.lax.scan(step, v0 / jnp.linalg.norm(v0), None, length=num_iterations)
    u = m @ v
    u = u / jnp.maximum(jnp.linalg.norm(u), 1e-30)
    sigma = u @ mat @ v
    return jnp.square(sigma**k - 1)


def wasserstein_init_regularizer(w: jax.Array, w0: jax.Array) -> jax.Array:
    r"""Squared 1-D Wasserstein-2 distance between a layer's weights and their initial values.

    .. math::
      R(w) = \sum_i \big(\mathrm{sort}(w)_i - \mathrm{sort}(w_0)_i\big)^2

    over all entries (flattened): it keeps the weight *distribution* near initialization and, unlike
    L2-to-init, is zero for any permutation of ``w0``.

    Args:
      w: current weights (any shape).
      w0: initial weights of the same shape.

    Returns:
      A float32 scalar.

    References:
      Lewandowski et al., "Learning Continually by Spectral Regularization",
      https://arxiv.org/abs/2406.06811 (the Wasserstein regularizer baseline, from Lewandowski et
      al., "Directions of Curvature as an Explanation for Loss of Plasticity",
      https://arxiv.org/abs/2312.00246).
    """
    if jnp.shape(w) != jnp.shape(w0):
        raise ValueError(f"w0 must have the shape of w {jnp.shape(w)}, got {jnp.shape(w0)}")
    diff = jnp.sort(_f32(w).ravel()) - jnp.sort(_f32(w0).ravel())
    return jnp.sum(jnp.square(diff))
