"""Penalties against hand values, NumPy transcriptions of the papers' formulas and limit cases."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxlab.regularizers.penalties import (
    ELRState,
    conr_loss,
    elr_init,
    elr_loss,
    hgp_alignment_penalty,
    hutchinson_alignment_penalty,
    irm_objective,
    irmv1_penalty,
    multi_sample_dropout_loss,
    spectral_regularizer,
    wasserstein_init_regularizer,
)

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)
Z = RNG.normal(size=(8, 3)).astype(np.float32)
LABELS = RNG.integers(0, 3, size=8)


def _np_irm_grads(z, y):
    """d/dw CE(w z, y) at w=1 = Σ_k p_k z_k − z_y, the paper's dummy-classifier gradient."""
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p * z).sum(-1) - z[np.arange(len(y)), y]


def test_irmv1_hand_value_and_numpy():
    # one example, logits [0, ln 3], label 0: p = [1/4, 3/4], d = 3/4 ln 3 − 0
    got = irmv1_penalty(jnp.array([[0.0, np.log(3.0)]]), jnp.array([0]))
    np.testing.assert_allclose(got, (0.75 * np.log(3.0)) ** 2, rtol=1e-6)
    d = _np_irm_grads(Z, LABELS)
    np.testing.assert_allclose(irmv1_penalty(Z, LABELS), d.mean() ** 2, rtol=1e-5)
    unbiased = irmv1_penalty(Z, LABELS, unbiased=True)
    np.testing.assert_allclose(unbiased, d[::2].mean() * d[1::2].mean(), rtol=1e-5)
    mask = np.array([1, 1, 0, 1, 1, 0, 1, 1], bool)
    got = irmv1_penalty(Z, LABELS, where=jnp.asarray(mask))
    np.testing.assert_allclose(got, irmv1_penalty(Z[mask], LABELS[mask]), rtol=1e-5)


def test_irmv1_zero_when_dummy_scale_is_stationary():
    """Calibrated logits: p(class 1) = 3/4 and 3 of 4 labels are 1, so w=1 is stationary."""
    z = jnp.tile(jnp.array([[0.0, np.log(3.0)]]), (4, 1))
    y = jnp.array([1, 1, 1, 0])
    np.testing.assert_allclose(irmv1_penalty(z, y), 0.0, atol=1e-7)
    y8 = jnp.array([1, 1, 1, 1, 1, 0, 0, 1])  # each half (even / odd) is calibrated too
    np.testing.assert_allclose(irmv1_penalty(jnp.tile(z, (2, 1)), y8, unbiased=True), 0, atol=1e-7)
    assert float(irmv1_penalty(z, jnp.array([1, 1, 1, 1]))) > 0


def test_irmv1_squared_loss_closed_form_and_sigmoid():
    pred, target = RNG.normal(size=6), RNG.normal(size=6)
    got = irmv1_penalty(pred, target, loss_fn=lambda p, t: (p - t) ** 2)
    np.testing.assert_allclose(got, np.mean(2 * (pred - target) * pred) ** 2, rtol=1e-5)
    z, y = RNG.normal(size=6), RNG.integers(0, 2, size=6).astype(np.float32)
    got = irmv1_penalty(z, y, loss_fn=optax.losses.sigmoid_binary_cross_entropy)
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(got, np.mean((sig - y) * z) ** 2, rtol=1e-5)


def test_irmv1_grads_and_devices():
    with jax.enable_x64(True):
        z = jnp.asarray(Z, jnp.float64)
        check_grads(lambda z: irmv1_penalty(z, LABELS), (z,), order=1, modes=["rev"])
    pmapped = jax.pmap(lambda z, y: irmv1_penalty(z, y, axis_name="i"), axis_name="i")
    got = pmapped(Z.reshape(4, 2, 3), LABELS.reshape(4, 2))
    np.testing.assert_allclose(got, np.full(4, irmv1_penalty(Z, LABELS)), rtol=1e-5)


