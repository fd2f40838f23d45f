"""AMP and AWP against NumPy transcriptions of the official code and the papers' updates.

The model is a tiny tanh MLP with a squared loss whose gradient is written out in NumPy, so the
references use no JAX at all. Multi-device checks run on 8 forced CPU devices under ``pmap`` and
``jit(shard_map)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.optim.weight_perturbation import amp_value_and_grad, awp_value_and_grad

RNG = np.random.default_rng(0)
N_DEV = 8
X = RNG.normal(size=(16, 4))
Y = RNG.normal(size=(16, 2))
PARAMS = {
    "b1": 0.1 * RNG.normal(size=3),
    "b2": 0.1 * RNG.normal(size=2),
    "w1": 0.7 * RNG.normal(size=(4, 3)),
    "w2": 0.7 * RNG.normal(size=(3, 2)),
}


def as_jnp(tree, dtype=jnp.float32):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    out = h @ params["w2"] + params["b2"][None, :]
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


def mlp_loss_aux(params, x, y):
    return mlp_loss(params, x, y), {"w1_sum": jnp.sum(params["w1"])}


def np_loss_and_grad(params, x, y):
    """The MLP loss and its gradient by hand (float64)."""
    h = np.tanh(x @ params["w1"] + params["b1"])
    out = h @ params["w2"] + params["b2"]
    r = (out - y) / len(x)
    da = (r @ params["w2"].T) * (1 - h**2)
    loss = 0.5 * np.mean(np.sum((out - y) ** 2, axis=-1))
    return loss, {"b1": da.sum(0), "b2": r.sum(0), "w1": x.T @ da, "w2": h.T @ r}


def np_grad(params, x, y):
    return np_loss_and_grad(params, x, y)[1]


def add(a, b):
    return {k: a[k] + b.get(k, 0.0) for k in a}


def norm(a):
    return np.sqrt(np.sum(np.square(a)))


def np_amp_delta(grad_fn, epsilon, inner_lr, steps, ball):
    """Transcription of ``AMP.step`` in hiyouga/AMP-Regularizer ``amp.py`` (plus a global ball)."""
    dev = {k: np.zeros_like(v) for k, v in PARAMS.items()}
    grad = grad_fn(dev)  # p.grad at the clean point
    for _ in range(steps):
        dev = {k: dev[k] + inner_lr * grad[k] for k in dev}
        if ball == "layer":
            for k in dev:
                clip_coef = epsilon / (norm(dev[k]) + 1e-12)
                dev[k] = clip_coef * dev[k] if clip_coef < 1 else dev[k]
        else:
            clip_coef = epsilon / (np.sqrt(sum(norm(d) ** 2 for d in dev.values())) + 1e-12)
            dev = {k: clip_coef * d if clip_coef < 1 else d for k, d in dev.items()}
        grad = grad_fn(dev)  # closure() at theta + delta
    return dev


def np_awp_official(params, x, y, gamma, proxy_lr=0.1):
    """Transcription of ``TradesAWP.calc_awp``, ``diff_in_weights`` and ``perturb`` (official)."""
    grad = np_grad(params, x, y)
    proxy = {k: params[k] - proxy_lr * (-grad[k]) for k in params}  # SGD step on -loss
    diff = {}
    for k, old_w in params.items():
        if old_w.ndim <= 1:
            continue
        diff_w = proxy[k] - old_w
        diff[k] = norm(old_w) / (norm(diff_w) + 1e-20) * diff_w
    return {k: gamma * d for k, d in diff.items()}


def np_awp_paper(grad_fn, gamma, eta, steps, params=PARAMS):
    """The AWP paper's K-step update v ← Π(v + η‖w‖ ∇/‖∇‖) per layer (weights only)."""
    keys = [k for k, w in params.items() if w.ndim > 1]
    v = {k: np.zeros_like(params[k]) for k in keys}
    for _ in range(steps):
        g = grad_fn(v)
        for k in keys:
            wn = norm(params[k])
            u = v[k] + eta * wn * g[k] / (norm(g[k]) + 1e-20)
            v[k] = u * min(1.0, gamma * wn / (norm(u) + 1e-20))
    return v


def full_batch_grad(delta):
    return np_grad(add(PARAMS, delta), X, Y)


