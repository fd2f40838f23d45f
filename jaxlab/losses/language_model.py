"""Token-level language-model losses: goldfish, number-token loss and pass@N (coverage) loss.

Token losses take ``logits [..., T, V]`` already aligned with their ``tokens [..., T]`` (the
logits at position t predict ``tokens[..., t]``) and return per-token values ``[..., T]`` in
float32; positions with ``where=False`` give 0 and no NaN.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab._tree import upcast


def _check_tokens(logits, tokens, where):
    logits, tokens = upcast(jnp.asarray(logits)), jnp.asarray(tokens)
    if logits.ndim < 2 or logits.shape[:-1] != tokens.shape:
        raise ValueError(
            f"logits must be tokens.shape + (vocab,), got logits.shape={logits.shape} and "
            f"tokens.shape={tokens.shape}"
        )
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"tokens must be integer ids, got tokens.dtype={tokens.dtype}")
    if where is not None and jnp.shape(where) != tokens.shape:
        raise ValueError(f"where must have shape {tokens.shape}, got {jnp.shape(where)}")
    return logits, tokens


def _token_cross_entropy(logits, tokens):
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, tokens[..., None], axis=-1)[..., 0]


# --- goldfish ----------------------------------------------------------------------------------


def _fmix32(x):
    """MurmurHash3's 32-bit finaliser (a bijective avalanche mix) on uint32 arrays."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def goldfish_mask(tokens, *, k: float = 4, context_width: int = 13, seed: int = 0) -> jax.Array:
    """Goldfish keep-mask: drop token t when a hash of the ``h`` tokens before it is < 1/k.

    .. math:: \\text{keep}_t = \\big[\\,u(x_{t−h}, …, x_{t−1}) ≥ 1/k\\,\\big],\\quad
       u = \\text{hash}/2^{32} ∈ [0, 1),

    a deterministic, order-sensitive uint32 hash (MurmurHash3 finaliser chained over the
    window, salted by ``seed``), so a passage repeated anywhere drops the same tokens; about
    1/k of the tokens are dropped. Positions with fewer than h preceding tokens are kept (as in
    the reference, which drops only once a full window exists). ``k = math.inf`` keeps
    everything. Shapes: ``tokens [..., T]`` (int) → bool ``[..., T]``. Defaults k = 4, h = 13
    (the paper's hashed goldfish). The authors' code hashes the product of the window's ids
    into a random table; the hash here differs, the drop rule is the same.

    References:
      Hans et al., `Be like a Goldfish, Don't Memorize! Mitigating Memorization in Generative
      LLMs <https://arxiv.org/abs/2406.10209>`_, NeurIPS 2024.
    """
    tokens = jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer) or tokens.ndim < 1:
        raise TypeError(f"tokens must be integer ids [..., T], got tokens.dtype={tokens.dtype}")
    if not k > 1:
        raise ValueError(f"k must be > 1 (or math.inf), got k={k}")
    if not (isinstance(context_width, int) and context_width >= 1):
        raise ValueError(f"context_width must be an int ≥ 1, got context_width={context_width!r}")
    if not (isinstance(seed, int) and 0 <= seed < 2**32 - 1):
        raise ValueError(f"seed must be an int in [0, 2**32 - 1), got seed={seed!r}")
    n = tokens.shape[-1]
    if math.isinf(k) or n <= context_width:
        return jnp.ones(tokens.shape, bool)
    ids = tokens.astype(jnp.uint32)
    h = jnp.full(
        (*tokens.shape[:-1], n - context_width), _fmix32(jnp.asarray(seed + 1, jnp.uint32))
    )
    for offset in range(context_width, 0, -1):  # window x_{t−h}, …, x_{t−1}, oldest first
        h = _fmix32(h ^ (ids[..., context_width - offset : n - offset] + np.uint32(0x9E3779B9)))
    drop = h < np.uint32(min(2**32 - 1, math.ceil(2**32 / k)))
    keep = jnp.ones((*tokens.shape[:-1], context_width), bool)
    return jnp.concatenate([keep, ~drop], axis=-1)


def goldfish_cross_entropy(
    logits, tokens, *, k: float = 4, context_width: int = 13, seed: int = 0, where=None
) -> jax.Array:
    """Next-token cross-entropy with the goldfish-dropped tokens (:func:`goldfish_mask`) zeroed.

    ``logits [..., T, V]``, ``tokens [..., T]`` (the targets, aligned with the logits) →
    ``[..., T]``; the hash window of target t is the h targets before it. Reduce with
    ``weighted_mean(loss, where=goldfish_mask(tokens) & where)`` so dropped tokens do not count
    in the normalisation. With ``k = math.inf`` it is
    ``optax.losses.softmax_cross_entropy_with_integer_labels``. Reference: see
    :func:`goldfish_mask`.
    """
    logits, tokens = _check_tokens(logits, tokens, where)
    keep = goldfish_mask(tokens, k=k, context_width=context_width, seed=seed)
    if where is not None:
        keep = keep & where
    logits = jnp.where(keep[..., None], logits, 0.0)  # a masked NaN logit stays out
    return jnp.where(keep, _token_cross_entropy(logits, tokens), 0.0)