def test_irm_objective_and_bad_input():
    got = irm_objective(jnp.array([1.0, 2.0]), jnp.array([0.5, 0.25]), lam=10.0)
    np.testing.assert_allclose(got, 3.0 + 10 * 0.75, rtol=1e-6)
    with pytest.raises(ValueError, match="lam=-1"):
        irm_objective(jnp.ones(2), jnp.ones(2), lam=-1.0)
    with pytest.raises(ValueError, match="env_penalties"):
        irm_objective(jnp.ones(2), jnp.ones(3), lam=1.0)
    with pytest.raises(ValueError, match="where"):
        irmv1_penalty(Z, LABELS, where=jnp.ones(3, bool))
    with pytest.raises(ValueError, match="per-example"):
        irmv1_penalty(Z, LABELS, loss_fn=lambda z, y: jnp.mean(z))


def _np_elr(z, y, targets, idx, lam, beta, eps=1e-4):
    """Transcription of the official ELR forward (shengliu66/ELR, ``elr_loss.forward``)."""
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p = np.clip(p, eps, 1 - eps)
    targets = targets.copy()
    targets[idx] = beta * targets[idx] + (1 - beta) * p / p.sum(-1, keepdims=True)
    ce = -np.log(
        np.exp(z - z.max(-1, keepdims=True)).T / np.exp(z - z.max(-1, keepdims=True)).sum(-1)
    ).T
    ce = ce[np.arange(len(y)), y]
    return ce + lam * np.log(1 - (targets[idx] * p).sum(-1)), targets


IDX = np.array([5, 0, 3, 9, 1, 2, 7, 4])


def test_elr_matches_official_forward_over_two_steps():
    state = elr_init(10, 3)
    targets = np.zeros((10, 3), np.float32)
    step = jax.jit(lambda z, s: elr_loss(z, LABELS, s, IDX))
    for z in (Z, 2 * Z[::-1]):
        got, state = step(jnp.asarray(z), state)
        want, targets = _np_elr(z, LABELS, targets, IDX, 3.0, 0.7)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        np.testing.assert_allclose(state.targets, targets, rtol=1e-6, atol=1e-7)
    assert np.all(np.asarray(state.targets)[[6, 8]] == 0)  # rows outside the batch are untouched


def test_elr_hand_value_and_limits():
    # C=2, logits [0, 0]: p = [1/2, 1/2], t = 0.3 · [1/2, 1/2] from zero targets, ⟨t, p⟩ = 0.15
    got, state = elr_loss(jnp.zeros((1, 2)), jnp.array([0]), elr_init(1, 2), jnp.array([0]))
    np.testing.assert_allclose(got, [np.log(2) + 3 * np.log(1 - 0.15)], rtol=1e-6)
    np.testing.assert_allclose(state.targets, [[0.15, 0.15]], rtol=1e-6)
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(Z, LABELS)
    np.testing.assert_allclose(elr_loss(Z, LABELS, elr_init(10, 3), IDX, lam=0.0)[0], ce)
    # confident logits matching a one-hot target: ⟨t, p⟩ < 1, finite loss and gradient
    onehot = ELRState(jnp.zeros((10, 3)).at[IDX].set(jnp.eye(3)[LABELS]))
    big = jnp.eye(3)[LABELS] * 1e4
    val, grad = jax.value_and_grad(lambda z: elr_loss(z, LABELS, onehot, IDX, beta=0.0)[0].sum())(
        big
    )
    assert np.isfinite(val) and np.isfinite(grad).all()


def test_elr_regularizer_pulls_predictions_toward_targets():
    state = ELRState(jnp.asarray(RNG.dirichlet(np.ones(3), size=10), jnp.float32))
    t = state.targets[IDX]

    def reg(z):
        loss = elr_loss(z, LABELS, state, IDX, beta=1.0)[0]
        return jnp.sum(loss - optax.losses.softmax_cross_entropy_with_integer_labels(z, LABELS))

    z_new = Z - 0.05 * jax.grad(reg)(jnp.asarray(Z))
    before = jnp.sum(t * jax.nn.softmax(Z), -1)
    after = jnp.sum(t * jax.nn.softmax(z_new), -1)
    assert np.all(after > before)
    # the target is detached: the gradient equals that with the updated targets frozen
    new = elr_loss(Z, LABELS, state, IDX)[1]
    g = jax.grad(lambda z: elr_loss(z, LABELS, state, IDX)[0].sum())(jnp.asarray(Z))
    g_frozen = jax.grad(lambda z: elr_loss(z, LABELS, new, IDX, beta=1.0)[0].sum())(jnp.asarray(Z))
    np.testing.assert_allclose(g, g_frozen, rtol=1e-5, atol=1e-7)
    with jax.enable_x64(True):
        s64 = ELRState(jnp.asarray(state.targets, jnp.float64))
        check_grads(
            lambda z: elr_loss(z, LABELS, s64, IDX, beta=1.0)[0],
            (jnp.asarray(Z, jnp.float64),),
            order=1,
            modes=["rev"],
        )


