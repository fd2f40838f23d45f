"""Ranking and order-based losses against hand values, NumPy transcriptions and limit cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxlab.losses import ranking as rk

RNG = np.random.default_rng(0)
L = RNG.uniform(size=(3, 8)).astype(np.float32)
MASK = RNG.uniform(size=(3, 8)) > 0.3


# --- spectral risk -----------------------------------------------------------------------------


def _np_superquantile_spectrum(n, alpha):
    """The deshift construction: uniform 1/(nα) on the top, the remainder on one boundary weight."""
    spectrum = np.zeros(n)
    idx = int(np.floor(n * (1 - alpha)))
    frac = 1 - (n - idx - 1) / (n * alpha)
    if frac > 1e-12:
        spectrum[idx] = frac
        spectrum[idx + 1 :] = 1 / (n * alpha)
    else:
        spectrum[idx:] = 1 / (n - idx)
    return spectrum


def test_spectral_risk_hand_values():
    losses = jnp.asarray([3.0, 1.0, 4.0, 2.0])
    np.testing.assert_allclose(rk.superquantile(losses, alpha=0.5), 3.5)
    np.testing.assert_allclose(rk.superquantile(losses, alpha=0.375), (4 + 3 / 2) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(rk.superquantile_spectrum(4, alpha=0.5), [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(rk.extremile_spectrum(2, n_draws=2), [0.25, 0.75])
    np.testing.assert_allclose(rk.extremile(jnp.asarray([1.0, 3.0]), n_draws=2), 2.5)


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.3, 0.5, 0.77, 1.0])
def test_superquantile_spectrum_matches_numpy(alpha):
    np.testing.assert_allclose(
        rk.superquantile_spectrum(8, alpha=alpha), _np_superquantile_spectrum(8, alpha), atol=1e-6
    )
    want = np.sort(L, -1) @ _np_superquantile_spectrum(8, alpha)
    np.testing.assert_allclose(rk.superquantile(L, alpha=alpha), want, rtol=1e-5)


def test_spectra_are_valid_and_match_numpy():
    n, i = 8, np.arange(1, 9)
    esrm = (np.exp(2.0 * i / n) - np.exp(2.0 * (i - 1) / n)) / (np.exp(2.0) - 1)
    np.testing.assert_allclose(rk.esrm_spectrum(n, risk_aversion=2.0), esrm, rtol=1e-5)
    extremile = (i / n) ** 2.5 - ((i - 1) / n) ** 2.5
    np.testing.assert_allclose(rk.extremile_spectrum(n, n_draws=2.5), extremile, rtol=1e-5)
    for s, fn, kw in (
        (esrm, rk.esrm, {"risk_aversion": 2.0}),
        (extremile, rk.extremile, {"n_draws": 2.5}),
    ):
        np.testing.assert_allclose(fn(L, **kw), np.sort(L, -1) @ s, rtol=1e-5)
        np.testing.assert_allclose(rk.spectral_risk(L, s), np.sort(L, -1) @ s, rtol=1e-5)
        assert np.all(np.diff(s) >= 0) and np.isclose(s.sum(), 1)


def test_spectral_risk_limit_cases():
    np.testing.assert_allclose(rk.superquantile(L, alpha=1.0), L.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(rk.superquantile(L, alpha=1 / 8), L.max(-1), rtol=1e-6)
    np.testing.assert_allclose(rk.spectral_risk(L, np.full(8, 1 / 8)), L.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(rk.extremile(L, n_draws=1), L.mean(-1), rtol=1e-6)
    grad = jax.grad(lambda x: rk.superquantile(x, alpha=0.25))(L[0])
    top = np.argsort(L[0])[-2:]
    np.testing.assert_allclose(grad[top], 0.5)
    assert np.count_nonzero(grad) == 2  # gradient mass only on the top losses


def test_spectral_risk_where_equals_slicing_and_gradients():
    mask = MASK.copy()
    mask[0] = False
    for fn, kw in ((rk.superquantile, {"alpha": 0.3}), (rk.esrm, {"risk_aversion": 1.0})):
        got = fn(L, where=mask, **kw)
        assert got[0] == 0
        for r in (1, 2):
            np.testing.assert_allclose(got[r], fn(L[r, mask[r]], **kw), rtol=1e-6)
        bad = np.where(mask, L, np.nan)
        assert np.all(
            np.isfinite(jax.grad(lambda x, fn=fn, kw=kw: fn(x, where=mask, **kw).sum())(bad))
        )
    with jax.enable_x64(True):
        x = jnp.asarray(L, jnp.float64)
        check_grads(jax.jit(lambda v: rk.superquantile(v, alpha=0.3)), (x,), order=1, modes=["rev"])
        check_grads(jax.jit(lambda v: rk.esrm(v, risk_aversion=1.0)), (x,), order=1, modes=["rev"])


def test_spectral_risk_huge_bf16_and_bad_inputs():
    for x in (L * 1e30, L.astype(jnp.bfloat16)):
        val, g = jax.jit(jax.value_and_grad(lambda v: rk.superquantile(v, alpha=0.3).sum()))(
            jnp.asarray(x)
        )
        assert np.isfinite(val) and np.all(np.isfinite(g.astype(np.float32)))
    with pytest.raises(ValueError, match="alpha=0"):
        rk.superquantile(L, alpha=0)
    with pytest.raises(ValueError, match=r"n_draws=0.5"):
        rk.extremile_spectrum(4, n_draws=0.5)
    with pytest.raises(ValueError, match="risk_aversion=-1"):
        rk.esrm(L, risk_aversion=-1)
    with pytest.raises(ValueError, match="spectrum"):
        rk.spectral_risk(L, np.ones(3) / 3)
    with pytest.raises(ValueError, match="where"):
        rk.superquantile(L, alpha=0.5, where=MASK[0])
    with pytest.raises(ValueError, match="n=0"):
        rk.superquantile_spectrum(0, alpha=0.5)


# --- AUC ---------------------------------------------------------------------------------------

S = RNG.normal(size=(3, 8)).astype(np.float32)
Y = (RNG.uniform(size=(3, 8)) > 0.5).astype(np.int32)
Y[:, 0], Y[:, 1] = 1, 0  # every row has both classes


def _np_mann_whitney(s, y):
    pos, neg = s[y > 0], s[y <= 0]
    return np.mean(np.log1p(np.exp(-(pos[:, None] - neg[None, :]))))


def test_auc_hand_values():
    s, y = jnp.asarray([2.0, 0.0, 1.0]), jnp.asarray([1, 0, 0])
    want = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    np.testing.assert_allclose(rk.mann_whitney_loss(s, y), want, rtol=1e-6)
    np.testing.assert_allclose(
        rk.auc(jnp.asarray([1.0, 1.0, 0.0, 2.0]), jnp.asarray([1, 0, 1, 0])), 0.125
    )


def test_auc_against_numpy_sklearn_and_scipy():
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    loss, area = rk.mann_whitney_loss(S, Y), rk.auc(S, Y)
    for r in range(3):
        np.testing.assert_allclose(loss[r], _np_mann_whitney(S[r], Y[r]), rtol=1e-5)
        np.testing.assert_allclose(area[r], roc_auc_score(Y[r], S[r]), rtol=1e-6)
        u = mannwhitneyu(S[r][Y[r] > 0], S[r][Y[r] == 0]).statistic
        np.testing.assert_allclose(area[r], u / (Y[r].sum() * (8 - Y[r].sum())), rtol=1e-6)
        assert (1 - area[r]) * np.log(2) <= loss[r] + 1e-7  # upper bound on the AoC


def test_auc_limit_cases_where_and_gradients():
    margin = 100.0 * (2 * Y - 1).astype(np.float32)
    np.testing.assert_allclose(rk.mann_whitney_loss(margin, Y), 0, atol=1e-30)
    np.testing.assert_allclose(rk.auc(margin, Y), 1)
    np.testing.assert_allclose(rk.mann_whitney_loss(np.zeros_like(S), Y), np.log(2), rtol=1e-6)
    mask = MASK.copy()
    mask[:, :2] = True
    got = rk.mann_whitney_loss(S, Y, where=mask)
    for r in range(3):
        m = mask[r]
        np.testing.assert_allclose(got[r], rk.mann_whitney_loss(S[r, m], Y[r, m]), rtol=1e-6)
        np.testing.assert_allclose(rk.auc(S, Y, where=mask)[r], rk.auc(S[r, m], Y[r, m]))
    assert rk.mann_whitney_loss(S[0], np.ones(8)) == 0 and rk.auc(S[0], np.ones(8)) == 0.5
    bad = np.where(mask, S, np.nan)
    assert np.all(
        np.isfinite(jax.grad(lambda x: rk.mann_whitney_loss(x, Y, where=mask).sum())(bad))
    )
    for x in (S * 1e30, S.astype(jnp.bfloat16)):
        val, g = jax.jit(jax.value_and_grad(lambda v: rk.mann_whitney_loss(v, Y).sum()))(
            jnp.asarray(x)
        )
        assert np.isfinite(val) and np.all(np.isfinite(g.astype(np.float32)))
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda v: rk.mann_whitney_loss(v, Y)),
            (jnp.asarray(S, jnp.float64),),
            1,
            ["rev"],
        )
    with pytest.raises(ValueError, match="labels"):
        rk.mann_whitney_loss(S, Y[0])
    with pytest.raises(ValueError, match="where"):
        rk.auc(S, Y, where=MASK[0])


# --- NeuralNDCG --------------------------------------------------------------------------------

REL = RNG.integers(0, 4, size=(3, 6)).astype(np.float32)
SC = RNG.normal(size=(3, 6)).astype(np.float32)


def _np_neural_sort(s, tau):
    """P̂ = softmax_rows(((n + 1 − 2i) s − A_s 1)/τ), transcribed from Grover et al. eq. (4)."""
    n = len(s)
    a1 = np.abs(s[:, None] - s[None, :]).sum(1)
    logits = np.array([(n + 1 - 2 * i) * s - a1 for i in range(1, n + 1)]) / tau
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_neural_ndcg(s, rel, tau, k, n_iter=50):
    p = _np_neural_sort(s.astype(np.float64), tau)
    for _ in range(n_iter):
        p = p / p.sum(0, keepdims=True)
        p = p / p.sum(1, keepdims=True)
    g = 2.0**rel - 1
    d = 1 / np.log2(np.arange(len(s)) + 2)
    return -np.sum((p @ g * d)[:k]) / np.sum((np.sort(g)[::-1] * d)[:k])


def test_neural_sort_hand_value_and_numpy():
    # s = (0, 1): A_s 1 = (1, 1); row 1: (1·s − 1) → softmax(−1, 0); row 2: (−s − 1) → (−1, −2)
    p = rk.neural_sort(jnp.asarray([0.0, 1.0]))
    e = 1 / (1 + np.e)
    np.testing.assert_allclose(p, [[e, 1 - e], [1 - e, e]], rtol=1e-6)
    np.testing.assert_allclose(
        rk.neural_sort(SC, temperature=0.5)[1], _np_neural_sort(SC[1], 0.5), rtol=1e-5
    )
    hard = rk.neural_sort(SC, temperature=1e-3)
    np.testing.assert_allclose(hard, np.eye(6)[np.argsort(-SC, -1)], atol=1e-5)


def test_neural_ndcg_matches_numpy_and_sinkhorn_is_doubly_stochastic():
    for tau, k in ((1.0, None), (0.3, 3)):
        got = rk.neural_ndcg_loss(SC, REL, temperature=tau, k=k)
        for r in range(3):
            np.testing.assert_allclose(
                got[r], _np_neural_ndcg(SC[r], REL[r], tau, k or 6), rtol=1e-4
            )
    p = rk.sinkhorn_normalize(rk.neural_sort(SC))
    np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-5)
    np.testing.assert_allclose(p.sum(-2), 1, rtol=1e-4)
    assert np.all(np.isclose(rk.neural_sort(SC).sum(-1), 1))


def test_neural_ndcg_limits():
    from sklearn.metrics import ndcg_score

    gains = 2.0**REL - 1
    for k in (None, 3):
        got = rk.neural_ndcg_loss(SC, REL, temperature=1e-3, k=k)
        np.testing.assert_allclose(-np.mean(got), ndcg_score(gains, SC, k=k), rtol=1e-4)
        np.testing.assert_allclose(-got[0], ndcg_score(gains[:1], SC[:1], k=k), rtol=1e-4)
    ideal = rk.neural_ndcg_loss(REL + 0.01 * np.arange(6, dtype=np.float32), REL, temperature=1e-3)
    np.testing.assert_allclose(ideal, -1, rtol=1e-5)
    lin = rk.neural_ndcg_loss(SC, REL, temperature=1e-3, powered_relevance=False)
    np.testing.assert_allclose(-np.mean(lin), ndcg_score(REL, SC), rtol=1e-4)
    assert rk.neural_ndcg_loss(SC[0], np.zeros(6)) == 0


def test_neural_ndcg_where_gradients_and_robustness():
    mask = MASK[:, :6].copy()
    mask[:, 0] = True
    mask[0] = False
    got = rk.neural_ndcg_loss(SC, REL, temperature=0.5, where=mask)
    assert got[0] == 0
    for r in (1, 2):
        m = mask[r]
        want = rk.neural_ndcg_loss(SC[r, m], REL[r, m], temperature=0.5)
        np.testing.assert_allclose(got[r], want, rtol=1e-5)
    bad = np.where(mask, SC, np.nan)
    g = jax.grad(lambda x: rk.neural_ndcg_loss(x, REL, where=mask).sum())(bad)
    assert np.all(np.isfinite(g))
    for x in (SC * 1e4, SC.astype(jnp.bfloat16)):
        val, g = jax.jit(jax.value_and_grad(lambda v: rk.neural_ndcg_loss(v, REL).sum()))(
            jnp.asarray(x)
        )
        assert np.isfinite(val) and np.all(np.isfinite(g.astype(np.float32)))
    with jax.enable_x64(True):
        f = lambda v: rk.neural_ndcg_loss(v, REL, n_iter=5)  # noqa: E731
        check_grads(jax.jit(f), (jnp.asarray(SC, jnp.float64),), order=1, modes=["rev"])
    with pytest.raises(ValueError, match="temperature=0"):
        rk.neural_ndcg_loss(SC, REL, temperature=0)
    with pytest.raises(ValueError, match="k=0"):
        rk.neural_ndcg_loss(SC, REL, k=0)
    with pytest.raises(ValueError, match="relevance"):
        rk.neural_ndcg_loss(SC, REL[0])
    with pytest.raises(ValueError, match=r"p.shape"):
        rk.sinkhorn_normalize(jnp.ones((2, 3)))


# --- multi-label retrieval ---------------------------------------------------------------------

ML = np.zeros((3, 7), np.int32)
ML[0, [1]] = 1
ML[1, [0, 3]] = 1
ML[2, [2, 4, 6]] = 1
MS = RNG.normal(size=(3, 7)).astype(np.float32)


def _np_decoupled(s, y):
    neg = np.exp(s[y == 0]).sum()
    return np.mean([-np.log(np.exp(s[p]) / (np.exp(s[p]) + neg)) for p in np.flatnonzero(y)])


def _np_soft_topk(s, y, k, alpha):
    from scipy.optimize import brentq
    from scipy.special import expit

    t = brentq(lambda t: expit(alpha * (s + t)).sum() - k, -s.max() - 50, -s.min() + 50, xtol=1e-14)
    return -np.mean(np.log(expit(alpha * (s[y > 0] + t))))


def test_decoupled_softmax_hand_numpy_and_optax():
    import optax

    s, y = jnp.asarray([0.0, 1.0, 2.0]), jnp.asarray([1, 1, 0])
    want = (np.log1p(np.exp(2.0)) + np.log1p(np.exp(1.0))) / 2  # −log(e^a/(e^a + e^2))
    np.testing.assert_allclose(rk.decoupled_softmax_loss(s, y), want, rtol=1e-6)
    got = rk.decoupled_softmax_loss(MS, ML)
    for r in range(3):
        np.testing.assert_allclose(got[r], _np_decoupled(MS[r], ML[r]), rtol=1e-5)
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(MS, np.argmax(ML, -1))
    np.testing.assert_allclose(got[0], ce[0], rtol=1e-6)  # one positive: softmax CE
    # extra positives leave each positive's term unchanged (other positives removed)
    single = [
        rk.decoupled_softmax_loss(MS[2], ML[2], where=(ML[2] == 0) | (np.arange(7) == p))
        for p in (2, 4, 6)
    ]
    np.testing.assert_allclose(got[2], np.mean(single), rtol=1e-6)


def test_soft_topk_numpy_constraint_and_limits():
    got = rk.soft_topk_loss(MS, ML, k=3, alpha=2.0)
    for r in range(3):
        np.testing.assert_allclose(
            got[r], _np_soft_topk(MS[r].astype(np.float64), ML[r], 3, 2.0), rtol=1e-4
        )
    x = rk._soft_topk_logits(jnp.asarray(MS), jnp.ones(MS.shape, bool), 3, 2.0, 64)
    np.testing.assert_allclose(jax.nn.sigmoid(x).sum(-1), 3, rtol=1e-5)
    top = (np.argsort(np.argsort(-MS, -1), -1) < 2).astype(np.int32)  # the top-2 are positives
    np.testing.assert_allclose(rk.soft_topk_loss(MS, top, k=2, alpha=1e3), 0, atol=1e-4)


def test_multilabel_where_gradients_robustness_and_errors():
    mask = np.ones((3, 7), bool)
    mask[:, 5] = False
    for fn in (rk.decoupled_softmax_loss, lambda s, y, **kw: rk.soft_topk_loss(s, y, k=2, **kw)):
        got = fn(MS, ML, where=mask)
        np.testing.assert_allclose(got, fn(MS[:, mask[0]], ML[:, mask[0]]), rtol=1e-5)
        bad = np.where(mask, MS, np.nan)
        assert np.all(np.isfinite(jax.grad(lambda x, fn=fn: fn(x, ML, where=mask).sum())(bad)))
        for x in (MS * 1e30, MS.astype(jnp.bfloat16)):
            val, g = jax.jit(jax.value_and_grad(lambda v, fn=fn: fn(v, ML).sum()))(jnp.asarray(x))
            assert np.isfinite(val) and np.all(np.isfinite(g.astype(np.float32)))
        assert fn(MS[0], np.zeros(7)) == 0
    with jax.enable_x64(True):
        x = jnp.asarray(MS, jnp.float64)
        check_grads(
            jax.jit(lambda v: rk.decoupled_softmax_loss(v, ML)), (x,), order=1, modes=["rev"]
        )
        f = lambda v: rk.soft_topk_loss(v, ML, k=3, n_iter=100)  # noqa: E731
        check_grads(jax.jit(f), (x,), order=1, modes=["rev"])
    with pytest.raises(ValueError, match="k=7"):
        rk.soft_topk_loss(MS, ML, k=7)
    with pytest.raises(ValueError, match="alpha=0"):
        rk.soft_topk_loss(MS, ML, alpha=0)
    with pytest.raises(ValueError, match="labels"):
        rk.decoupled_softmax_loss(MS, ML[0])