# --- number-token loss -------------------------------------------------------------------------


def _number_distribution(logits, tokens, token_values, where):
    """Softmax over the number tokens only, their values, the target value and the mask of
    positions whose target is a number token."""
    logits, tokens = _check_tokens(logits, tokens, where)
    values = upcast(jnp.asarray(token_values))
    if values.shape != logits.shape[-1:]:
        raise ValueError(
            f"token_values must have shape {logits.shape[-1:]} (NaN for non-number tokens), got "
            f"token_values.shape={values.shape}"
        )
    target = jnp.take(values, tokens, axis=0)
    active = ~jnp.isnan(target) if where is None else ~jnp.isnan(target) & where
    values = values.reshape((1,) * (logits.ndim - 1) + values.shape)
    is_number = ~jnp.isnan(values)
    safe = jnp.where(active[..., None], logits, 0.0)  # a masked NaN logit stays out
    p = jnp.where(is_number, jax.nn.softmax(jnp.where(is_number, safe, -jnp.inf), axis=-1), 0.0)
    return p, jnp.where(is_number, values, 0.0), jnp.where(active, target, 0.0), active


def number_token_mse(logits, tokens, token_values, *, where=None) -> jax.Array:
    r"""Number-token loss, MSE variant (NTL-MSE): ``(Σ_i p_i v_i − y)²`` at number targets.

    .. math:: ℓ_t = \Big(\sum_{i ∈ \mathcal N} p_{t,i} v_i − v_{x_t}\Big)^2,\quad
       p_{t,i} = \mathrm{softmax}_{i ∈ \mathcal N}(z_{t,i}),

    with 𝒩 the number tokens and v their values. Shapes: ``logits [..., T, V]``, ``tokens
    [..., T]``, ``token_values [V]`` (the value of each number token, NaN for every other
    token) → ``[..., T]``, 0 where the target is not a number token. Added to the
    cross-entropy with a weight λ (the authors' code uses 0.3–0.5); it regresses the expected
    number instead of classifying digits. The softmax is over the number tokens only, as in the
    authors' ``NumberTokenLoss``.

    References:
      Zausinger et al., `Regress, Don't Guess -- A Regression-like Loss on Number Tokens for
      Language Models <https://arxiv.org/abs/2411.02083>`_, ICML 2025.
    """
    p, values, target, active = _number_distribution(logits, tokens, token_values, where)
    y_hat = jnp.sum(p * values, axis=-1)
    return jnp.where(active, (y_hat - target) ** 2, 0.0)


def number_token_wasserstein(logits, tokens, token_values, *, where=None) -> jax.Array:
    r"""Number-token loss, Wasserstein variant (NTL-WAS): ``W₁(p, δ_y) = Σ_i p_i |v_i − y|``.

        .. math:: ℓ_t = \sum_{i ∈ \mathcal N} p_{t,i}\,\lvert v_i − v_{x_t}
    vert,

        the 1-Wasserstein distance between the predicted distribution over number values and the
        Dirac at the target value. Shapes, masking and reference as :func:`number_token_mse`.
    """
    p, values, target, active = _number_distribution(logits, tokens, token_values, where)
    w1 = jnp.sum(p * jnp.abs(values - target[..., None]), axis=-1)
    return jnp.where(active, w1, 0.0)


# --- pass@N ------------------------------------------------------------------------------------


def _log1mexp(x):
    """log(1 − eˣ) for x < 0, accurate at both ends (Mächler 2012)."""
    near = x > -math.log(2)  # each branch sees only its own inputs: finite gradients
    return jnp.where(
        near,
        jnp.log(-jnp.expm1(jnp.where(near, x, -1.0))),
        jnp.log1p(-jnp.exp(jnp.where(near, -1.0, x))),
    )