def test_elr_bad_input_raises():
    with pytest.raises(ValueError, match=r"targets\.shape"):
        elr_loss(Z, LABELS, elr_init(10, 4), IDX)
    with pytest.raises(ValueError, match="indices"):
        elr_loss(Z, LABELS, elr_init(10, 3), IDX[:3])
    with pytest.raises(ValueError, match=r"beta=1\.5"):
        elr_loss(Z, LABELS, elr_init(10, 3), IDX, beta=1.5)
    with pytest.raises(ValueError, match="num_classes=1"):
        elr_init(10, 1)


W_HEAD = RNG.normal(size=(5, 3)).astype(np.float32)
FEAT = RNG.normal(size=(8, 5)).astype(np.float32)


def _head(f):
    return f @ W_HEAD


def test_multi_sample_dropout_limits_and_numpy():
    plain = optax.losses.softmax_cross_entropy_with_integer_labels(_head(FEAT), LABELS)
    got = multi_sample_dropout_loss(KEY, FEAT, LABELS, head_fn=_head, num_samples=3, rate=0.0)
    np.testing.assert_allclose(got, plain, rtol=1e-5)
    # the documented key derivation: sample m uses split(key, M)[m]; M=1 is standard dropout
    keys = jax.random.split(KEY, 3)
    masks = [np.asarray(jax.random.bernoulli(k, 0.7, FEAT.shape)) for k in keys]
    per_mask = [
        optax.losses.softmax_cross_entropy_with_integer_labels(_head(FEAT * b / 0.7), LABELS)
        for b in masks
    ]
    got = multi_sample_dropout_loss(KEY, FEAT, LABELS, head_fn=_head, num_samples=3, rate=0.3)
    np.testing.assert_allclose(got, np.mean(per_mask, 0), rtol=1e-5)
    one = multi_sample_dropout_loss(KEY, FEAT, LABELS, head_fn=_head, num_samples=1, rate=0.3)
    k1 = jax.random.split(KEY, 1)[0]
    b1 = np.asarray(jax.random.bernoulli(k1, 0.7, FEAT.shape))
    want = optax.losses.softmax_cross_entropy_with_integer_labels(_head(FEAT * b1 / 0.7), LABELS)
    np.testing.assert_allclose(one, want, rtol=1e-5)
    assert not np.allclose(got, plain)


def test_multi_sample_dropout_gradient_is_mean_of_mask_gradients():
    keys = jax.random.split(KEY, 2)
    masks = [jax.random.bernoulli(k, 0.5, FEAT.shape) for k in keys]

    def total(w, f):
        return multi_sample_dropout_loss(
            KEY, f, LABELS, head_fn=lambda x: x @ w, num_samples=2
        ).sum()

    def single(w, b):
        z = (FEAT * b / 0.5) @ w
        return optax.losses.softmax_cross_entropy_with_integer_labels(z, LABELS).sum()

    grad = jax.grad(total)(jnp.asarray(W_HEAD), FEAT)
    want = np.mean([jax.grad(single)(jnp.asarray(W_HEAD), b) for b in masks], 0)
    np.testing.assert_allclose(grad, want, rtol=1e-5)
    a = multi_sample_dropout_loss(KEY, FEAT, LABELS, head_fn=_head)
    np.testing.assert_array_equal(a, multi_sample_dropout_loss(KEY, FEAT, LABELS, head_fn=_head))
    with pytest.raises(ValueError, match=r"rate=1\.0"):
        multi_sample_dropout_loss(KEY, FEAT, LABELS, head_fn=_head, rate=1.0)
    with pytest.raises(ValueError, match="num_samples=0"):
        multi_sample_dropout_loss(KEY, FEAT, LABELS, head_fn=_head, num_samples=0)


