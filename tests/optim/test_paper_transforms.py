"""⊥Grad, Bloop, Grams, Gravity, DOT and the induced metric: paper properties and NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.optim.gradient_projection import bloop, scale_by_perp_grad
from jaxlab.optim.induced_metric import induced_metric_sgd, scale_by_induced_metric
from jaxlab.optim.momentum_variants import (
    dot_momentum,
    dot_sgd,
    grams,
    gravity,
    scale_by_grams,
    scale_by_gravity,
)

RTOL = 1e-5
STEPS = 5
# Two leaves of different scales, so per-tensor and global reductions differ.
SCALES = {"b": np.array([0.5, 3.0]), "w": np.linspace(0.2, 2.0, 6).reshape(3, 2)}
TARGET = {"b": np.array([1.0, -2.0]), "w": np.arange(6.0).reshape(3, 2) / 3 - 1}


def rand_tree(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {k: scale * rng.normal(size=v.shape) for k, v in SCALES.items()}


def as_jax(tree, dtype=jnp.float32):
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def as_np(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def quad_grad(params):
    """Gradient of Σ ½ c (θ − target)² leaf by leaf, for jnp and np trees alike."""
    return jax.tree.map(lambda p, c, t: c * (p - t), params, SCALES, TARGET)


def assert_close(actual, desired, rtol=RTOL, atol=1e-6):
    jax.tree.map(
        lambda a, d: np.testing.assert_allclose(np.asarray(a, np.float64), d, rtol, atol),
        actual,
        desired,
    )


def run(tx, steps=STEPS, extra=lambda t, params: {}):
    """Optimizes the quadratic with ``tx`` in float32; returns the iterates as NumPy trees."""
    params = as_jax(rand_tree(0))
    state, out = tx.init(params), []
    for t in range(steps):
        updates, state = tx.update(quad_grad(params), state, params, **extra(t, params))
        params = optax.apply_updates(params, updates)
        out.append(as_np(params))
    return out


def run_numpy(step, steps=STEPS):
    """``step(t, params) -> params`` on NumPy trees from the same start as :func:`run`."""
    params, out = rand_tree(0), []
    for t in range(steps):
        params = step(t, params)
        out.append(params)
    return out


# ------------------------------------------------------------------ contract for every transform


def _kd(t, params):
    return {"kd_grads": jax.tree.map(lambda p: 0.5 * p + 0.1 * (t + 1), params)}


def _aux(t, params):
    return {"aux_grads": jax.tree.map(lambda p: jnp.cos(p) + 0.1 * t, params)}


CASES = {
    "perp_grad": (lambda: scale_by_perp_grad(), None),
    "perp_grad_global": (lambda: scale_by_perp_grad(per_tensor=False, rescale=False), None),
    "bloop": (lambda: bloop(0.5, ema_decay=0.8), _aux),
    "scale_by_grams": (lambda: scale_by_grams(), None),
    "grams": (lambda: grams(1e-2, weight_decay=0.1), None),
    "scale_by_gravity": (lambda: scale_by_gravity(velocity_init_std=0.1), None),
    "gravity": (lambda: gravity(), None),
    "dot_momentum": (lambda: dot_momentum(), _kd),
    "dot_sgd": (lambda: dot_sgd(0.1, weight_decay=1e-3), _kd),
    "scale_by_induced_metric": (lambda: scale_by_induced_metric(), None),
    "induced_metric_sgd": (lambda: induced_metric_sgd(weight_decay=1e-2), None),
}


def _dtypes(tree):
    return jax.tree.map(lambda x: jnp.asarray(x).dtype, tree)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_contract_jit_dtypes_and_unknown_extra_args(name, dtype):
    make, extra = CASES[name]
    tx = make()
    params = as_jax(rand_tree(0), dtype)
    state = tx.init(params)
    abstract = jax.eval_shape(
        tx.init, jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    )
    assert jax.tree.structure(abstract) == jax.tree.structure(state)

    @jax.jit
    def step(params, state, t):
        kwargs = {} if extra is None else extra(t, params)
        kwargs = {k: optax.tree.cast_like(v, params) for k, v in kwargs.items()}
        grads = optax.tree.cast_like(quad_grad(params), params)
        updates, state = tx.update(grads, state, params, unknown_arg=1.0, **kwargs)
        return optax.apply_updates(params, updates), updates, state

    for t in range(2):
        new_params, updates, new_state = step(params, state, t)
        assert _dtypes(updates) == _dtypes(params)
        assert _dtypes(new_state) == _dtypes(state)
        params, state = new_params, new_state
    assert all(np.isfinite(np.asarray(x, np.float32)).all() for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_gradients_and_zero_params_give_finite_updates(name):
    make, extra = CASES[name]
    tx = make()
    zeros = jax.tree.map(jnp.zeros_like, as_jax(rand_tree(0)))
    state = tx.init(zeros)
    for t in range(2):
        kwargs = {} if extra is None else jax.tree.map(jnp.zeros_like, extra(t, zeros))
        updates, state = tx.update(zeros, state, zeros, **kwargs)
        for leaf in jax.tree.leaves((updates, state)):
            assert np.isfinite(np.asarray(leaf, np.float32)).all(), name


# -------------------------------------------------------------------------------------- ⊥Grad


def _np_orthograd(g, w, rescale=True, eps=1e-30):
    """The official per-tensor OrthoGrad projection, transcribed."""
    g, w = g.ravel(), w.ravel()
    perp = g - (w @ g) / (w @ w + eps) * w
    if rescale:
        perp = perp * np.linalg.norm(g) / (np.linalg.norm(perp) + eps)
    return perp


@pytest.mark.parametrize("rescale", [True, False])
def test_perp_grad_matches_official_per_tensor_projection(rescale):
    g, w = rand_tree(1), rand_tree(2)
    out, _ = scale_by_perp_grad(rescale=rescale).update(as_jax(g), optax.EmptyState(), as_jax(w))
    want = jax.tree.map(lambda a, b: _np_orthograd(a, b, rescale).reshape(a.shape), g, w)
    assert_close(out, want)
    for key in g:  # ⟨g⊥, θ⟩ = 0 in every tensor
        assert abs(np.vdot(out[key], w[key])) < 1e-5 * np.linalg.norm(g[key]) * np.linalg.norm(
            w[key]
        )
        if rescale:
            np.testing.assert_allclose(np.linalg.norm(out[key]), np.linalg.norm(g[key]), RTOL)


def test_perp_grad_global_is_orthogonal_to_the_whole_tree_only():
    g, w = rand_tree(1), rand_tree(2)
    tx = scale_by_perp_grad(per_tensor=False)
    out = as_np(tx.update(as_jax(g), tx.init(w), as_jax(w))[0])
    flat = lambda tree: np.concatenate([x.ravel() for x in jax.tree.leaves(tree)])  # noqa: E731
    want = _np_orthograd(flat(g), flat(w))
    np.testing.assert_allclose(flat(out), want, RTOL, 1e-6)
    assert abs(flat(out) @ flat(w)) < 1e-5
    assert abs(np.vdot(out["w"], w["w"])) > 1e-2  # not orthogonal leaf by leaf


def test_perp_grad_chained_before_sgd_matches_numpy():
    got = run(optax.chain(scale_by_perp_grad(), optax.sgd(0.1)))

    def step(t, p):
        g = quad_grad(p)
        return jax.tree.map(lambda w, gg: w - 0.1 * _np_orthograd(gg, w).reshape(w.shape), p, g)

    assert_close(got, run_numpy(step))


def test_perp_grad_errors():
    with pytest.raises(ValueError, match="eps"):
        scale_by_perp_grad(eps=0.0)
    with pytest.raises(ValueError, match="params"):
        scale_by_perp_grad().update(as_jax(rand_tree(1)), optax.EmptyState())


# -------------------------------------------------------------------------------------- Bloop


def _np_bloop(lam, decay, steps=STEPS, eps=1e-7):
    """The official bloop_direction with init='grad', on fixed gradient sequences."""
    outs, ema = [], None
    for t in range(steps):
        g, a = rand_tree(10 + t), rand_tree(20 + t)
        ema = g if ema is None else jax.tree.map(lambda m, x: m + (1 - decay) * (x - m), ema, g)
        ratio = sum(np.vdot(a[k], ema[k]) for k in g) / (
            sum(np.vdot(m, m) for m in ema.values()) + eps
        )
        outs.append({k: g[k] + lam * (a[k] - ratio * ema[k]) for k in g})
    return outs


def _run_bloop(tx, steps=STEPS):
    state, outs, emas = tx.init(as_jax(rand_tree(0))), [], []
    for t in range(steps):
        g, a = as_jax(rand_tree(10 + t)), as_jax(rand_tree(20 + t))
        out, state = tx.update(g, state, aux_grads=a)
        outs.append(out)
        emas.append(as_np(state.main_ema))
    return outs, emas


def test_bloop_matches_official_loop_and_is_orthogonal_to_the_ema():
    outs, emas = _run_bloop(bloop(0.3, ema_decay=0.8))
    assert_close(outs, _np_bloop(0.3, 0.8))
    for t, (out, ema) in enumerate(zip(outs, emas, strict=True)):
        aux_part = jax.tree.map(lambda o, g: np.asarray(o) - g, out, rand_tree(10 + t))
        assert abs(sum(np.vdot(aux_part[k], ema[k]) for k in ema)) < 1e-5


def test_bloop_with_zero_weight_returns_the_main_gradient():
    outs, _ = _run_bloop(bloop(0.0))
    assert_close(outs, [as_np(as_jax(rand_tree(10 + t))) for t in range(STEPS)], rtol=0, atol=0)


def test_bloop_removes_an_auxiliary_gradient_parallel_to_the_ema():
    tx = bloop(2.0)
    g = as_jax(rand_tree(1))
    out, state = tx.update(g, tx.init(g), aux_grads=jax.tree.map(lambda x: -3 * x, g))
    assert_close(out, as_np(g))  # first step: ḡ = g, so aux = −3ḡ is removed entirely
    g2 = as_jax(rand_tree(2))
    ema = jax.tree.map(lambda m, x: m + 0.1 * (x - m), as_np(state.main_ema), as_np(g2))
    out, _ = tx.update(g2, state, aux_grads=as_jax(jax.tree.map(lambda m: 5 * m, ema)))
    assert_close(out, as_np(g2))


def test_bloop_and_dot_inside_masked_mask_their_extra_gradients():
    g, a = as_jax(rand_tree(1)), as_jax(rand_tree(2))
    for tx, name in [(bloop(0.5), "aux_grads"), (dot_momentum(), "kd_grads")]:
        masked = optax.masked(tx, {"b": False, "w": True}, mask_compatible_extra_args=True)
        out, _ = masked.update(g, masked.init(g), **{name: a})
        want, _ = tx.update({"w": g["w"]}, tx.init({"w": g["w"]}), **{name: {"w": a["w"]}})
        assert_close(out, {"b": as_np(g["b"]), "w": as_np(want["w"])})


def test_bloop_errors():
    with pytest.raises(ValueError, match="ema_decay"):
        bloop(0.1, ema_decay=1.0)
    with pytest.raises(ValueError, match="aux_weight"):
        bloop(-0.1)
    with pytest.raises(ValueError, match="eps"):
        bloop(eps=0.0)
    tx = bloop()
    with pytest.raises(TypeError, match="aux_grads"):
        tx.update(as_jax(rand_tree(1)), tx.init(as_jax(rand_tree(1))))


# -------------------------------------------------------------------------------------- Grams


def test_grams_has_the_sign_of_g_and_the_size_of_adam():
    grams_tx, adam_tx = scale_by_grams(), optax.scale_by_adam()
    params = as_jax(rand_tree(0))
    s_grams, s_adam = grams_tx.init(params), adam_tx.init(params)
    agree = 0
    for t in range(STEPS):
        g = as_jax(rand_tree(30 + t))  # independent draws: signs of m and g often differ
        u_grams, s_grams = grams_tx.update(g, s_grams)
        u_adam, s_adam = adam_tx.update(g, s_adam)
        for k in g:
            np.testing.assert_array_equal(np.sign(u_grams[k]), np.sign(g[k]))
            np.testing.assert_allclose(np.abs(u_grams[k]), np.abs(u_adam[k]), RTOL)
            same = np.sign(u_adam[k]) == np.sign(g[k])
            np.testing.assert_allclose(u_grams[k][same], u_adam[k][same], RTOL)
            agree += same.sum()
    assert 0 < agree < STEPS * 8  # both cases occurred


def test_grams_alias_matches_numpy_with_weight_decay():
    lr, wd, b1, b2, eps = 0.05, 0.1, 0.9, 0.999, 1e-8
    got = run(grams(lr, weight_decay=wd))
    m, v = jax.tree.map(np.zeros_like, SCALES), jax.tree.map(np.zeros_like, SCALES)

    def step(t, p):
        nonlocal m, v
        g = quad_grad(p)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)

        def leaf(p, g, m, v):
            u = (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
            return p - lr * (np.sign(g) * np.abs(u) + wd * p)

        return jax.tree.map(leaf, p, g, m, v)

    assert_close(got, run_numpy(step))


def test_grams_errors():
    with pytest.raises(ValueError, match="b1"):
        scale_by_grams(b1=1.0)
    with pytest.raises(ValueError, match="eps"):
        grams(0.1, eps=-1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        grams(0.0)


# ------------------------------------------------------------------------------------ Gravity


def test_gravity_matches_official_keras_update():
    lr, alpha, beta = 0.1, 0.01, 0.9
    tx = gravity(lr, alpha, beta, key=3)
    got = run(tx)
    v = as_np(tx.init(as_jax(rand_tree(0)))[0].velocity)

    def step(t, p):
        nonlocal v
        beta_hat = (beta * t + 1) / (t + 2)  # t = self.iterations, from 0

        def leaf(p, g, v):
            max_step_grad = 1 / np.max(np.abs(g))
            gradient_term = g / (1 + (g / max_step_grad) ** 2)
            return beta_hat * v + (1 - beta_hat) * gradient_term

        v = jax.tree.map(leaf, p, quad_grad(p), v)
        return jax.tree.map(lambda p, v: p - lr * v, p, v)

    assert_close(got, run_numpy(step))


def test_gravity_velocity_init_is_seeded_normal_with_std_alpha_over_lr():
    params = {"a": jnp.zeros((64, 64)), "b": jnp.zeros(3, jnp.bfloat16)}
    v = gravity(0.1, 0.02, key=0).init(params)[0].velocity
    np.testing.assert_allclose(np.std(np.asarray(v["a"])), 0.2, rtol=0.05)
    assert abs(np.mean(np.asarray(v["a"]))) < 0.02
    assert v["b"].dtype == jnp.bfloat16
    same = gravity(0.1, 0.02, key=jax.random.key(0)).init(params)[0].velocity
    assert_close(same, as_np(v), rtol=0, atol=0)
    other = np.asarray(gravity(0.1, 0.02, key=1).init(params)[0].velocity["a"])
    assert not np.allclose(other, v["a"])
    assert not np.asarray(gravity(alpha=0.0).init(params)[0].velocity["a"]).any()


def test_gravity_step_is_bounded_by_the_max_gradient():
    """|ζ| ≤ 1/(2 max|g|) elementwise: from V_0 = 0, the first velocity obeys half of that."""
    tx = scale_by_gravity()
    g = as_jax(rand_tree(5, scale=100.0))
    out, _ = tx.update(g, tx.init(g))
    for k in g:
        assert np.all(np.abs(out[k]) <= 0.5 / (2 * np.max(np.abs(g[k]))) * (1 + 1e-6))


def test_gravity_errors():
    with pytest.raises(ValueError, match="beta"):
        gravity(beta=1.0)
    with pytest.raises(ValueError, match="alpha"):
        gravity(alpha=-0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        gravity(0.0)
    with pytest.raises(ValueError, match="velocity_init_std"):
        scale_by_gravity(velocity_init_std=-1.0)


# ---------------------------------------------------------------------------------------- DOT


def _run_dot(tx, task, kd, steps=STEPS):
    state, outs = tx.init(as_jax(rand_tree(0))), []
    for t in range(steps):
        kwargs = {} if kd is None else {"kd_grads": as_jax(kd(t))}
        out, state = tx.update(as_jax(task(t)), state, **kwargs)
        outs.append(as_np(out))
    return outs


def test_dot_with_zero_delta_is_trace_on_the_summed_gradients():
    summed = lambda t: jax.tree.map(np.add, rand_tree(40 + t), rand_tree(50 + t))  # noqa: E731
    got = _run_dot(dot_momentum(0.8, 0.0), lambda t: rand_tree(40 + t), lambda t: rand_tree(50 + t))
    assert_close(got, _run_dot(optax.trace(0.8), summed, None))


def test_dot_with_zero_task_gradient_is_trace_with_momentum_plus_delta():
    zero = lambda t: jax.tree.map(np.zeros_like, SCALES)  # noqa: E731
    got = _run_dot(dot_momentum(0.8, 0.1), zero, lambda t: rand_tree(50 + t))
    assert_close(got, _run_dot(optax.trace(0.9), lambda t: rand_tree(50 + t), None))


def test_dot_sgd_matches_official_trainer_loop():
    lr, mu, delta, wd = 0.05, 0.9, 0.075, 1e-2
    kd = lambda t, p: jax.tree.map(lambda x: np.sin(x) + 0.1 * t, p)  # noqa: E731
    got = run(dot_sgd(lr, mu, delta, wd), extra=lambda t, p: {"kd_grads": kd(t, p)})
    buf, buf_kd = None, None

    def step(t, p):
        nonlocal buf, buf_kd
        d_p = jax.tree.map(lambda g, p: g + wd * p, quad_grad(p), p)
        k = kd(t, p)
        if buf is None:  # PyTorch SGD: first buffer is a copy of the gradient
            buf, buf_kd = d_p, k
        else:
            buf = jax.tree.map(lambda b, g: (mu - delta) * b + g, buf, d_p)
            buf_kd = jax.tree.map(lambda b, g: (mu + delta) * b + g, buf_kd, k)
        p = jax.tree.map(lambda p, b: p - lr * b, p, buf)  # task step, then kd step
        return jax.tree.map(lambda p, b: p - lr * b, p, buf_kd)

    assert_close(got, run_numpy(step))


def test_dot_errors():
    with pytest.raises(ValueError, match="delta"):
        dot_momentum(0.95, 0.075)
    with pytest.raises(ValueError, match="delta"):
        dot_momentum(0.05, 0.075)
    tx = dot_momentum()
    with pytest.raises(TypeError, match="kd_grads"):
        tx.update(as_jax(rand_tree(1)), tx.init(as_jax(rand_tree(1))))


# ---------------------------------------------------------------------------- induced metric


@pytest.mark.parametrize("xi", [0.1, 4.0])
def test_induced_metric_step_is_bounded_parallel_and_sgd_for_small_gradients(xi):
    tx = scale_by_induced_metric(xi)
    norms, peak = [], 1 / (2 * np.sqrt(xi))
    for scale in np.logspace(-3, 3, 25) / np.sqrt(xi):
        g = rand_tree(7, scale)
        out = as_np(tx.update(as_jax(g), tx.init(as_jax(g)))[0])
        norm_g = np.sqrt(sum(np.vdot(x, x) for x in g.values()))
        norm = np.sqrt(sum(np.vdot(x, x) for x in out.values()))
        assert norm <= peak * (1 + 1e-6)
        for k in g:  # out = s g with one global s = 1/(1 + ξ‖g‖²)
            np.testing.assert_allclose(out[k], g[k] / (1 + xi * norm_g**2), RTOL)
        norms.append(norm)
    np.testing.assert_allclose(max(norms), peak, rtol=0.1)  # the bound is reached near ‖g‖ = ξ^-½
    np.testing.assert_allclose(out["w"] / g["w"], out["b"][0] / g["b"][0], RTOL)
    small = rand_tree(7, 1e-4)
    assert_close(tx.update(as_jax(small), tx.init(as_jax(small)))[0], small, rtol=1e-6, atol=0)


def test_induced_metric_sgd_matches_official_custom_sgd():
    lr, mu, xi, beta, wd = 0.1, 0.9, 0.1, 0.1, 1e-2
    got = run(induced_metric_sgd(lr, xi, momentum=mu, ema_decay=beta, weight_decay=wd))
    m, metric_ema = jax.tree.map(np.zeros_like, SCALES), 0.0

    def step(t, p):
        nonlocal m, metric_ema
        g = quad_grad(p)
        trace = xi * sum(np.vdot(x, x) for x in g.values())
        metric_ema = beta * metric_ema + (1 - beta) * trace
        metric_scale = 1 / (1 + abs(metric_ema / (1 - beta ** (t + 1))))
        m = jax.tree.map(lambda m, g: mu * m + (1 - mu) * g, m, g)
        return jax.tree.map(
            lambda p, m: p - lr * metric_scale * m / (1 - mu ** (t + 1)) - lr * wd * p, p, m
        )

    assert_close(got, run_numpy(step))


def test_induced_metric_errors():
    with pytest.raises(ValueError, match="xi"):
        scale_by_induced_metric(-1.0)
    with pytest.raises(ValueError, match="ema_decay"):
        scale_by_induced_metric(ema_decay=1.0)
    with pytest.raises(ValueError, match="momentum"):
        induced_metric_sgd(momentum=1.0)