def assert_tree_close(got, want, rtol=2e-5, atol=1e-6):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k], np.float64), want[k], rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# AMP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ball", ["layer", "global"])
@pytest.mark.parametrize(("epsilon", "inner_lr", "steps"), [(0.05, 1.0, 1), (0.2, 0.5, 3)])
def test_amp_matches_official_loop(ball, epsilon, inner_lr, steps):
    fn = jax.jit(
        amp_value_and_grad(
            mlp_loss_aux, epsilon, inner_lr=inner_lr, inner_steps=steps, ball=ball, has_aux=True
        )
    )
    (value, aux), grads = fn(as_jnp(PARAMS), X, Y)
    delta = np_amp_delta(full_batch_grad, epsilon, inner_lr, steps, ball)
    assert_tree_close(grads, full_batch_grad(delta))
    np.testing.assert_allclose(value, np_loss_and_grad(PARAMS, X, Y)[0], rtol=1e-6)
    np.testing.assert_allclose(aux["w1_sum"], PARAMS["w1"].sum(), rtol=1e-6)  # clean point
    if ball == "global":
        assert np.sqrt(sum(norm(d) ** 2 for d in delta.values())) <= epsilon * (1 + 1e-9)


@pytest.mark.parametrize("ball", ["global", "layer"])
def test_amp_one_step_binding_ball_is_sam(ball):
    """N = 1 with ζ‖g‖ ≫ ε: Δ = ε g/‖g‖ (SAM, rho = ε; per leaf for the layer-wise ball)."""
    rho = 0.05
    grads = amp_value_and_grad(mlp_loss, rho, inner_lr=100.0, ball=ball)(as_jnp(PARAMS), X, Y)[1]
    g = np_grad(PARAMS, X, Y)
    if ball == "global":
        g_norm = np.sqrt(sum(norm(v) ** 2 for v in g.values()))
        eps = {k: rho * v / (g_norm + 1e-12) for k, v in g.items()}  # google-research/sam
    else:
        eps = {k: rho * v / (norm(v) + 1e-12) for k, v in g.items()}
    assert_tree_close(grads, np_grad(add(PARAMS, eps), X, Y))


def test_amp_limits_equal_plain_gradient():
    params = as_jnp(PARAMS)
    want = jax.value_and_grad(mlp_loss)(params, X, Y)
    for fn in (amp_value_and_grad(mlp_loss, 0.0), amp_value_and_grad(mlp_loss, 1.0, inner_steps=0)):
        got = fn(params, X, Y)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)


def test_amp_loops_without_unrolling_and_compiles_once():
    def n_eqns(steps):
        fn = amp_value_and_grad(mlp_loss, 0.1, inner_steps=steps)
        return len(jax.make_jaxpr(fn)(as_jnp(PARAMS), X, Y).eqns)

    assert n_eqns(3) == n_eqns(9)
    fn = jax.jit(amp_value_and_grad(mlp_loss, 0.1, inner_steps=3))
    fn(as_jnp(PARAMS), X, Y)
    fn(as_jnp(jax.tree.map(lambda a: 2 * a, PARAMS)), X + 1, Y)
    assert fn._cache_size() == 1


# ---------------------------------------------------------------------------------------------
# AWP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [5e-3, 0.1])
def test_awp_one_step_matches_official(gamma):
    fn = jax.jit(awp_value_and_grad(mlp_loss_aux, gamma, has_aux=True))
    (value, aux), grads = fn(as_jnp(PARAMS), X, Y)
    v = np_awp_official(PARAMS, X, Y, gamma)
    assert set(v) == {"w1", "w2"}  # biases are not perturbed
    assert_tree_close(grads, full_batch_grad(v))
    np.testing.assert_allclose(value, np_loss_and_grad(PARAMS, X, Y)[0], rtol=1e-6)
    np.testing.assert_allclose(aux["w1_sum"], PARAMS["w1"].sum(), rtol=1e-6)


@pytest.mark.parametrize(("steps", "step_size"), [(3, 0.05), (4, None)])
def test_awp_multi_step_matches_paper(steps, step_size):
    gamma = 0.1
    fn = awp_value_and_grad(mlp_loss, gamma, steps=steps, step_size=step_size)
    grads = fn(as_jnp(PARAMS), X, Y)[1]
    v = np_awp_paper(full_batch_grad, gamma, step_size or gamma, steps)
    assert_tree_close(grads, full_batch_grad(v))