def _head_loss(w, batch):
    x, y = batch
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(x @ w, y))


ENV_X = RNG.normal(size=(3, 6, 2)).astype(np.float32)  # 3 environments, 6 examples, 2 features
ENV_Y = RNG.integers(0, 3, size=(3, 6))
W0 = RNG.normal(size=(2, 3)).astype(np.float32)


def _np_head_grad_hess(w, x, y):
    """Closed-form gradient and Hessian of the mean softmax CE of a linear head (row-major)."""
    z = x @ w
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    g = x.T @ (p - np.eye(3)[y]) / len(y)
    blocks = [
        np.kron(np.outer(xi, xi), np.diag(pi) - np.outer(pi, pi))
        for xi, pi in zip(x, p, strict=True)
    ]
    return g.ravel(), sum(blocks) / len(y)


def test_hgp_matches_explicit_hessians():
    pairs = [_np_head_grad_hess(W0, x, y) for x, y in zip(ENV_X, ENV_Y, strict=True)]
    gs, hs = zip(*pairs, strict=True)
    g_bar, h_bar = np.mean(gs, 0), np.mean(hs, 0)
    want = np.mean(
        [
            0.3 * np.sum((h @ g - h_bar @ g_bar) ** 2) + 0.7 * np.sum((g - g_bar) ** 2)
            for g, h in zip(gs, hs, strict=True)
        ]
    )
    got = hgp_alignment_penalty(_head_loss, W0, (ENV_X, ENV_Y), alpha=0.3, beta=0.7)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    same = (np.repeat(ENV_X[:1], 3, 0), np.repeat(ENV_Y[:1], 3, 0))
    assert abs(float(hgp_alignment_penalty(_head_loss, W0, same))) < 1e-12
    assert abs(float(hutchinson_alignment_penalty(KEY, _head_loss, W0, same))) < 1e-12


