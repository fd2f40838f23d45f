"""Tests for jaxlab.optim.momentum_models (MoMo, MoMo-Adam)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.optim.momentum_models import momo, momo_adam

# ---------------------------------------------------------------------------------------------
# NumPy float64 transcriptions of fabian-sp/MoMo (momo/momo.py `Momo.step`, momo/momo_adam.py
# `MomoAdam.step`, one parameter group). `decayed` is the only addition: a weight-decay mask,
# with the (1+αλ) factors of the proximal model moved onto the decayed leaves (module docstring).
# With every leaf decayed the code below is the official code line for line.
# ---------------------------------------------------------------------------------------------


class OfficialMomo:
    def __init__(self, params, weight_decay=0.0, beta=0.9, lb=0.0, bias_correction=False,
                 use_fstar=False, decayed=None):  # fmt: skip
        self.params = [np.array(p, np.float64) for p in params]
        self.decayed = decayed or [True] * len(params)
        self.lmbda, self.beta, self.lb, self._initial_lb = weight_decay, beta, lb, lb
        self.bias_correction, self.use_fstar = bias_correction, use_fstar
        self.state = [{} for _ in params]
        self._number_steps = 0

    def step(self, loss, grads, lr):
        self._number_steps += 1
        beta, lmbda = self.beta, self.lmbda
        if self._number_steps == 1:
            self.loss_avg = 0.0 if self.bias_correction else loss
        self.loss_avg = beta * self.loss_avg + (1 - beta) * loss
        rho = 1 - beta**self._number_steps if self.bias_correction else 1
        dot, norm, _gamma = [0.0, 0.0], [0.0, 0.0], 0.0  # [decayed, not decayed]
        for p, grad, state, dec in zip(self.params, grads, self.state, self.decayed, strict=True):
            if self._number_steps == 1:
                if self.bias_correction:
                    state["grad_avg"], state["grad_dot_w"] = np.zeros_like(p), 0.0
                else:
                    state["grad_avg"], state["grad_dot_w"] = grad.copy(), np.sum(p * grad)
            state["grad_avg"] = beta * state["grad_avg"] + (1 - beta) * grad
            state["grad_dot_w"] = beta * state["grad_dot_w"] + (1 - beta) * np.sum(p * grad)
            dot[1 - dec] += np.sum(p * state["grad_avg"])
            _gamma += state["grad_dot_w"]
            norm[1 - dec] += np.sum(state["grad_avg"] ** 2)
        c = 1 + lr * lmbda
        _dot, _norm = dot[0] + c * dot[1], norm[0] + c * norm[1]  # mask; official: dot[1] = 0
        if self.use_fstar:
            cap = c * self.loss_avg + _dot - c * _gamma
            if cap < c * rho * self.lb:
                self.lb = max(cap / (2 * c * rho), self._initial_lb)
        if lmbda > 0:
            nom = c * (self.loss_avg - rho * self.lb) + _dot - c * _gamma
            t1 = max(nom, 0.0) / _norm
        else:
            t1 = max(self.loss_avg - rho * self.lb + _dot - _gamma, 0.0) / _norm
        tau = min(lr / rho, t1)
        if self.use_fstar:
            h = self.loss_avg + dot[0] + dot[1] - _gamma
            self.lb = max((h - 0.5 * tau * (norm[0] + norm[1])) / rho, self._initial_lb)
        for p, state, dec in zip(self.params, self.state, self.decayed, strict=True):
            p -= tau * state["grad_avg"]
            if lmbda > 0 and dec:
                p /= c
        return tau


class OfficialMomoAdam:
    def __init__(self, params, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, lb=0.0,
                 divide=True, use_fstar=False, decayed=None):  # fmt: skip
        self.params = [np.array(p, np.float64) for p in params]
        self.decayed = decayed or [True] * len(params)
        self.betas, self.eps, self.lmbda, self.divide = betas, eps, weight_decay, divide
        self.lb, self._initial_lb, self.use_fstar = lb, lb, use_fstar
        self.state = [
            {"grad_avg": np.zeros_like(p), "grad_avg_sq": np.zeros_like(p), "grad_dot_w": 0.0}
            for p in self.params
        ]
        self._number_steps, self.loss_avg = 0, 0.0

    def step(self, loss, grads, lr):
        (beta1, beta2), eps, lmbda = self.betas, self.eps, self.lmbda
        dot, grad_norm, _gamma = [0.0, 0.0], [0.0, 0.0], 0.0  # [decayed, not decayed]
        self._number_steps += 1
        bias_correction1 = 1 - beta1**self._number_steps
        bias_correction2 = 1 - beta2**self._number_steps
        for p, grad, state, dec in zip(self.params, grads, self.state, self.decayed, strict=True):
            state["grad_avg"] = beta1 * state["grad_avg"] + (1 - beta1) * grad
            state["grad_avg_sq"] = beta2 * state["grad_avg_sq"] + (1 - beta2) * grad * grad
            state["grad_dot_w"] = beta1 * state["grad_dot_w"] + (1 - beta1) * np.sum(p * grad)
            dk = np.sqrt(state["grad_avg_sq"] / bias_correction2) + eps
            dot[1 - dec] += np.sum(p * state["grad_avg"])
            _gamma += state["grad_dot_w"]
            grad_norm[1 - dec] += np.sum(state["grad_avg"] * (state["grad_avg"] / dk))
        self.loss_avg = (1 - beta1) * loss + beta1 * self.loss_avg
        c = 1 + lr * lmbda
        _dot, _grad_norm = dot[0] + c * dot[1], grad_norm[0] + c * grad_norm[1]  # mask
        if self.use_fstar:
            cap = c * self.loss_avg + _dot - c * _gamma
            if cap < c * bias_correction1 * self.lb:
                self.lb = max(cap / (2 * c * bias_correction1), self._initial_lb)
        nom = c * (self.loss_avg - bias_correction1 * self.lb) + _dot - c * _gamma
        t1 = max(nom, 0.0) / _grad_norm
        tau = min(lr / bias_correction1, t1)
        if self.use_fstar:
            h = self.loss_avg + dot[0] + dot[1] - _gamma
            self.lb = max((h - 0.5 * tau * (grad_norm[0] + grad_norm[1])) / bias_correction1,
                          self._initial_lb)  # fmt: skip
        for p, state, dec in zip(self.params, self.state, self.decayed, strict=True):
            dk = np.sqrt(state["grad_avg_sq"] / bias_correction2) + eps
            if lmbda > 0 and not self.divide and dec:
                p *= 1 - lmbda * lr
            p -= tau * state["grad_avg"] / dk
            if lmbda > 0 and self.divide and dec:
                p /= c
        return tau


# ---------------------------------------------------------------------------------------------
# A small stochastic least-squares problem: params {"b": (2,), "w": (4, 2)} (leaf order b, w).
# ---------------------------------------------------------------------------------------------

_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(64, 4))
_Y = _X @ _RNG.normal(size=(4, 2)) + 0.3 * _RNG.normal(size=(64, 2)) + 1.0
_BATCHES = [_RNG.choice(64, size=8, replace=False) for _ in range(40)]
_X0 = {"b": np.array([0.5, -0.5]), "w": 0.1 * _RNG.normal(size=(4, 2))}


def _np_loss_grad(params, idx):
    x, y = _X[idx], _Y[idx]
    r = x @ params["w"] + params["b"][None] - y
    return 0.5 * np.sum(r**2) / len(idx), {"b": r.sum(0) / len(idx), "w": x.T @ r / len(idx)}


def _jax_loss(params, x, y):
    return 0.5 * jnp.mean(jnp.sum((x @ params["w"] + params["b"][None] - y) ** 2, axis=1))


_SCHEDULE = optax.piecewise_constant_schedule(0.1, {10: 0.5, 20: 0.5})  # exact in float32
_ADAM_SCHEDULE = optax.piecewise_constant_schedule(0.3, {10: 0.5, 20: 0.5})
_MASK = {"b": False, "w": True}
_MOMO_CASES = {  # learning rates chosen so that both τ regimes (capped or not) occur
    "default": {},
    "weight_decay": {"learning_rate": 0.04, "weight_decay": 0.1},
    "bias_correction": {"learning_rate": 0.07, "bias_correction": True},
    "bias_correction_wd": {"learning_rate": 0.1, "bias_correction": True, "weight_decay": 0.05},
    "fstar": {"learning_rate": 0.05, "adapt_lower_bound": True},
    "fstar_wd_bias": {
        "learning_rate": 0.1, "adapt_lower_bound": True, "weight_decay": 0.1,
        "bias_correction": True},
    "schedule": {"learning_rate": _SCHEDULE, "weight_decay": 0.1},
    "mask": {"learning_rate": 0.1, "weight_decay": 0.3, "weight_decay_mask": _MASK},
    "mask_fstar": {
        "learning_rate": 0.2, "weight_decay": 0.3, "adapt_lower_bound": True,
        "weight_decay_mask": lambda p: _MASK},
}  # fmt: skip
_ADAM_CASES = {
    "default": {},
    "weight_decay": {"learning_rate": 0.3, "weight_decay": 0.5},
    "no_divide": {"learning_rate": 0.3, "weight_decay": 0.5, "divide": False},
    "fstar": {"learning_rate": 0.3, "adapt_lower_bound": True},
    "fstar_wd": {"learning_rate": 0.3, "adapt_lower_bound": True, "weight_decay": 0.2},
    "schedule": {"learning_rate": _ADAM_SCHEDULE, "weight_decay": 0.1},
    "mask": {"learning_rate": 0.3, "weight_decay": 0.5, "weight_decay_mask": _MASK},
    "mask_no_divide": {
        "learning_rate": 0.3, "weight_decay": 0.5, "divide": False, "weight_decay_mask": _MASK},
}  # fmt: skip


def _official(adam, kwargs):
    """The reference optimizer and its learning rate as a function of the 0-based step."""
    kw = dict(kwargs)
    lr = kw.pop("learning_rate", 1e-2 if adam else 1.0)
    lr_fn = (lambda k: float(lr(jnp.int32(k)))) if callable(lr) else (lambda k: lr)  # α as used
    mask = kw.pop("weight_decay_mask", None)
    decayed = None if mask is None else [(mask(_X0) if callable(mask) else mask)[k] for k in "bw"]
    kw["decayed"], kw["use_fstar"] = decayed, kw.pop("adapt_lower_bound", False)
    return (OfficialMomoAdam if adam else OfficialMomo)([_X0["b"], _X0["w"]], **kw), lr_fn


@pytest.mark.parametrize(
    ("adam", "case"),
    [(False, c) for c in _MOMO_CASES] + [(True, c) for c in _ADAM_CASES],
)
def test_parity_with_official_code_float64(adam, case):
    kwargs = (_ADAM_CASES if adam else _MOMO_CASES)[case]
    with jax.enable_x64(True):
        ref, lr_fn = _official(adam, kwargs)
        opt = (momo_adam if adam else momo)(**kwargs)
        params = jax.tree.map(jnp.asarray, _X0)
        state = opt.init(params)
        update = jax.jit(opt.update)
        lbs, caps = [], []
        for k, idx in enumerate(_BATCHES[:30]):
            loss, grads = _np_loss_grad(jax.tree.map(np.asarray, params), idx)
            updates, state = update(grads, state, params, value=loss)
            params = optax.apply_updates(params, updates)
            tau_ref = ref.step(loss, [grads["b"], grads["w"]], lr_fn(k))
            np.testing.assert_allclose(params["b"], ref.params[0], rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(params["w"], ref.params[1], rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(state.step_size, tau_ref, rtol=1e-10)
            np.testing.assert_allclose(state.lower_bound, ref.lb, rtol=1e-10, atol=1e-13)
            lbs.append(float(state.lower_bound))
            caps.append(bool(state.cap_active))
        assert state.loss_avg.dtype == jnp.float64 and params["w"].dtype == jnp.float64
    assert state.count == 30
    if case != "default":  # both branches of τ = min(α/ρ, t1) were compared
        assert any(caps) and not all(caps)
    if kwargs.get("adapt_lower_bound"):  # the estimate moved: the lb trajectory was compared
        assert len(set(lbs)) > 5


def _run(opt, params, steps, dtype=jnp.float32):
    """Steps on the least-squares problem with JAX gradients; returns params and the last state."""
    params = jax.tree.map(lambda p: jnp.asarray(p, dtype), params)
    state = opt.init(params)

    @jax.jit
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(_jax_loss)(params, x, y)
        updates, state = opt.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, updates

    for idx in _BATCHES[:steps]:
        params, state, updates = step(params, state, _X[idx].astype(dtype), _Y[idx])
    return params, state, updates


@pytest.mark.parametrize("adapt", [False, True])
@pytest.mark.parametrize(
    ("ours", "theirs"), [(momo, optax.contrib.momo), (momo_adam, optax.contrib.momo_adam)]
)
def test_equals_optax_contrib_without_weight_decay(ours, theirs, adapt):
    mine, _, _ = _run(ours(adapt_lower_bound=adapt), _X0, 30)
    ref, _, _ = _run(theirs(adapt_lower_bound=adapt), _X0, 30)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), mine, ref)


def test_weight_decay_is_proximal_unlike_optax_contrib():
    """Anchors doc one-step case: Σx² from [1, 2, 3], lr = 1, λ = 0.1."""
    x = jnp.array([1.0, 2.0, 3.0])
    loss, grads = jax.value_and_grad(lambda p: jnp.sum(p**2))(x)
    results = []
    for opt in (momo(1.0, weight_decay=0.1), optax.contrib.momo(1.0, weight_decay=0.1)):
        updates, _ = opt.update(grads, opt.init(x), x, value=loss)
        results.append(optax.apply_updates(x, updates))
    np.testing.assert_allclose(results[0], [0.5, 1.0, 1.5], rtol=1e-6)  # (x − τ d)/(1 + αλ)
    np.testing.assert_allclose(results[1], [0.4591, 0.9182, 1.3773], atol=1e-4)  # x/(1+αλ) − τd


@pytest.mark.parametrize("adam", [False, True])
@pytest.mark.parametrize("alpha", [0.05, 5.0])
def test_masked_step_solves_the_proximal_model(adam, alpha):
    """x₁ minimises F(x) = max{ℓ(x), lb} + λ/2‖x_𝒟‖²_D + 1/(2α)‖x − x₀‖²_D, ℓ(x) = f + ⟨g, x − x₀⟩.

    Convex optimality (KKT): s·g + ∇R(x₁) = 0 for some s ∈ [0, 1], s = 1 if ℓ(x₁) > lb (the
    α cap binds), s < 1 only if ℓ(x₁) = lb. At step 1 both models equal ℓ (MoMo-Adam: d/ρ = g).
    """
    lam, lb, f = 0.7, 0.5, 4.0
    x0 = {"a": np.array([1.0, -2.0, 0.5]), "b": np.array([3.0, 1.5])}
    g = {"a": np.array([0.4, -1.0, 2.0]), "b": np.array([-0.3, 0.8])}
    kw = {"weight_decay": lam, "lower_bound": lb, "weight_decay_mask": {"a": True, "b": False}}
    with jax.enable_x64(True):
        opt = momo_adam(alpha, **kw) if adam else momo(alpha, **kw)
        params = jax.tree.map(jnp.asarray, x0)
        updates, state = opt.update(g, opt.init(params), params, value=f)
        x1 = np.concatenate([np.asarray(params[k] + updates[k]) for k in "ab"])
    xf, gf = np.concatenate([x0["a"], x0["b"]]), np.concatenate([g["a"], g["b"]])
    dm = np.abs(gf) + 1e-8 if adam else np.ones(5)  # D₁ = √(v₁/(1 − b₂)) + ε = |g| + ε
    grad_r = lam * np.array([1.0, 1.0, 1.0, 0.0, 0.0]) * dm * x1 + dm * (x1 - xf) / alpha
    s = -(gf @ grad_r) / (gf @ gf)
    np.testing.assert_allclose(s * gf + grad_r, 0.0, atol=1e-10)
    model = f + gf @ (x1 - xf)
    if bool(state.cap_active):
        np.testing.assert_allclose(s, 1.0, rtol=1e-10)
        assert model > lb
    else:
        assert 0 <= s < 1
        np.testing.assert_allclose(model, lb, rtol=1e-10)
    assert bool(state.cap_active) == (alpha == 0.05)  # both regimes are covered


@pytest.mark.parametrize("factory", [momo, momo_adam])
def test_mask_extremes_and_forms(factory):
    x0 = {"b": _X0["b"], "w": _X0["w"]}
    kw = {"weight_decay": 0.3, "adapt_lower_bound": True}
    unmasked, _, _ = _run(factory(**kw), x0, 10)
    no_decay, _, _ = _run(factory(adapt_lower_bound=True), x0, 10)
    for mask, expected in [
        ({"b": True, "w": True}, unmasked),
        (True, unmasked),  # a prefix of the params
        (lambda p: jax.tree.map(lambda _: False, p), no_decay),
        ({"b": False, "w": False}, no_decay),
    ]:
        got, _, _ = _run(factory(**kw, weight_decay_mask=mask), x0, 10)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, expected)
    partial, _, _ = _run(factory(**kw, weight_decay_mask={"b": False, "w": True}), x0, 10)
    assert not np.allclose(partial["b"], unmasked["b"], rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# Data parallelism: 4 devices, different data per device.
# ---------------------------------------------------------------------------------------------

_N_DEV = 4
_PAR_CASES = [
    (momo, {"weight_decay": 0.1, "adapt_lower_bound": True}),
    (momo_adam, {"learning_rate": 0.3, "weight_decay": 0.1, "adapt_lower_bound": True}),
]


def _local_step(opt):
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(_jax_loss)(params, x, y)  # per-device grads and loss
        updates, state = opt.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    return step


def _shards(k):
    """32 rows for step k: device i gets rows 8i..8i+7."""
    idx = np.concatenate(_BATCHES[4 * k : 4 * k + 4])
    return _X[idx].astype(np.float32), _Y[idx].astype(np.float32)


def _single_device_run(factory, kwargs, steps=3):
    step = jax.jit(_local_step(factory(**kwargs)))
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), _X0)
    state = factory(**kwargs).init(params)
    for k in range(steps):
        params, state = step(params, state, *_shards(k))  # full batch: mean of the shard means
    return params, state


def _assert_replicas_equal_single(stacked, single):
    for leaf, ref in zip(jax.tree.leaves(stacked), jax.tree.leaves(single), strict=True):
        leaf = np.asarray(leaf)
        assert leaf.shape[0] == _N_DEV
        np.testing.assert_array_equal(leaf, np.broadcast_to(leaf[:1], leaf.shape))
        np.testing.assert_allclose(leaf[0], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("factory", "kwargs"), _PAR_CASES)
def test_pmap_replicas_identical_and_equal_single_device(factory, kwargs):
    opt = factory(**kwargs, axis_name="i")
    step = jax.pmap(
        _local_step(opt), "i", in_axes=(None, None, 0, 0), devices=jax.devices()[:_N_DEV]
    )
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), _X0)
    state = opt.init(params)
    for k in range(3):
        x, y = _shards(k)
        stacked = step(params, state, x.reshape(_N_DEV, 8, 4), y.reshape(_N_DEV, 8, 2))
        params, state = jax.tree.map(lambda a: a[0], stacked)
    _assert_replicas_equal_single(stacked, _single_device_run(factory, kwargs))


def test_pmap_without_axis_name_diverges():
    """Control for the test above: per-device grads and loss without axis_name split replicas."""
    opt = momo(weight_decay=0.1)
    step = jax.pmap(
        _local_step(opt), "i", in_axes=(None, None, 0, 0), devices=jax.devices()[:_N_DEV]
    )
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), _X0)
    x, y = _shards(0)
    new_params, _ = step(params, opt.init(params), x.reshape(_N_DEV, 8, 4), y.reshape(_N_DEV, 8, 2))
    assert not np.allclose(new_params["w"][0], new_params["w"][1])


@pytest.mark.parametrize(("factory", "kwargs"), _PAR_CASES)
def test_shard_map_replicas_identical_and_equal_single_device(factory, kwargs):
    opt = factory(**kwargs, axis_name="i")
    mesh = jax.make_mesh((_N_DEV,), ("i",), (AxisType.Explicit,), devices=jax.devices()[:_N_DEV])
    local = _local_step(opt)

    def stacked_step(params, state, x, y):  # stack the replicas to compare them
        return jax.tree.map(lambda a: a[None], local(params, state, x, y))

    step = jax.jit(jax.shard_map(stacked_step, mesh=mesh, in_specs=(P(), P(), P("i"), P("i")),
                                 out_specs=P("i"), check_vma=False))  # fmt: skip
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), _X0)
    state = opt.init(params)
    for k in range(3):
        x, y = (jax.device_put(a, NamedSharding(mesh, P("i"))) for a in _shards(k))
        stacked = step(params, state, x, y)
        params, state = jax.tree.map(lambda a: np.asarray(a)[0], stacked)
    _assert_replicas_equal_single(stacked, _single_device_run(factory, kwargs))


# ---------------------------------------------------------------------------------------------
# Dtypes, numerical safety, errors.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opt",
    [momo(weight_decay=0.05, adapt_lower_bound=True), momo_adam(0.3, weight_decay=0.05)],
    ids=["momo", "momo_adam"],
)
def test_bf16_params_keep_float32_scalars(opt):
    p16, s16, u16 = _run(opt, _X0, 10, dtype=jnp.bfloat16)
    p32, s32, _ = _run(opt, _X0, 10, dtype=jnp.float32)
    for name in ("loss_avg", "gamma", "lower_bound", "step_size"):
        assert getattr(s16, name).dtype == jnp.float32, name
    assert s16.count.dtype == jnp.int32 and s16.cap_active.dtype == jnp.bool_
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(u16))
    assert all(m.dtype == jnp.bfloat16 for m in jax.tree.leaves(s16.exp_avg))
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves((p16, u16)))
    np.testing.assert_allclose(s16.step_size, s32.step_size, rtol=0.1)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float32), b, atol=0.05), p16, p32
    )


@pytest.mark.parametrize(
    "opt",
    [
        momo(weight_decay=0.1, adapt_lower_bound=True),
        momo(bias_correction=True, adapt_lower_bound=True),
        momo_adam(weight_decay=0.1, adapt_lower_bound=True),
        momo_adam(weight_decay=0.1, divide=False),
    ],
)
def test_zero_gradient_and_zero_loss_give_no_nan(opt):
    params = {"w": jnp.ones((3,)), "z": jnp.zeros((2,))}
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = opt.init(params)
    update = jax.jit(opt.update)
    for _ in range(3):
        updates, state = update(zeros, state, params, value=0.0)  # Python float loss
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((updates, state)))
        assert state.step_size == 0 and not state.cap_active
        np.testing.assert_array_equal(updates["z"], 0.0)
        assert bool(jnp.all(updates["w"] <= 0))  # only the decay acts
        params = optax.apply_updates(params, updates)


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (momo, {"beta": 1.0}, "beta"),
        (momo, {"beta": -0.1}, "beta"),
        (momo, {"learning_rate": 0.0}, "learning_rate"),
        (momo, {"weight_decay": -1e-3}, "weight_decay"),
        (momo_adam, {"b1": 1.0}, "b1"),
        (momo_adam, {"b2": 1.5}, "b2"),
        (momo_adam, {"eps": 0.0}, "eps"),
        (momo_adam, {"learning_rate": -1.0}, "learning_rate"),
        (momo_adam, {"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_invalid_hyperparameters_raise(factory, kwargs, name):
    value = next(iter(kwargs.values()))
    with pytest.raises(ValueError, match=rf"{name} must.*{name}={value!r}"):
        factory(**kwargs)


@pytest.mark.parametrize("factory", [momo, momo_adam])
def test_missing_params_or_value_raise(factory):
    opt = factory()
    params = jnp.ones(3)
    state = opt.init(params)
    with pytest.raises(ValueError, match="params"):
        opt.update(params, state, value=1.0)
    with pytest.raises(ValueError, match="loss"):
        opt.update(params, state, params)


@pytest.mark.parametrize("factory", [momo, momo_adam])
def test_inject_hyperparams(factory):
    """Array hyperparameters (from inject_hyperparams) skip the eager checks."""
    opt = optax.inject_hyperparams(factory)(learning_rate=0.5, weight_decay=0.1)
    params, _, _ = _run(opt, _X0, 3)
    ref, _, _ = _run(factory(0.5, weight_decay=0.1), _X0, 3)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), params, ref)