def _linear_plus_quadratic(params, c):
    """L = Σ ⟨c, w⟩ + ½‖w‖², so ∇L(w + v) = c + w + v reveals the perturbation v."""
    leaves = zip(jax.tree.leaves(params), jax.tree.leaves(c), strict=True)
    return sum(jnp.sum(ci * p) + 0.5 * jnp.sum(p * p) for p, ci in leaves)


def _revealed_perturbation(grads, params, c):
    return jax.tree.map(lambda g, p, ci: np.asarray(g - ci - p, np.float64), grads, params, c)


@pytest.mark.parametrize("gamma", [5e-3, 2e-2])
def test_awp_one_step_layer_norm_ratio_is_gamma(gamma):
    params = as_jnp(PARAMS)
    c = as_jnp({k: RNG.normal(size=np.shape(v)) for k, v in PARAMS.items()})
    grads = awp_value_and_grad(_linear_plus_quadratic, gamma)(params, c)[1]
    v = _revealed_perturbation(grads, params, c)
    for k in ("w1", "w2"):
        np.testing.assert_allclose(norm(v[k]) / norm(PARAMS[k]), gamma, rtol=2e-3)
    clean = jax.grad(_linear_plus_quadratic)(params, c)
    for k in ("b1", "b2"):
        np.testing.assert_array_equal(grads[k], clean[k])  # exactly unperturbed


def test_awp_mask_selects_leaves():
    params = as_jnp(PARAMS)
    c = as_jnp({k: RNG.normal(size=np.shape(v)) for k, v in PARAMS.items()})
    gamma = 0.05
    everything = awp_value_and_grad(_linear_plus_quadratic, gamma, mask=lambda p: True)
    v = _revealed_perturbation(everything(params, c)[1], params, c)
    for k in PARAMS:
        np.testing.assert_allclose(norm(v[k]) / norm(PARAMS[k]), gamma, rtol=2e-3)
    only_b1 = {"b1": True, "b2": False, "w1": False, "w2": False}
    grads = awp_value_and_grad(_linear_plus_quadratic, gamma, mask=only_b1)(params, c)[1]
    v = _revealed_perturbation(grads, params, c)
    np.testing.assert_allclose(norm(v["b1"]) / norm(PARAMS["b1"]), gamma, rtol=2e-3)
    clean = jax.grad(_linear_plus_quadratic)(params, c)
    for k in ("b2", "w1", "w2"):
        np.testing.assert_array_equal(grads[k], clean[k])


def test_awp_limits_equal_plain_gradient():
    params = as_jnp(PARAMS)
    want = jax.value_and_grad(mlp_loss)(params, X, Y)
    for fn in (awp_value_and_grad(mlp_loss, 0.0), awp_value_and_grad(mlp_loss, steps=0)):
        got = fn(params, X, Y)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Both: numerical safety, dtypes, errors, multi-device semantics.
# ---------------------------------------------------------------------------------------------

