"""Classification losses: hand values, NumPy transcriptions of the papers/official code, optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxlab.losses import classification as cl
from jaxlab.losses.reduce import weighted_mean

RNG = np.random.default_rng(0)
C = 5
Z = (2 * RNG.normal(size=(6, C))).astype(np.float32)
Y = np.array([0, 1, 2, 3, 4, 1])
COUNTS = np.array([500.0, 200.0, 50.0, 10.0, 2.0])
MULTI = (RNG.uniform(size=(6, C)) > 0.6).astype(np.float32)


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_ce(z, y):
    return -np.take_along_axis(np_log_softmax(z), y[:, None], -1)[:, 0]


def np_py(z, y):
    return np.exp(-np_ce(z, y))


def close(actual, desired, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=rtol, atol=atol)


# (loss, kwargs) for the properties every multi-class loss shares.
MULTICLASS = [
    (cl.softmax_cross_entropy, {"label_smoothing": 0.1}),
    (cl.softmax_focal_loss, {"gamma": 2.0}),
    (cl.dual_focal_loss, {"gamma": 2.0}),
    (cl.poly1_cross_entropy, {"epsilon": 1.0}),
    (cl.poly_cross_entropy, {"epsilons": (1.0, -0.5, 0.3)}),
    (cl.squentropy, {}),
    (cl.ldam_loss, {"class_counts": COUNTS}),
    (cl.comp_sum_loss, {"tau": 1.5}),
    (cl.ldr_kl_loss, {"lam": 0.5, "margin": 1.0}),
    (cl.ldr_kl_loss, {"normalize_scores": True}),
    (cl.spherical_z_loss, {"a": 2.0, "b": 1.0}),
]
IDS = [f.__name__ + ("_norm" if "normalize_scores" in k else "") for f, k in MULTICLASS]


# ---- properties shared by all losses ----------------------------------------------------------


@pytest.mark.parametrize(("loss", "kw"), MULTICLASS, ids=IDS)
def test_where_equals_slicing_and_masked_examples_give_zero(loss, kw):
    mask = np.array([True, False, True, True, False, True])
    bad = Z.copy()
    bad[~mask] = np.nan  # garbage in masked-out examples must not leak
    labels = np.where(mask, Y, 99)  # nor must their (out-of-range) labels
    full = jax.jit(lambda z: loss(z, labels, where=mask, **kw))
    close(full(bad)[mask], loss(Z[mask], Y[mask], **kw))
    assert np.all(np.asarray(full(bad))[~mask] == 0)
    grad = jax.grad(lambda z: weighted_mean(full(z), where=mask))(bad)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~mask] == 0)


@pytest.mark.parametrize(("loss", "kw"), MULTICLASS, ids=IDS)
def test_large_logits_and_bf16_give_finite_float32(loss, kw):
    for z in (jnp.asarray(Z) * 1e4, jnp.asarray(Z, jnp.bfloat16)):  # comp-sum: τ ≥ 1 only
        value, grad = jax.jit(jax.value_and_grad(lambda z: jnp.sum(loss(z, Y, **kw))))(z)
        assert loss(z, Y, **kw).dtype == jnp.float32
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad, np.float32)))
    bf16 = loss(jnp.asarray(Z, jnp.bfloat16), Y, **kw)
    close(bf16, loss(jnp.asarray(Z, jnp.bfloat16).astype(jnp.float32), Y, **kw))


@pytest.mark.parametrize(("loss", "kw"), MULTICLASS, ids=IDS)
def test_gradients_and_leading_axes(loss, kw):
    with jax.enable_x64(True):
        z = jnp.asarray(Z, jnp.float64)
        check_grads(jax.jit(lambda z: loss(z, Y, **kw)), (z,), order=1, modes=["rev"])
    per_token = loss(Z.reshape(2, 3, C), Y.reshape(2, 3), **kw)
    assert per_token.shape == (2, 3)
    close(per_token.reshape(-1), loss(Z, Y, **kw))


@pytest.mark.parametrize(("loss", "kw"), MULTICLASS, ids=IDS)
def test_bad_inputs_raise(loss, kw):
    with pytest.raises(TypeError, match="labels"):
        loss(Z, Y.astype(np.float32), **kw)
    with pytest.raises(ValueError, match=r"labels\.shape"):
        loss(Z, Y[:3], **kw)
    with pytest.raises(ValueError, match="where"):
        loss(Z, Y, where=np.ones(3, bool), **kw)


@pytest.mark.parametrize(
    ("loss", "kw", "name"),
    [
        (cl.softmax_cross_entropy, {"label_smoothing": 1.5}, "label_smoothing"),
        (cl.z_loss, {"coefficient": -1.0}, "coefficient"),
        (cl.softmax_focal_loss, {"gamma": -1.0}, "gamma"),
        (cl.dual_focal_loss, {"gamma": -0.5}, "gamma"),
        (cl.poly_cross_entropy, {"epsilons": ()}, "epsilons"),
        (cl.ldam_loss, {"class_counts": COUNTS, "scale": 0.0}, "scale"),
        (cl.ldam_loss, {"class_counts": COUNTS[:3]}, "class_counts"),
        (cl.comp_sum_loss, {"tau": -1.0}, "tau"),
        (cl.ldr_kl_loss, {"lam": 0.0}, "lam"),
        (cl.spherical_z_loss, {"a": 0.0, "b": 1.0}, "a="),
    ],
)
def test_bad_hyperparameters_raise_naming_them(loss, kw, name):
    args = (Z,) if loss is cl.z_loss else (Z, Y)
    with pytest.raises(ValueError, match=name):
        loss(*args, **kw)


# ---- softmax cross-entropy and z-loss ----------------------------------------------------------


def test_cross_entropy_hand_value_and_optax():
    # logits (0, log 3): p_y = 3/4 for label 1.
    close(
        cl.softmax_cross_entropy(jnp.array([[0.0, np.log(3.0)]]), jnp.array([1])), [np.log(4 / 3)]
    )
    close(
        cl.softmax_cross_entropy(Z, Y), optax.losses.softmax_cross_entropy_with_integer_labels(Z, Y)
    )
    for alpha in (0.1, 0.5, 1.0):
        smoothed = optax.losses.smooth_labels(jax.nn.one_hot(Y, C), alpha)
        want = optax.losses.softmax_cross_entropy(Z, smoothed)
        close(cl.softmax_cross_entropy(Z, Y, label_smoothing=alpha), want)


def test_cross_entropy_class_mask_matches_optax():
    classes = RNG.uniform(size=Z.shape) > 0.3
    classes[np.arange(6), Y] = True
    classes[2] = False  # an example with no class gives 0
    got = cl.softmax_cross_entropy(Z, Y, where=classes, label_smoothing=0.2)
    smoothed = optax.losses.smooth_labels(jax.nn.one_hot(Y, C), 0.2, where=classes)
    want = optax.losses.softmax_cross_entropy(Z, smoothed, where=classes)
    close(got[classes.any(-1)], np.asarray(want)[classes.any(-1)])
    assert float(got[2]) == 0.0
    grad = jax.grad(lambda z: cl.softmax_cross_entropy(z, Y, where=classes).sum())(jnp.asarray(Z))
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~classes] == 0)


def test_z_loss_value_gradient_and_fixed_point():
    lse = np.log(np.exp(np.asarray(Z, np.float64)).sum(-1))
    close(cl.z_loss(Z, coefficient=1e-4), 1e-4 * lse**2)
    close(cl.z_loss(np_log_softmax(Z).astype(np.float32)), np.zeros(6), atol=1e-10)  # log Z = 0
    grad = jax.grad(lambda z: cl.z_loss(z, coefficient=0.5).sum())(jnp.asarray(Z))
    close(grad, lse[:, None] * np.exp(np_log_softmax(Z)), rtol=1e-4)  # 2c log Z softmax
    z = jnp.asarray(Z)
    step = jax.jit(lambda z: z - jax.grad(lambda z: cl.z_loss(z, coefficient=0.5).sum())(z))
    for _ in range(100):  # gradient descent drives log Z to 0
        z = step(z)
    close(jax.nn.logsumexp(z, axis=-1), np.zeros(6), atol=1e-4)
    masked = cl.z_loss(Z, where=np.array([1, 0, 1, 1, 0, 1], bool))
    assert float(masked[1]) == 0.0 and float(masked[0]) > 0


# ---- focal and dual focal ----------------------------------------------------------------------


def test_focal_matches_formula_and_gamma_zero_is_ce():
    ce, p = np_ce(Z, Y), np_py(Z, Y)
    close(cl.softmax_focal_loss(Z, Y, gamma=0.0), ce)
    close(cl.softmax_focal_loss(Z, Y, gamma=2.0), (1 - p) ** 2 * ce)
    close(cl.softmax_focal_loss(Z, Y, gamma=0.5), (1 - p) ** 0.5 * ce)
    # p_y = 1/2 (two equal logits): (1/2)^2 · log 2
    close(cl.softmax_focal_loss(jnp.zeros((1, 2)), jnp.array([0])), [0.25 * np.log(2)])
    # confident target (p_y rounds to 1 in float32): finite gradient for γ < 1 too
    conf = jnp.array([[40.0, 0.0, 0.0]])
    g = jax.grad(lambda z: cl.softmax_focal_loss(z, jnp.array([0]), gamma=0.5).sum())(conf)
    assert np.all(np.isfinite(g))


def np_dual_focal(z, y, gamma):
    """The official DualFocalLoss.forward, transcribed (p_j: largest probability below p_y)."""
    probs = np.exp(np_log_softmax(z))
    p_k = probs[np.arange(len(y)), y]
    p_j = np.max((probs < p_k[:, None]) * probs, axis=1)
    return -((1 - p_k + p_j) ** gamma) * np.log(p_k)


def test_dual_focal_matches_official_code_and_bounds():
    for gamma in (0.0, 1.0, 3.0):
        close(cl.dual_focal_loss(Z, Y, gamma=gamma), np_dual_focal(Z, Y, gamma))
    close(cl.dual_focal_loss(Z, Y, gamma=0.0), np_ce(Z, Y))
    dual = np.asarray(cl.dual_focal_loss(Z, Y, gamma=2.0))
    assert np.all(dual >= np.asarray(cl.softmax_focal_loss(Z, Y, gamma=2.0)) - 1e-7)
    assert np.all(dual <= np_ce(Z, Y) + 1e-6)
    # logits (2, 1, 0), label 1: p_j = p_2 (below p_1), not p_0
    p = np.exp(np_log_softmax(np.array([[2.0, 1.0, 0.0]])))[0]
    want = -((1 - p[1] + p[2]) ** 2) * np.log(p[1])
    close(cl.dual_focal_loss(jnp.array([[2.0, 1.0, 0.0]]), jnp.array([1])), [want])


# ---- PolyLoss ----------------------------------------------------------------------------------


def test_poly1_matches_optax_and_limits():
    onehot = jax.nn.one_hot(Y, C)
    for eps in (1.0, 2.0, -1.0):
        want = optax.losses.poly_loss_cross_entropy(Z, onehot, epsilon=eps)
        close(cl.poly1_cross_entropy(Z, Y, epsilon=eps), want)
    close(cl.poly1_cross_entropy(Z, Y, epsilon=0.0), np_ce(Z, Y))
    p = np_py(Z, Y)
    close(cl.poly1_cross_entropy(Z, Y, epsilon=-1.0), np_ce(Z, Y) - (1 - p))


def test_poly_n_matches_formula_and_drops_leading_terms():
    x = 1 - np_py(Z, Y)
    eps = (0.5, -1.0, 2.0)
    want = np_ce(Z, Y) + sum(e * x ** (j + 1) for j, e in enumerate(eps))
    close(cl.poly_cross_entropy(Z, Y, epsilons=eps), want)
    close(cl.poly_cross_entropy(Z, Y, epsilons=[1.5]), cl.poly1_cross_entropy(Z, Y, epsilon=1.5))
    # ε_j = −1/j for j ≤ 3 leaves the tail Σ_{j>3} x^j / j of −log p_y
    z, y = Z / 4, Y  # p_y not too small, so the tail converges fast
    x = 1 - np_py(z, y)
    tail = sum(x**j / j for j in range(4, 400))
    close(cl.poly_cross_entropy(z, y, epsilons=(-1.0, -1 / 2, -1 / 3)), tail, atol=1e-6)


# ---- Squentropy --------------------------------------------------------------------------------


def test_squentropy_formula_and_gradient_of_square_term():
    wrong = np.where(np.eye(C, dtype=bool)[Y], 0.0, np.asarray(Z, np.float64) ** 2)
    close(cl.squentropy(Z, Y), np_ce(Z, Y) + wrong.sum(-1) / (C - 1))
    zeroed = np.where(np.eye(C, dtype=bool)[Y], Z, 0.0).astype(np.float32)
    close(cl.squentropy(zeroed, Y), np_ce(zeroed, Y))
    g_sq = jax.grad(lambda z: (cl.squentropy(z, Y) - cl.softmax_cross_entropy(z, Y)).sum())(Z)
    close(g_sq, np.where(np.eye(C, dtype=bool)[Y], 0.0, 2 * Z / (C - 1)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="2 classes"):
        cl.squentropy(Z[:, :1], np.zeros(6, np.int32))


# ---- LDAM and deferred re-weighting ------------------------------------------------------------


def np_ldam(z, y, counts, max_m, s):
    """The official LDAMLoss.forward (reduction='none'), transcribed."""
    m_list = 1.0 / np.sqrt(np.sqrt(counts))
    m_list = m_list * (max_m / np.max(m_list))
    onehot = np.eye(len(counts), dtype=bool)[y]
    return np_ce(s * np.where(onehot, z - m_list[y][:, None], z), y)


def test_ldam_matches_official_code_and_limits():
    close(cl.ldam_loss(Z, Y, class_counts=COUNTS), np_ldam(Z, Y, COUNTS, 0.5, 30.0), rtol=1e-4)
    got = cl.ldam_loss(Z, Y, class_counts=COUNTS, max_margin=0.3, scale=2.0)
    close(got, np_ldam(Z, Y, COUNTS, 0.3, 2.0))
    close(cl.ldam_loss(Z, Y, class_counts=COUNTS, max_margin=0.0, scale=1.0), np_ce(Z, Y))
    margins = np.asarray(cl.ldam_margins(COUNTS, max_margin=0.5))
    close(margins, 0.5 * (COUNTS / COUNTS.min()) ** -0.25)  # ∝ n^{-1/4}, rarest gets the max
    assert np.all(np.diff(margins) > 0)


def test_drw_weights_match_official_schedule():
    def official(counts, epoch, beta=0.9999):
        b = [0, beta][epoch // 160]
        w = (1.0 - b) / (1.0 - np.power(b, counts))
        return w / np.sum(w) * len(counts)

    for epoch in (0, 159, 160, 199):
        close(cl.drw_weights(COUNTS, epoch), official(COUNTS, epoch), rtol=1e-4)
    close(cl.class_balanced_weights(COUNTS, beta=0.0), np.ones(C))
    w = np.asarray(cl.class_balanced_weights(COUNTS, beta=0.999))
    close(w.sum(), C)
    assert np.all(np.diff(w) > 0)  # rarer classes weigh more
    jitted = jax.jit(lambda e: cl.drw_weights(COUNTS, e))(jnp.asarray(170))
    close(jitted, official(COUNTS, 170), rtol=1e-4)
    # F.cross_entropy(weight=w) = Σ w_y ℓ / Σ w_y = weighted_mean with weights w[labels]
    loss = cl.ldam_loss(Z, Y, class_counts=COUNTS)
    per_class = jnp.asarray(official(COUNTS, 170), jnp.float32)
    ref = np_ldam(Z, Y, COUNTS, 0.5, 30.0)
    want = np.sum(official(COUNTS, 170)[Y] * ref) / np.sum(official(COUNTS, 170)[Y])
    close(weighted_mean(loss, weights=per_class[Y]), want, rtol=1e-4)


# ---- comp-sum ----------------------------------------------------------------------------------


def test_comp_sum_special_cases_and_continuity():
    ce, p = np_ce(Z, Y), np_py(Z, Y)
    u = 1 / p - 1
    close(cl.comp_sum_loss(Z, Y, tau=1.0), ce)
    close(cl.comp_sum_loss(Z, Y, tau=2.0), 1 - p)  # mean absolute error
    close(cl.comp_sum_loss(Z, Y, tau=0.0), u, rtol=1e-4)  # sum-exponential
    close(cl.comp_sum_loss(Z, Y, tau=1.5), (1 - p**0.5) / 0.5)  # GCE, q = 0.5
    close(cl.comp_sum_loss(Z, Y, tau=0.7), ((1 + u) ** 0.3 - 1) / 0.3, rtol=1e-4)
    for tau in (1 - 1e-4, 1 + 1e-4):
        close(cl.comp_sum_loss(Z, Y, tau=tau), ce, rtol=1e-3)
    traced = jax.jit(lambda t: cl.comp_sum_loss(Z, Y, tau=t))
    close(traced(1.0), ce)
    close(traced(2.0), 1 - p)


# ---- LDR-KL ------------------------------------------------------------------------------------


def np_ldr_official(z, y, threshold, lam):
    """The official LDRLoss_V1.forward (reduction='none'), transcribed."""
    onehot = np.eye(z.shape[1])[y]
    f = np.log1p(np.exp(np.asarray(z, np.float64)))
    f = f / f.mean(1, keepdims=True)
    d = (threshold * (1 - onehot) + f - (f * onehot).sum(1, keepdims=True)) / lam
    mx = d.max(1, keepdims=True)
    return lam * (np.log(np.exp(d - mx).mean(1)) + mx[:, 0])


def test_ldr_kl_formula_official_code_and_limits():
    close(cl.ldr_kl_loss(Z, Y, lam=1.0, margin=0.0), np_ce(Z, Y) - np.log(C))
    got = cl.ldr_kl_loss(Z, Y, lam=0.5, margin=2.0, normalize_scores=True)
    close(got, np_ldr_official(Z, Y, 2.0, 0.5))
    onehot = np.eye(C, dtype=bool)[Y]
    hinge = np.max(np.where(onehot, 0.0, 1.0) + Z - Z[np.arange(6), Y][:, None], axis=1)
    close(cl.ldr_kl_loss(Z, Y, lam=1e-3, margin=1.0), hinge, atol=2e-2)  # λ → 0: Crammer-Singer
    for lam in (0.3, 1.0, 3.0):
        assert np.all(np.asarray(cl.ldr_kl_loss(Z, Y, lam=lam)) >= -lam * np.log(C) - 1e-6)


# ---- asymmetric loss ---------------------------------------------------------------------------


def np_asl(x, y, gamma_neg, gamma_pos, clip, eps=1e-8):
    """The official AsymmetricLoss.forward, transcribed, summed per example instead of overall."""
    xs_pos = 1 / (1 + np.exp(-np.asarray(x, np.float64)))
    xs_neg = 1 - xs_pos
    if clip > 0:
        xs_neg = np.minimum(xs_neg + clip, 1)
    loss = y * np.log(np.maximum(xs_pos, eps)) + (1 - y) * np.log(np.maximum(xs_neg, eps))
    pt = xs_pos * y + xs_neg * (1 - y)
    loss *= np.power(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
    return -loss.sum(-1)


def test_asymmetric_loss_matches_official_code_and_bce_limit():
    for gn, gp, m in ((4.0, 0.0, 0.05), (4.0, 1.0, 0.05), (2.0, 0.5, 0.0)):
        got = cl.asymmetric_loss(Z, MULTI, gamma_pos=gp, gamma_neg=gn, clip=m)
        close(got, np_asl(Z, MULTI, gn, gp, m), rtol=1e-4)
    bce = optax.losses.sigmoid_binary_cross_entropy(Z, MULTI).sum(-1)
    close(cl.asymmetric_loss(Z, MULTI, gamma_pos=0.0, gamma_neg=0.0, clip=0.0), bce)
    # hand value: one negative with logit 0 (p = 1/2), m = 0.05, γ− = 4: −0.45^4 log 0.55
    got = cl.asymmetric_loss(jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    close(got, [-(0.45**4) * np.log(0.55)])


def test_asymmetric_loss_discards_easy_negatives_with_finite_gradients():
    logits = jnp.array([[-4.0, -2.9444, -1.0, 3.0]])  # p = 0.018, 0.05 (= m), 0.27, 0.95
    targets = jnp.zeros((1, 4))

    def per_label(z):
        return cl.asymmetric_loss(z.reshape(4, 1), targets.reshape(4, 1))

    values = per_label(logits)
    assert float(values[0]) == 0.0 and float(values[2]) > 0
    grad = jax.grad(lambda z: per_label(z).sum())(logits)
    assert np.all(np.isfinite(grad)) and float(grad[0, 0]) == 0.0
    with pytest.raises(ValueError, match=r"targets\.shape"):
        cl.asymmetric_loss(Z, MULTI[:, :2])
    with pytest.raises(ValueError, match="clip"):
        cl.asymmetric_loss(Z, MULTI, clip=1.0)
    mask = np.array([True, False, True, True, False, True])
    close(cl.asymmetric_loss(Z, MULTI, where=mask)[mask], cl.asymmetric_loss(Z[mask], MULTI[mask]))
    with jax.enable_x64(True):
        f = lambda z: cl.asymmetric_loss(z, MULTI, gamma_pos=1.0)  # noqa: E731
        check_grads(jax.jit(f), (jnp.asarray(Z, jnp.float64),), order=1, modes=["rev"])
    big = jax.jit(jax.grad(lambda z: cl.asymmetric_loss(z, MULTI).sum()))(jnp.asarray(Z) * 1e4)
    assert np.all(np.isfinite(big))


# ---- spherical Z-loss --------------------------------------------------------------------------


def test_spherical_z_loss_formula_and_invariances():
    z = np.asarray(Z, np.float64)
    zeta = (z - z.mean(1, keepdims=True)) / z.std(1, keepdims=True)
    a, b = 2.0, 1.5
    want = np.log1p(np.exp(a * (b - zeta[np.arange(6), Y]))) / a
    close(cl.spherical_z_loss(Z, Y, a=a, b=b), want)
    for shifted in (Z + 7.0, 3.0 * Z, 0.1 * Z - 2.0):
        close(cl.spherical_z_loss(shifted, Y, a=a, b=b), want, rtol=1e-4)
    # logits (1, −1): ζ_y = 1 → softplus(a(b − 1))/a; equal logits: ζ = 0
    close(cl.spherical_z_loss(jnp.array([[1.0, -1.0]]), jnp.array([0]), a=1.0, b=1.0), [np.log(2)])
    flat = cl.spherical_z_loss(jnp.zeros((1, 3)), jnp.array([0]), a=1.0, b=2.0)
    close(flat, [np.log1p(np.exp(2.0))])
    g = jax.grad(lambda z: cl.spherical_z_loss(z, jnp.array([0]), a=1.0, b=2.0).sum())
    assert np.all(np.isfinite(g(jnp.zeros((1, 3)))))


def test_focusing_power_is_one_at_gamma_zero_and_nan_free_at_zero():
    x = jnp.array([0.0, 0.25])
    close(cl._pow(x, 0.0), [1.0, 1.0])
    close(cl._pow(x, 0.5), [0.0, 0.5])
    grads = jax.grad(lambda x: cl._pow(x, 0.5).sum())(x)  # d/dx √x is inf at 0: taken as 0
    close(grads, [0.0, 1.0])