def pass_at_n_loss(log_prob_correct, *, n: int, where=None) -> jax.Array:
    r"""Pass@N (direct coverage optimisation) loss ``−log(1 − (1 − p)^N)``, p = e^{log p}.

    .. math:: ℓ = −\logig(1 − (1 − p)^Nig),\qquad
       rac{∂ℓ/∂\log p}{∂\mathrm{CE}/∂\log p} = rac{N(1 − p)^{N−1}p}{1 − (1 − p)^N} ≤ 1,

    the negative log-probability that at least one of N independent samples is correct. The
    gradient factor vanishes as p → 1, limiting over-confidence; N = 1 is the cross-entropy
    −log p. Shapes: ``log_prob_correct [...]`` (log-probability of the correct answer,
    ≤ 0, e.g. a summed token log-likelihood) → ``[...]``. Computed in log space: no overflow
    or NaN for log p → −∞ (ℓ → −log p − log N) or log p → 0 (ℓ → 0).

    References:
      Chen et al., `Rethinking Fine-Tuning when Scaling Test-Time Compute: Limiting Confidence
      Improves Mathematical Reasoning <https://arxiv.org/abs/2502.07154>`_, 2025.
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be an int ≥ 1, got n={n!r}")
    x = upcast(jnp.asarray(log_prob_correct))
    if where is not None:
        if jnp.shape(where) != x.shape:
            raise ValueError(f"where must have shape {x.shape}, got {jnp.shape(where)}")
        x = jnp.where(where, x, -1.0)
    x = jnp.minimum(x, -jnp.finfo(x.dtype).tiny)  # p < 1: keeps log(1 − p) finite
    # b = log(−log(1 − p)); for p < e^{−20}, −log(1 − p) = p to float precision
    tail = x < -20
    b = jnp.where(tail, x, jnp.log(-_log1mexp(jnp.maximum(x, -20.0))))
    a = math.log(n) + b  # log(−N log(1 − p)) = log(−log((1 − p)^N))
    # −log(1 − e^{−e^a}); for a < −20 this is −a to float precision
    small = a < -20
    loss = -jnp.where(small, a, _log1mexp(-jnp.exp(jnp.clip(a, -20.0, 50.0))))
    return loss if where is None else jnp.where(where, loss, 0.0)


# --- loss-based sample reweighting -------------------------------------------------------------

_STRATEGIES = {
    "linupper": lambda x: x,
    "quadratic": lambda x: 1 - x**2,
    "extremes": jnp.abs,
}


def _cap_weights(w, n, cap):
    """min(c·w, cap) with c chosen so the weights still sum to n (water-filling, exact).

    With the j largest weights capped, c_j = (n − j·cap) / Σ_{i ≥ j} w_(i); the answer is the
    first j whose largest uncapped weight stays under the cap.
    """
    ranked = -jnp.sort(-w, axis=-1)
    tail = jnp.flip(jnp.cumsum(jnp.flip(ranked, -1), axis=-1), -1)  # Σ_{i ≥ j} w_(i)
    j = jnp.arange(w.shape[-1], dtype=w.dtype).reshape((1,) * (w.ndim - 1) + (-1,))
    c = (n - j * cap) / jnp.maximum(tail, jnp.finfo(w.dtype).tiny)
    first = jnp.argmax(c * ranked <= cap, axis=-1, keepdims=True)
    return jnp.minimum(jnp.take_along_axis(c, first, axis=-1) * w, cap)


def loss_reweighting(
    losses,
    *,
    strategy: str = "linupper",
    temperature: float = 1.0,
    max_weight: float = 2.0,
    eps: float = 1e-8,
    where=None,
) -> jax.Array:
    r"""Per-sample weights (mean 1, no gradient) from the current per-sample losses.

    .. math:: x_i = \frac{ℓ_i − \bar ℓ}{\max_j |ℓ_j − \bar ℓ| + ε} ∈ [−1, 1],\quad
       w_i = n\,\mathrm{softmax}_i\big(f(x_i)/r\big),

    over the n valid samples, with ``f(x) = x`` ("linupper": low-loss, redundant samples are
    de-prioritised, and the weights are capped at ``max_weight`` by water-filling: the excess
    of the capped ones goes to the others in proportion, keeping mean 1), ``f(x) = 1 − x²``
    ("quadratic": both extremes down) or ``f(x) = |x|`` ("extremes": both extremes up);
    r → ∞ gives uniform weights. Use as ``weighted_mean(losses, weights=w)``. Shapes:
    ``losses [n]`` (or ``[..., n]``, weights along the last axis) → same shape; masked
    samples get weight 0.

    The strategy shapes follow the paper's description; the exact normalisation and the
    default cap are our reading of it (unsure) and worth checking against the paper.

    References:
      Sow et al., `Dynamic Loss-Based Sample Reweighting for Improved Large Language Model
      Pretraining <https://arxiv.org/abs/2502.06733>`_, ICLR 2025.
    """
    if strategy not in _STRATEGIES:
        raise ValueError(
            f"strategy must be one of {sorted(_STRATEGIES)}, got strategy={strategy!r}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got temperature={temperature}")
    if not max_weight >= 1:
        raise ValueError(f"max_weight must be ≥ 1, got max_weight={max_weight}")
    losses = jax.lax.stop_gradient(upcast(jnp.asarray(losses)))
    if losses.ndim < 1:
        raise ValueError(f"losses must have at least one axis, got losses.shape={losses.shape}")
    valid = jnp.ones(losses.shape, bool) if where is None else jnp.asarray(where)
    if valid.shape != losses.shape:
        raise ValueError(f"where must have shape {losses.shape}, got {valid.shape}")
    n = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1).astype(losses.dtype)
    losses = jnp.where(valid, losses, 0.0)
    centred = losses - jnp.sum(losses, axis=-1, keepdims=True) / n
    spread = jnp.max(jnp.where(valid, jnp.abs(centred), 0.0), axis=-1, keepdims=True)
    x = centred / (spread + eps)
    logits = jnp.where(valid, _STRATEGIES[strategy](x) / temperature, -jnp.inf)
    w = jnp.where(valid, n * jax.nn.softmax(logits, axis=-1), 0.0)
    if strategy == "linupper":
        w = _cap_weights(w, n, max_weight)
    return w
