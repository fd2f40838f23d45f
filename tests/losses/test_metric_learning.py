"""Tests of jaxlab.losses.metric_learning: pytorch-metric-learning 2.9 fixtures, NumPy loops."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxlab.losses import metric_learning as ml

FIXTURES = np.load(pathlib.Path(__file__).parent / "fixtures" / "pml_losses.npz")
BATCHES = [0, 1, 2]

LOSSES = {
    "contrastive": ml.contrastive_loss,
    "triplet": ml.triplet_margin_loss,
    "batch_hard": ml.batch_hard_triplet_loss,
    "circle": ml.circle_loss,
    "multi_similarity": ml.multi_similarity_loss,
    "supcon": ml.supervised_contrastive_loss,
    "ntxent": ml.ntxent_loss,
}


def _batch(b):
    return FIXTURES[f"b{b}_embeddings"], FIXTURES[f"b{b}_labels"]


# --- independent float64 NumPy loop transcriptions ----------------------------------------------


def _np_norm(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _np_dist(x):
    xn = _np_norm(x)
    n = len(x)
    return np.array([[np.linalg.norm(xn[i] - xn[j]) for j in range(n)] for i in range(n)])


def _np_cos(x):
    xn = _np_norm(x)
    return xn @ xn.T


def _pairs(y):
    n = len(y)
    pos = [(i, j) for i in range(n) for j in range(n) if i != j and y[i] == y[j]]
    neg = [(i, j) for i in range(n) for j in range(n) if y[i] != y[j]]
    return pos, neg


def _avg_nonzero(values):
    values = [v for v in values if v > 0]
    return float(np.mean(values)) if values else 0.0


def np_contrastive(x, y, pm=0.0, nm=1.0):
    d = _np_dist(x)
    pos, neg = _pairs(y)
    lp = [max(d[i, j] - pm, 0) for i, j in pos]
    ln = [max(nm - d[i, j], 0) for i, j in neg]
    return _avg_nonzero(lp) + _avg_nonzero(ln)


def np_triplet(x, y, margin=0.05):
    d = _np_dist(x)
    pos, neg = _pairs(y)
    losses = [max(d[a, p] - d[a2, q] + margin, 0) for a, p in pos for a2, q in neg if a2 == a]
    return _avg_nonzero(losses)


def np_batch_hard(x, y, margin=0.05, soft=False):
    d = _np_dist(x)
    out = []
    for a in range(len(y)):
        ps = [d[a, p] for p in range(len(y)) if p != a and y[p] == y[a]]
        ns = [d[a, q] for q in range(len(y)) if y[q] != y[a]]
        if ps and ns:
            gap = max(ps) - min(ns)
            out.append(np.log1p(np.exp(gap)) if soft else max(gap + margin, 0))
    return _avg_nonzero(out)


def np_circle(x, y, m=0.4, gamma=80.0):
    s = _np_cos(x)
    out = []
    for i in range(len(y)):
        sp = [s[i, j] for j in range(len(y)) if j != i and y[j] == y[i]]
        sn = [s[i, j] for j in range(len(y)) if y[j] != y[i]]
        if sp and sn:
            a = sum(np.exp(-gamma * max(1 + m - v, 0) * (v - (1 - m))) for v in sp)
            b = sum(np.exp(gamma * max(v + m, 0) * (v - m)) for v in sn)
            out.append(np.log1p(a * b))
    return _avg_nonzero(out)


def np_multi_similarity(x, y, alpha=2.0, beta=50.0, base=0.5):
    s = _np_cos(x)
    out = []
    for i in range(len(y)):
        sp = [s[i, j] for j in range(len(y)) if j != i and y[j] == y[i]]
        sn = [s[i, j] for j in range(len(y)) if y[j] != y[i]]
        lp = np.log1p(sum(np.exp(-alpha * (v - base)) for v in sp)) / alpha
        ln = np.log1p(sum(np.exp(beta * (v - base)) for v in sn)) / beta
        out.append(lp + ln)
    return float(np.mean(out))


def np_supcon(x, y, tau=0.1):
    s = _np_cos(x) / tau
    out = []
    for i in range(len(y)):
        ps = [j for j in range(len(y)) if j != i and y[j] == y[i]]
        if not ps:
            continue
        denom = sum(np.exp(s[i, j]) for j in range(len(y)) if j != i)
        out.append(-np.mean([s[i, p] - np.log(denom) for p in ps]))
    return _avg_nonzero(out)


def np_ntxent(x, y, tau=0.07):
    s = _np_cos(x) / tau
    pos, _ = _pairs(y)
    out = []
    for i, p in pos:
        negs = sum(np.exp(s[i, j]) for j in range(len(y)) if y[j] != y[i])
        out.append(-np.log(np.exp(s[i, p]) / (np.exp(s[i, p]) + negs)))
    return float(np.mean(out))


NUMPY = {
    "contrastive": np_contrastive,
    "triplet": np_triplet,
    "batch_hard": np_batch_hard,
    "circle": np_circle,
    "multi_similarity": np_multi_similarity,
    "supcon": np_supcon,
    "ntxent": np_ntxent,
}


# --- parity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("b", BATCHES)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_matches_pytorch_metric_learning_and_numpy_loops(name, b):
    x, y = _batch(b)
    loss, per_anchor = LOSSES[name](x, y)
    assert loss.dtype == jnp.float32 and per_anchor.shape == (len(y),)
    np.testing.assert_allclose(float(loss), FIXTURES[f"b{b}_{name}"], rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(float(loss), NUMPY[name](x, y), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("b", BATCHES)
def test_margin_and_soft_variants_match_pml(b):
    x, y = _batch(b)
    cases = {
        "triplet_m02": ml.triplet_margin_loss(x, y, margin=0.2)[0],
        "batch_hard_m02": ml.batch_hard_triplet_loss(x, y, margin=0.2)[0],
        "batch_hard_soft": ml.batch_hard_triplet_loss(x, y, soft=True)[0],
    }
    for key, value in cases.items():
        np.testing.assert_allclose(float(value), FIXTURES[f"b{b}_{key}"], rtol=2e-6, atol=1e-6)


def test_non_default_hyperparameters_match_numpy():
    x, y = _batch(1)
    checks = [
        (
            ml.contrastive_loss(x, y, pos_margin=0.3, neg_margin=1.2)[0],
            np_contrastive(x, y, 0.3, 1.2),
        ),
        (ml.batch_hard_triplet_loss(x, y, soft=True)[0], np_batch_hard(x, y, soft=True)),
        (ml.circle_loss(x, y, m=0.25, gamma=16.0)[0], np_circle(x, y, 0.25, 16.0)),
        (
            ml.multi_similarity_loss(x, y, alpha=1.0, beta=10.0, base=0.3)[0],
            np_multi_similarity(x, y, 1.0, 10.0, 0.3),
        ),
        (ml.supervised_contrastive_loss(x, y, temperature=0.5)[0], np_supcon(x, y, 0.5)),
        (ml.ntxent_loss(x, y, temperature=0.3)[0], np_ntxent(x, y, 0.3)),
    ]
    for got, want in checks:
        np.testing.assert_allclose(float(got), want, rtol=2e-6)


# --- per-anchor values and the stated reductions ------------------------------------------------


def test_per_anchor_reductions_are_as_documented():
    x, y = _batch(0)
    pos, _ = _pairs(y)
    loss, per = ml.ntxent_loss(x, y)
    np.testing.assert_allclose(float(loss), float(jnp.sum(per)) / len(pos), rtol=1e-6)
    for fn in (ml.circle_loss, ml.supervised_contrastive_loss, ml.batch_hard_triplet_loss):
        loss, per = fn(x, y)
        np.testing.assert_allclose(float(loss), float(jnp.mean(per[per > 0])), rtol=1e-6)
    loss, per = ml.multi_similarity_loss(x, y)
    np.testing.assert_allclose(float(loss), float(jnp.mean(per)), rtol=1e-6)
    # per-anchor sums of the pair / triplet terms
    d = _np_dist(x)
    want = [
        sum(
            max(d[a, p] - d[a, q] + 0.05, 0)
            for p in range(12)
            for q in range(12)
            if p != a and y[p] == y[a] and y[q] != y[a]
        )
        for a in range(12)
    ]
    np.testing.assert_allclose(ml.triplet_margin_loss(x, y)[1], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_where_equals_dropping_examples(name):
    x, y = _batch(1)
    keep = np.ones(len(y), bool)
    keep[[0, 5, 7]] = False
    loss, per = LOSSES[name](x, y, where=jnp.asarray(keep))
    ref_loss, ref_per = LOSSES[name](x[keep], y[keep])
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(per[keep], ref_per, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(per)[~keep] == 0)


# --- defining properties ------------------------------------------------------------------------


def _separated():
    """Two tight, orthogonal classes: every margin-based loss is exactly 0."""
    x = jnp.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    return x, jnp.array([0, 0, 1, 1])


@pytest.mark.parametrize(
    "fn", [ml.contrastive_loss, ml.triplet_margin_loss, ml.batch_hard_triplet_loss]
)
def test_zero_for_separated_classes(fn):
    loss, per = fn(*_separated())
    assert float(loss) == 0.0 and np.all(np.asarray(per) == 0)


def test_circle_and_softmax_losses_small_for_separated_classes():
    x, y = _separated()
    assert float(ml.circle_loss(x, y, gamma=80.0)[0]) < 1e-3
    assert float(ml.supervised_contrastive_loss(x, y)[0]) < 1e-3
    assert float(ml.ntxent_loss(x, y, temperature=0.05)[0]) < 1e-3
    # multi-similarity keeps log(1 + e^{-α(1 − λ)}) / α for perfect positives
    np.testing.assert_allclose(
        float(ml.multi_similarity_loss(x, y)[0]), np.log1p(np.exp(-1.0)) / 2, rtol=1e-3
    )


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_scale_and_permutation_invariance(name):
    x, y = _batch(2)
    x = jnp.asarray(x, jnp.float32)
    base = LOSSES[name](x, y)
    scales = jnp.linspace(0.5, 3.0, len(y))[:, None]
    scaled = LOSSES[name](x * scales, y)
    np.testing.assert_allclose(float(scaled[0]), float(base[0]), rtol=1e-5)
    perm = np.random.default_rng(0).permutation(len(y))
    permuted = LOSSES[name](x[perm], y[perm])
    np.testing.assert_allclose(float(permuted[0]), float(base[0]), rtol=1e-5)
    np.testing.assert_allclose(permuted[1], base[1][perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(LOSSES) - {"circle"}))
def test_gradients(name):
    x, y = _batch(0)
    x = jnp.asarray(x[:6], jnp.float32)
    y = jnp.array([0, 0, 1, 1, 2, 2])
    check_grads(
        jax.jit(lambda e: LOSSES[name](e, y)[0]),
        (x,),
        order=1,
        modes=("rev",),
        atol=5e-2,
        rtol=5e-2,
    )


def test_circle_gradient_treats_alpha_as_constant():
    """Finite differences of the NumPy circle loss with α frozen at the evaluation point."""
    x0, _ = _batch(0)
    x0 = x0[:6]
    y = np.array([0, 0, 1, 1, 2, 2])
    m, gamma, s0 = 0.4, 8.0, _np_cos(x0)

    def frozen(x):
        s = _np_cos(x)
        out = []
        for i in range(6):
            a = sum(
                np.exp(-gamma * max(1 + m - s0[i, j], 0) * (s[i, j] - 1 + m))
                for j in range(6)
                if j != i and y[j] == y[i]
            )
            b = sum(
                np.exp(gamma * max(s0[i, j] + m, 0) * (s[i, j] - m))
                for j in range(6)
                if y[j] != y[i]
            )
            out.append(np.log1p(a * b))
        return np.mean(out)

    num = np.zeros_like(x0)
    for idx in np.ndindex(*x0.shape):
        e = np.zeros_like(x0)
        e[idx] = 1e-6
        num[idx] = (frozen(x0 + e) - frozen(x0 - e)) / 2e-6
    got = jax.jit(jax.grad(lambda e: ml.circle_loss(e, jnp.asarray(y), gamma=gamma)[0]))(
        jnp.asarray(x0, jnp.float32)
    )
    np.testing.assert_allclose(got, num, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_nan_free_value_and_grad(name):
    y = jnp.array([0, 0, 1, 1])
    f = jax.jit(jax.value_and_grad(lambda e: LOSSES[name](e, y), has_aux=True))
    for x in (jnp.ones((4, 3)), jnp.zeros((4, 3))):  # identical embeddings, zero vectors
        (value, per), grad = f(x)
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
        assert np.all(np.isfinite(per))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_jit_and_bf16(name):
    x, y = _batch(0)
    eager = LOSSES[name](x, y)
    jitted = jax.jit(LOSSES[name])(jnp.asarray(x, jnp.float32), jnp.asarray(y))
    np.testing.assert_allclose(float(jitted[0]), float(eager[0]), rtol=1e-6)
    low = LOSSES[name](jnp.asarray(x, jnp.bfloat16), y)
    assert low[0].dtype == jnp.float32 and low[1].dtype == jnp.float32


def test_degenerate_batches_give_zero():
    x = jnp.asarray(_batch(0)[0][:4])
    all_same = jnp.zeros(4, int)
    all_diff = jnp.arange(4)
    for fn in (
        ml.supervised_contrastive_loss,
        ml.ntxent_loss,
        ml.circle_loss,
        ml.triplet_margin_loss,
        ml.batch_hard_triplet_loss,
    ):
        assert float(fn(x, all_same)[0]) == 0.0
        assert float(fn(x, all_diff)[0]) == 0.0


def test_bad_arguments_raise():
    x, y = _batch(0)
    with pytest.raises(ValueError, match="embeddings"):
        ml.triplet_margin_loss(x[0], y)
    with pytest.raises(ValueError, match="labels"):
        ml.circle_loss(x, y[:3])
    with pytest.raises(ValueError, match="where"):
        ml.contrastive_loss(x, y, where=jnp.ones(3, bool))
    with pytest.raises(ValueError, match="temperature"):
        ml.supervised_contrastive_loss(x, y, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        ml.ntxent_loss(x, y, temperature=-1.0)
    with pytest.raises(ValueError, match="beta"):
        ml.multi_similarity_loss(x, y, beta=0.0)