METHODS = {
    "amp_layer": lambda loss, **kw: amp_value_and_grad(loss, 0.1, inner_steps=2, **kw),
    "amp_global": lambda loss, **kw: amp_value_and_grad(loss, 0.1, ball="global", **kw),
    "awp": lambda loss, **kw: awp_value_and_grad(loss, 0.02, steps=2, **kw),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_zero_gradient_and_zero_weights_are_finite(method):
    params = as_jnp(PARAMS)
    flat = METHODS[method](lambda p, x, y: 0.0 * mlp_loss(p, x, y))
    grads = flat(params, X, Y)[1]
    for g in jax.tree.leaves(grads):
        np.testing.assert_array_equal(g, 0.0)
    zero_w1 = dict(params, w1=jnp.zeros_like(params["w1"]))
    grads = METHODS[method](mlp_loss)(zero_w1, X, Y)[1]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    if method == "awp":  # ‖w1‖ = 0: w1 stays unperturbed, w2 is perturbed as usual
        base = dict(PARAMS, w1=0 * PARAMS["w1"])
        v = np_awp_paper(lambda v: np_grad(add(base, v), X, Y), 0.02, 0.02, 2, params=base)
        np.testing.assert_array_equal(v["w1"], 0.0)
        assert_tree_close(grads, np_grad(add(base, v), X, Y))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bf16_params_give_bf16_finite_grads(method):
    params = as_jnp(PARAMS, jnp.bfloat16)
    grads = jax.jit(METHODS[method](mlp_loss))(params, X.astype(np.float32), Y)[1]
    for g in jax.tree.leaves(grads):
        assert g.dtype == jnp.bfloat16
        assert bool(jnp.all(jnp.isfinite(g)))
    ref = METHODS[method](mlp_loss)(as_jnp(PARAMS), X, Y)[1]
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(g, np.float32), r, rtol=0.1, atol=0.02)


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (amp_value_and_grad, {"epsilon": -0.1}, "epsilon"),
        (amp_value_and_grad, {"epsilon": 0.1, "inner_lr": 0.0}, "inner_lr"),
        (amp_value_and_grad, {"epsilon": 0.1, "inner_steps": 1.5}, "inner_steps"),
        (amp_value_and_grad, {"epsilon": 0.1, "inner_steps": -1}, "inner_steps"),
        (amp_value_and_grad, {"epsilon": 0.1, "ball": "l2"}, "ball"),
        (awp_value_and_grad, {"gamma": -1e-3}, "gamma"),
        (awp_value_and_grad, {"steps": -2}, "steps"),
        (awp_value_and_grad, {"step_size": -1.0}, "step_size"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(factory, kwargs, name):
    with pytest.raises(ValueError, match=name):
        factory(mlp_loss, **kwargs)


@pytest.mark.parametrize("factory", [amp_value_and_grad, awp_value_and_grad])
def test_non_callable_loss_raises_type_error(factory):
    with pytest.raises(TypeError, match="loss_fn"):
        factory("not a function", 0.1)


def _np_per_device_grads(method, synced):
    """Reference: ascend on each device's shard (or the pmean-ed = full-batch gradient)."""
    out = []
    for d in range(N_DEV):
        xs, ys = X[2 * d : 2 * d + 2], Y[2 * d : 2 * d + 2]

        def ascent(v, xs=xs, ys=ys):
            return full_batch_grad(v) if synced else np_grad(add(PARAMS, v), xs, ys)

        if method == "awp":
            v = np_awp_paper(ascent, 0.02, 0.02, 2)
        else:
            steps = 2 if method == "amp_layer" else 1
            v = np_amp_delta(ascent, 0.1, 1.0, steps, method.removeprefix("amp_"))
        out.append(np_grad(add(PARAMS, v), xs, ys))
    return {k: np.stack([o[k] for o in out]) for k in PARAMS}


def _pmap_grads(fn):
    step = jax.pmap(lambda p, x, y: fn(p, x, y)[1], "i", in_axes=(None, 0, 0),
                    devices=jax.devices()[:N_DEV])  # fmt: skip
    return step(as_jnp(PARAMS), X.reshape(N_DEV, 2, 4), Y.reshape(N_DEV, 2, 2))


def _shard_map_grads(fn):
    mesh = jax.make_mesh((N_DEV,), ("i",), (AxisType.Explicit,), devices=jax.devices()[:N_DEV])

    def stacked(p, x, y):
        return jax.tree.map(lambda a: a[None], fn(p, x, y)[1])

    step = jax.jit(jax.shard_map(stacked, mesh=mesh, in_specs=(P(), P("i"), P("i")),
                                 out_specs=P("i"), check_vma=False))  # fmt: skip
    x, y = (jax.device_put(a.astype(np.float32), NamedSharding(mesh, P("i"))) for a in (X, Y))
    return step(as_jnp(PARAMS), x, y)


@pytest.mark.parametrize("runner", [_pmap_grads, _shard_map_grads], ids=["pmap", "shard_map"])
@pytest.mark.parametrize("synced", [False, True], ids=["per_device", "synced"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_per_device_and_synced_perturbation(method, synced, runner):
    fn = METHODS[method](mlp_loss, sync_axis_name="i" if synced else None)
    assert_tree_close(runner(fn), _np_per_device_grads(method, synced))
