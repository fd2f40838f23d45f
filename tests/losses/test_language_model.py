"""Language-model token losses against hand values, NumPy transcriptions, optax and limits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxlab.losses import language_model as lm

RNG = np.random.default_rng(0)
V = 12
LOGITS = RNG.normal(size=(2, 20, V)).astype(np.float32)
TOKENS = RNG.integers(0, V, size=(2, 20)).astype(np.int32)

# --- goldfish ----------------------------------------------------------------------------------

M32 = 0xFFFFFFFF


def _np_fmix32(x):
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    return x ^ (x >> 16)


def _np_goldfish_mask(tokens, k, h, seed=0):
    """Pure-Python transcription: keep t iff hash(x_{t−h}, …, x_{t−1}) / 2³² ≥ 1/k."""
    keep = np.ones(tokens.shape, bool)
    for b in range(tokens.shape[0]):
        for t in range(h, tokens.shape[1]):
            v = _np_fmix32(seed + 1)
            for tok in tokens[b, t - h : t]:
                v = _np_fmix32(v ^ ((int(tok) + 0x9E3779B9) & M32))
            keep[b, t] = v / 2**32 >= 1 / k
    return keep


def test_goldfish_mask_matches_python_and_drops_one_in_k():
    for k, h, seed in ((4, 13, 0), (3, 2, 7)):
        got = lm.goldfish_mask(TOKENS, k=k, context_width=h, seed=seed)
        np.testing.assert_array_equal(got, _np_goldfish_mask(TOKENS, k, h, seed))
    tokens = RNG.integers(0, 50_000, size=(4, 1013)).astype(np.int32)
    for k in (2, 4, 10):
        dropped = 1 - np.asarray(lm.goldfish_mask(tokens, k=k))[:, 13:].mean()
        assert abs(dropped - 1 / k) < 0.03, (k, dropped)
    np.testing.assert_array_equal(lm.goldfish_mask(tokens, k=math.inf), True)
    np.testing.assert_array_equal(lm.goldfish_mask(tokens[:, :13]), True)  # no full window


def test_goldfish_identical_contexts_give_identical_masks():
    passage = RNG.integers(0, 1000, size=200).astype(np.int32)
    rows = np.stack(
        [
            np.concatenate([RNG.integers(0, 1000, 37), passage]),
            np.concatenate([passage, RNG.integers(0, 1000, 37)]),
        ]
    ).astype(np.int32)
    mask = np.asarray(lm.goldfish_mask(rows, k=4, context_width=5))
    np.testing.assert_array_equal(mask[0, 37 + 5 :], mask[1, 5:200])
    assert not mask[0, 37 + 5 :].all()  # some tokens are dropped
    assert not np.array_equal(lm.goldfish_mask(rows, seed=1), lm.goldfish_mask(rows))


def test_goldfish_cross_entropy_equals_optax_on_kept_tokens():
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(LOGITS, TOKENS)
    np.testing.assert_allclose(lm.goldfish_cross_entropy(LOGITS, TOKENS, k=math.inf), ce, rtol=1e-6)
    keep = np.asarray(lm.goldfish_mask(TOKENS, k=2, context_width=3))
    got = lm.goldfish_cross_entropy(LOGITS, TOKENS, k=2, context_width=3)
    np.testing.assert_allclose(got, np.where(keep, ce, 0), rtol=1e-6)
    # hand value: uniform logits give log V on every kept token
    np.testing.assert_allclose(
        lm.goldfish_cross_entropy(np.zeros((1, 3, 4)), np.zeros((1, 3), np.int32)),
        np.log(4),
        rtol=1e-6,
    )


def test_goldfish_where_gradients_robustness_and_errors():
    where = RNG.uniform(size=TOKENS.shape) > 0.3
    got = lm.goldfish_cross_entropy(LOGITS, TOKENS, k=3, context_width=2, where=where)
    want = lm.goldfish_cross_entropy(LOGITS, TOKENS, k=3, context_width=2)
    np.testing.assert_allclose(got, np.where(where, want, 0), rtol=1e-6)
    bad = np.where(where[..., None], LOGITS, np.nan)
    f = lambda x: lm.goldfish_cross_entropy(x, TOKENS, where=where).sum()  # noqa: E731
    assert np.all(np.isfinite(jax.grad(f)(bad)))
    for x in (LOGITS * 1e4, LOGITS.astype(jnp.bfloat16)):
        val, g = jax.jit(jax.value_and_grad(lambda v: lm.goldfish_cross_entropy(v, TOKENS).sum()))(
            jnp.asarray(x)
        )
        assert np.isfinite(val) and np.all(np.isfinite(g.astype(np.float32)))
    jitted = jax.jit(lambda t: lm.goldfish_mask(t, k=4))
    np.testing.assert_array_equal(jitted(TOKENS), lm.goldfish_mask(TOKENS, k=4))
    with jax.enable_x64(True):
        f = lambda x: lm.goldfish_cross_entropy(x, TOKENS[:1, :15], k=2, context_width=2)  # noqa: E731
        check_grads(
            jax.jit(f), (jnp.asarray(LOGITS[:1, :15], jnp.float64),), order=1, modes=["rev"]
        )
    with pytest.raises(ValueError, match="k=1"):
        lm.goldfish_mask(TOKENS, k=1)
    with pytest.raises(ValueError, match="context_width=0"):
        lm.goldfish_mask(TOKENS, context_width=0)
    with pytest.raises(TypeError, match=r"tokens.dtype"):
        lm.goldfish_mask(TOKENS.astype(np.float32))
    with pytest.raises(ValueError, match=r"logits.shape"):
        lm.goldfish_cross_entropy(LOGITS[:, :5], TOKENS)


# --- number-token loss -------------------------------------------------------------------------

VALUES = np.full(V, np.nan, np.float32)
VALUES[2:12] = np.arange(10)  # tokens 2..11 are the digits 0..9


def _np_number_distribution(logits, tok):
    z = logits[2:12]
    p = np.exp(z - z.max())
    return p / p.sum(), VALUES[tok]


def test_number_token_hand_values():
    logits = np.full((1, 2, V), -np.inf, np.float32)
    logits[0, :, 2 + 3] = 0.0  # one-hot on the digit 3
    logits[0, :, 0] = 5.0  # a non-number token does not enter the number softmax
    tokens = np.array([[2 + 3, 2 + 7]], np.int32)
    np.testing.assert_allclose(lm.number_token_mse(logits, tokens, VALUES), [[0.0, 16.0]])
    np.testing.assert_allclose(lm.number_token_wasserstein(logits, tokens, VALUES), [[0.0, 4.0]])
    half = np.full((1, 1, V), -np.inf, np.float32)
    half[0, 0, [2 + 1, 2 + 5]] = 0.0  # p = ½ on 1 and 5, target 1: MSE (3 − 1)², W1 = ½·4
    np.testing.assert_allclose(lm.number_token_mse(half, np.array([[3]]), VALUES), [[4.0]])
    np.testing.assert_allclose(lm.number_token_wasserstein(half, np.array([[3]]), VALUES), [[2.0]])


def test_number_token_matches_numpy_and_cdf_formula():
    mse, w1 = (
        lm.number_token_mse(LOGITS, TOKENS, VALUES),
        lm.number_token_wasserstein(LOGITS, TOKENS, VALUES),
    )
    for b in range(2):
        for t in range(20):
            p, y = _np_number_distribution(LOGITS[b, t], TOKENS[b, t])
            if np.isnan(y):  # non-number positions contribute nothing
                assert mse[b, t] == 0 and w1[b, t] == 0
                continue
            np.testing.assert_allclose(
                mse[b, t], (p @ np.arange(10) - y) ** 2, rtol=1e-5, atol=1e-6
            )
            # W1 on the sorted support = Σ |CDF_p − CDF_δy| · gap
            cdf_gap = np.abs(np.cumsum(p) - (np.arange(10) >= y))[:-1]
            np.testing.assert_allclose(w1[b, t], cdf_gap.sum(), rtol=1e-5)
    assert np.any(np.isnan(VALUES[TOKENS]))  # the sample has non-number targets


def test_number_token_where_gradients_robustness_and_errors():
    where = RNG.uniform(size=TOKENS.shape) > 0.3
    for fn in (lm.number_token_mse, lm.number_token_wasserstein):
        np.testing.assert_allclose(
            fn(LOGITS, TOKENS, VALUES, where=where), np.where(where, fn(LOGITS, TOKENS, VALUES), 0)
        )
        bad = np.where(where[..., None], LOGITS, np.nan)
        g = jax.grad(lambda x, fn=fn: fn(x, TOKENS, VALUES, where=where).sum())(bad)
        assert np.all(np.isfinite(g))
        for x in (LOGITS * 1e4, LOGITS.astype(jnp.bfloat16)):
            val, g = jax.jit(jax.value_and_grad(lambda v, fn=fn: fn(v, TOKENS, VALUES).sum()))(
                jnp.asarray(x)
            )
            assert np.isfinite(val) and np.all(np.isfinite(g.astype(np.float32)))
        with jax.enable_x64(True):
            f = lambda x, fn=fn: fn(x, TOKENS[:1], VALUES.astype(np.float64))  # noqa: E731
            check_grads(jax.jit(f), (jnp.asarray(LOGITS[:1], jnp.float64),), order=1, modes=["rev"])
    with pytest.raises(ValueError, match=r"token_values.shape"):
        lm.number_token_mse(LOGITS, TOKENS, VALUES[:5])


# --- pass@N ------------------------------------------------------------------------------------

LOGP = np.log(np.array([1e-30, 1e-6, 0.01, 0.3, 0.7, 0.99, 1 - 1e-6])).astype(np.float32)


def test_pass_at_n_hand_numpy_and_limits():
    np.testing.assert_allclose(lm.pass_at_n_loss(np.log([0.5]), n=2), [-np.log(0.75)], rtol=1e-6)
    p = np.exp(LOGP.astype(np.float64))
    for n in (1, 4, 64):
        want = -np.log(-np.expm1(n * np.log1p(-p)))  # 1 − (1 − p)^N without cancellation
        np.testing.assert_allclose(lm.pass_at_n_loss(LOGP, n=n), want, rtol=1e-4, atol=1e-20)
    np.testing.assert_allclose(lm.pass_at_n_loss(LOGP, n=1), -LOGP, rtol=1e-5)  # N = 1: CE
    np.testing.assert_allclose(
        lm.pass_at_n_loss(np.float32(-200.0), n=8), 200 - np.log(8), rtol=1e-6
    )
    assert lm.pass_at_n_loss(np.float32(0.0), n=8) == 0


def test_pass_at_n_gradient_ratio_where_and_errors():
    with jax.enable_x64(True):
        x = jnp.asarray(np.log(np.linspace(0.05, 0.95, 10)))
        n = 8
        ratio = -jax.vmap(jax.grad(lambda v: lm.pass_at_n_loss(v, n=n)))(x)  # CE grad is −1
        p = np.exp(np.asarray(x))
        np.testing.assert_allclose(
            ratio, n * (1 - p) ** (n - 1) * p / (1 - (1 - p) ** n), rtol=1e-8
        )
        assert np.all(ratio <= 1 + 1e-12) and np.all(np.diff(ratio) < 0)
        check_grads(jax.jit(lambda v: lm.pass_at_n_loss(v, n=n)), (x,), order=1, modes=["rev"])
    g = jax.grad(lambda v: lm.pass_at_n_loss(v, n=16).sum())(jnp.asarray(LOGP))
    assert np.all(np.isfinite(g))
    where = np.array([True, False, True, True, False, True, True])
    bad = np.where(where, LOGP, np.nan)
    got = lm.pass_at_n_loss(bad, n=4, where=where)
    np.testing.assert_allclose(got[where], lm.pass_at_n_loss(LOGP[where], n=4))
    assert np.all(got[~where] == 0)
    assert np.all(
        np.isfinite(jax.grad(lambda v: lm.pass_at_n_loss(v, n=4, where=where).sum())(bad))
    )
    assert np.all(np.isfinite(lm.pass_at_n_loss(LOGP.astype(jnp.bfloat16), n=4)))
    with pytest.raises(ValueError, match="n=0"):
        lm.pass_at_n_loss(LOGP, n=0)


# --- loss-based sample reweighting -------------------------------------------------------------

LOSSES = RNG.uniform(1.0, 5.0, size=(2, 9)).astype(np.float32)


def _np_reweighting(loss, strategy, r, cap=2.0):
    x = (loss - loss.mean()) / np.abs(loss - loss.mean()).max()
    f = {"linupper": x, "quadratic": 1 - x**2, "extremes": np.abs(x)}[strategy]
    w = len(loss) * np.exp(f / r) / np.exp(f / r).sum()
    if strategy == "linupper":  # cap by water-filling: repeat until no weight exceeds it
        for _ in range(len(loss)):
            over = w >= cap
            w = np.where(over, cap, w * (len(loss) - cap * over.sum()) / w[~over].sum())
    return w


def test_reweighting_hand_value_and_numpy():
    # losses (1, 3): x = (−1, 1), linupper, r = 1: w = 2·softmax(−1, 1), then the cap 2 binds
    w = lm.loss_reweighting(np.array([1.0, 3.0]), max_weight=10.0)
    np.testing.assert_allclose(w, 2 * np.exp([-1, 1]) / np.exp([-1, 1]).sum(), rtol=1e-5)
    for strategy in ("linupper", "quadratic", "extremes"):
        for r in (0.5, 2.0):
            got = lm.loss_reweighting(LOSSES, strategy=strategy, temperature=r)
            for b in range(2):
                want = _np_reweighting(LOSSES[b].astype(np.float64), strategy, r)
                np.testing.assert_allclose(got[b], want, rtol=1e-5)


def test_reweighting_properties():
    for strategy in ("linupper", "quadratic", "extremes"):
        w = lm.loss_reweighting(LOSSES, strategy=strategy, temperature=0.3)
        np.testing.assert_allclose(w.mean(-1), 1, rtol=1e-6)
        uniform = lm.loss_reweighting(LOSSES, strategy=strategy, temperature=1e9)
        np.testing.assert_allclose(uniform, 1, rtol=1e-6)  # r → ∞: uniform
    w = np.asarray(lm.loss_reweighting(LOSSES[0], temperature=0.5, max_weight=100.0))
    order = np.argsort(LOSSES[0])
    assert np.all(np.diff(w[order]) > 0)  # linupper: monotone in the loss
    capped = lm.loss_reweighting(LOSSES[0], temperature=0.05, max_weight=1.5)
    np.testing.assert_allclose(capped.max(), 1.5, rtol=1e-6)  # the cap holds exactly
    np.testing.assert_allclose(capped.mean(), 1, rtol=1e-6)
    g = jax.grad(lambda v: jnp.sum(lm.loss_reweighting(v) * v))(jnp.asarray(LOSSES[0]))
    np.testing.assert_allclose(g, lm.loss_reweighting(LOSSES[0]), rtol=1e-6)  # no gradient


def test_reweighting_where_robustness_and_errors():
    where = np.ones((2, 9), bool)
    where[0, [1, 4]] = False
    bad = np.where(where, LOSSES, np.nan)
    got = lm.loss_reweighting(bad, where=where)
    np.testing.assert_allclose(
        got[0, where[0]], lm.loss_reweighting(LOSSES[0, where[0]]), rtol=1e-6
    )
    assert np.all(got[~where] == 0)
    assert np.all(lm.loss_reweighting(LOSSES, where=np.zeros((2, 9), bool)) == 0)
    for x in (LOSSES * 1e30, LOSSES.astype(jnp.bfloat16), np.ones(5, np.float32)):
        w = lm.loss_reweighting(x)
        assert np.all(np.isfinite(w)) and np.allclose(np.mean(w, -1), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="strategy"):
        lm.loss_reweighting(LOSSES, strategy="cubic")
    with pytest.raises(ValueError, match="temperature=0"):
        lm.loss_reweighting(LOSSES, temperature=0)
    with pytest.raises(ValueError, match=r"max_weight=0.5"):
        lm.loss_reweighting(LOSSES, max_weight=0.5)