def test_hutchinson_alignment_exact_for_diagonal_hessians_and_unbiased():
    c = RNG.uniform(0.5, 2.0, size=(3, 4)).astype(np.float32)

    def quad(theta, ci):
        return 0.5 * jnp.sum(ci * theta**3) / 3 + jnp.sum(ci * theta)

    theta = RNG.normal(size=4).astype(np.float32)
    d = c * theta  # diag of the Hessian of each environment
    g = 0.5 * c * theta**2 + c
    want = np.mean(np.sum((d - d.mean(0)) ** 2, 1) * 2.0 + np.sum((g - g.mean(0)) ** 2, 1) * 0.1)
    got = hutchinson_alignment_penalty(KEY, quad, theta, c, alpha=2.0, beta=0.1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # non-diagonal Hessian: many probes approach the exact-diagonal penalty
    hs = [_np_head_grad_hess(W0, x, y)[1] for x, y in zip(ENV_X, ENV_Y, strict=True)]
    diags = np.array([np.diag(h) for h in hs])
    exact = np.mean(np.sum((diags - diags.mean(0)) ** 2, 1))
    approx = hutchinson_alignment_penalty(
        KEY, _head_loss, W0, (ENV_X, ENV_Y), num_probes=4000, alpha=1.0, beta=0.0
    )
    np.testing.assert_allclose(approx, exact, rtol=0.1)
    again = hutchinson_alignment_penalty(KEY, _head_loss, W0, (ENV_X, ENV_Y))
    assert float(again) == float(hutchinson_alignment_penalty(KEY, _head_loss, W0, (ENV_X, ENV_Y)))


def test_alignment_penalties_grads_and_bad_input():
    """The references are detached (finite differences would see through them): the gradient
    equals that of a dense-Hessian penalty whose references are frozen at the current point."""
    with jax.enable_x64(True):
        batches = (jnp.asarray(ENV_X[:, :3], jnp.float64), ENV_Y[:, :3])
        w = jnp.asarray(W0, jnp.float64)

        def dense(w):
            def env(x, y):
                g = jax.grad(_head_loss)(w, (x, y)).ravel()
                return jax.hessian(_head_loss)(w, (x, y)).reshape(6, 6) @ g, g

            hg, g = jax.vmap(env)(*batches)
            return hg, g

        _, g0 = dense(w)
        h_bar = jax.hessian(lambda w: jnp.mean(jax.vmap(_head_loss, (None, 0))(w, batches)))(w)
        ref_hg, ref_g = h_bar.reshape(6, 6) @ g0.mean(0), g0.mean(0)

        def frozen(w):
            hg, g = dense(w)
            return jnp.mean(
                0.5 * jnp.sum((hg - ref_hg[None]) ** 2, 1)
                + 0.5 * jnp.sum((g - ref_g[None]) ** 2, 1)
            )

        got = jax.jit(jax.grad(lambda w: hgp_alignment_penalty(_head_loss, w, batches)))(w)
        np.testing.assert_allclose(got, jax.jit(jax.grad(frozen))(w), rtol=1e-8)
    with pytest.raises(ValueError, match="alpha=-1"):
        hgp_alignment_penalty(_head_loss, W0, (ENV_X, ENV_Y), alpha=-1.0)
    with pytest.raises(ValueError, match="environments"):
        hgp_alignment_penalty(_head_loss, W0, (ENV_X, ENV_Y[:2]))
    with pytest.raises(ValueError, match="num_probes=0"):
        hutchinson_alignment_penalty(KEY, _head_loss, W0, (ENV_X, ENV_Y), num_probes=0)


def _np_conr(f, y, yh, tau, omega, eta, w):
    """Loop transcription of the paper's ConR equation (denominator over positives ∪ negatives)."""
    q = f / np.linalg.norm(f, axis=1, keepdims=True)
    out = np.zeros(len(y))
    for i in range(len(y)):
        pos = [j for j in range(len(y)) if j != i and abs(y[i] - y[j]) <= omega]
        neg = [k for k in range(len(y)) if abs(y[i] - y[k]) > omega and abs(yh[i] - yh[k]) <= omega]
        if not pos or not neg:
            continue
        sim = lambda j: np.exp(q[i] @ q[j] / tau)  # noqa: B023, E731
        denom = sum(sim(p) for p in pos)
        denom += sum(w[i] * np.exp(eta * abs(y[i] - y[k])) * sim(k) for k in neg)
        out[i] = w[i] * -np.mean([np.log(sim(j) / denom) for j in pos])
    return out


CF = RNG.normal(size=(7, 3)).astype(np.float32)
CY = np.array([0.0, 0.5, 3.0, 3.2, 6.0, 0.9, 2.5], np.float32)
CP = np.array([1.0, 1.2, 1.5, 3.0, 6.0, 1.1, 2.0], np.float32)


def test_conr_hand_value_and_numpy():
    # anchor 0: positive 1 (|Δy| = 0.5), negative 2 (|Δy| = 3, |Δŷ| = 0.5); anchor 2 symmetric
    f = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    y, yh = np.array([0.0, 0.5, 3.0]), np.array([0.0, 2.0, 0.5])
    got = conr_loss(f, y, yh, temperature=0.5, eta=0.1)
    s02 = np.sqrt(0.5) / 0.5
    want0 = -np.log(1 / (1 + np.exp(0.3) * np.exp(s02)))
    np.testing.assert_allclose(got, [want0, 0.0, 0.0], rtol=1e-5)
    w = RNG.uniform(0.5, 2, size=7).astype(np.float32)
    got = conr_loss(CF, CY, CP, weights=w)
    np.testing.assert_allclose(got, _np_conr(CF, CY, CP, 0.2, 1.0, 0.01, w), rtol=1e-5)
    assert np.count_nonzero(got) >= 2


def test_conr_limits_and_pushing_weight():
    no_neg = conr_loss(CF, CY, CY * 100)  # predictions far apart: no negatives anywhere
    np.testing.assert_array_equal(no_neg, np.zeros(7))
    losses = [conr_loss(CF, CY, CP, eta=e)[0] for e in (0.0, 0.5, 1.0)]
    assert losses[0] < losses[1] < losses[2]
    far = CY.copy()
    far[6] = 4.0  # negative of anchor 0 moved further away in label
    assert float(conr_loss(CF, far, CP, eta=0.5)[0]) > float(losses[1])
    with jax.enable_x64(True):
        check_grads(
            lambda f: conr_loss(f, CY, CP), (jnp.asarray(CF, jnp.float64),), order=1, modes=["rev"]
        )
    with pytest.raises(ValueError, match="preds"):
        conr_loss(CF, CY, CP[:3])
    with pytest.raises(ValueError, match="temperature=0"):
        conr_loss(CF, CY, CP, temperature=0.0)


def _matrix_with_singular_values(sv, rows=5):
    u, _ = np.linalg.qr(RNG.normal(size=(rows, len(sv))))
    v, _ = np.linalg.qr(RNG.normal(size=(len(sv), len(sv))))
    return (u * np.asarray(sv)) @ v.T


def test_spectral_regularizer_values_and_power_iteration():
    np.testing.assert_allclose(spectral_regularizer(jnp.diag(jnp.array([2.0, 1.0]))), 9.0, 1e-6)
    q, _ = np.linalg.qr(RNG.normal(size=(6, 4)))
    assert abs(float(spectral_regularizer(jnp.asarray(q, jnp.float32)))) < 1e-10
    w = _matrix_with_singular_values([3.0, 1.0, 0.5]).astype(np.float32)
    sigma = np.linalg.svd(w, compute_uv=False)[0]
    for k in (1, 2, 3):
        np.testing.assert_allclose(spectral_regularizer(w, k=k), (sigma**k - 1) ** 2, rtol=1e-5)
    kernel = w.reshape(5, 1, 3)  # rank-3 kernel, reshaped to [5, 3]
    np.testing.assert_allclose(spectral_regularizer(kernel), (sigma**2 - 1) ** 2, rtol=1e-5)


def test_spectral_regularizer_gradient_is_svd_gradient():
    with jax.enable_x64(True):
        w = jnp.asarray(_matrix_with_singular_values([2.0, 1.0, 0.3]))
        check_grads(lambda w: spectral_regularizer(w, num_iterations=60), (w,), 1, ["rev"])
        u, sv, vt = np.linalg.svd(np.asarray(w))
        want = 2 * (sv[0] ** 2 - 1) * 2 * sv[0] * np.outer(u[:, 0], vt[0])
        got = jax.grad(lambda w: spectral_regularizer(w, num_iterations=60))(w)
        np.testing.assert_allclose(got, want, rtol=1e-8)
    with pytest.raises(ValueError, match=r"w\.shape"):
        spectral_regularizer(jnp.ones(3))
    with pytest.raises(ValueError, match="k=0"):
        spectral_regularizer(jnp.ones((2, 2)), k=0)


def test_wasserstein_init_regularizer():
    np.testing.assert_allclose(
        wasserstein_init_regularizer(jnp.array([3.0, 1.0]), jnp.array([0.0, 2.0])), 2.0
    )
    w0 = RNG.normal(size=(3, 4)).astype(np.float32)
    perm = RNG.permutation(w0.ravel()).reshape(3, 4)
    assert float(wasserstein_init_regularizer(perm, w0)) == 0.0
    assert float(jnp.sum(jnp.square(perm - w0))) > 0  # L2-to-init would not be 0
    w = RNG.normal(size=(3, 4)).astype(np.float32)
    want = np.sum((np.sort(w.ravel()) - np.sort(w0.ravel())) ** 2)
    np.testing.assert_allclose(wasserstein_init_regularizer(w, w0), want, rtol=1e-6)
    with jax.enable_x64(True):
        check_grads(
            lambda w: wasserstein_init_regularizer(w, jnp.asarray(w0, jnp.float64)),
            (jnp.asarray(w, jnp.float64),),
            order=1,
            modes=["rev"],
        )
    with pytest.raises(ValueError, match="w0"):
        wasserstein_init_regularizer(w, w0[:2])
