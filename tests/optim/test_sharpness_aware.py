"""sam(): every variant against a NumPy transcription of its paper's code, limits, optax parity.

``reference`` below is a float64 NumPy loop over shards with analytic logistic-regression
gradients (from test_sam_gradient), then heavy-ball SGD. Its branches transcribe, for one shard:
google-research/sam (SAM), SamsungLabs/ASAM ``ascent_step``, nblt/F-SAM ``FriendlySAM.first_step``,
big_vision ``gsam_gradient`` (``minimize_fp=True``) and LookSAM's Algorithm 1 (Liu et al. 2022).
With several shards it is the documented data-parallel semantics: each shard perturbs with its
own gradient (or the mean with ``sync``), F-SAM's average and LookSAM's decomposition use the
mean gradients, GSAM decomposes per shard and then averages (as big_vision).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.optim.momentum_models import momo
from jaxlab.optim.sharpness_aware import gsam_rho_schedule, sam
from jaxlab.optim.weight_decay import sgdw
from tests.optim.test_sam_gradient import (
    L2,
    N_DEV,
    PER_DEV,
    flat,
    init_params,
    logistic_loss,
    make_data,
    make_mesh,
    np_loss_grad,
    shards,
)

LR, MOMENTUM, RHO, STEPS = 0.5, 0.9, 0.3, 7


def unit(v):
    return v / (np.linalg.norm(v) + 1e-12)


def perturb(d, theta, rho, *, rule, eta, scaled, perturbed):
    d = np.where(perturbed, d, 0.0)
    if rule == "asam":  # SamsungLabs/ASAM: T = |w| + η on 'weight' leaves, 1 elsewhere
        t = np.where(scaled, np.abs(theta) + eta, 1.0)
        return rho * t * (t * d) / (np.linalg.norm(t * d) + 1e-12)
    if rule == "layerwise":  # per leaf: b = θ[0], w = θ[1:]
        return np.concatenate(
            [rho * np.linalg.norm(theta[s]) * unit(d[s]) for s in (slice(0, 1), slice(1, None))]
        )
    return rho * unit(d)


def reference(
    theta,
    data,
    *,
    steps=STEPS,
    rho=RHO,
    rule="sam",
    combination="sam",
    sync=False,
    alpha=0.0,
    k=1,
    eta=0.01,
    sigma=1.0,
    lam=0.9,
    scaled=(True,) * 4,
    perturbed=(True,) * 4,
    lr=LR,
    l2_outside=0.0,
    loss_grad=np_loss_grad,
):
    """θ after each step; ``rho`` and ``lr`` may be functions of the 0-based step."""
    rho_fn = rho if callable(rho) else (lambda t: rho)
    lr_fn = lr if callable(lr) else (lambda t: lr)
    grad = [lambda th, x=x, y=y: loss_grad(th, x, y)[1] for x, y in data]
    trace, ema, g_v, out = np.zeros_like(theta), None, np.zeros_like(theta), []
    for t in range(steps):
        g = [f(theta) for f in grad]
        g_mean = np.mean(g, axis=0)
        ascent = [g_mean] * len(g) if sync else g
        if rule == "fsam":  # FriendlySAM.first_step: first call stores m = g and perturbs along g
            if ema is not None:
                ascent = [a - sigma * ema for a in ascent]
            ema = g_mean if ema is None else lam * ema + (1 - lam) * g_mean
        if combination == "looksam" and t % k:  # LookSAM Alg. 1, not a refresh step
            d = g_mean + alpha * np.linalg.norm(g_mean) / np.linalg.norm(g_v) * g_v
        else:
            kw = {"rule": "sam" if rule == "fsam" else rule, "eta": eta}
            flags = {"scaled": np.array(scaled), "perturbed": np.array(perturbed)}
            eps = [perturb(a, theta, rho_fn(t), **flags, **kw) for a in ascent]
            g_p = [f(theta + e) for f, e in zip(grad, eps, strict=True)]
            if combination == "gsam":  # big_vision gsam_gradient, minimize_fp=True
                parts = []
                for gc, gr in zip(g, g_p, strict=True):
                    gr_unit = gr / np.linalg.norm(gr)
                    parts.append(gr - alpha * (gc - (gr_unit @ gc) * gr_unit))
                d = np.mean(parts, axis=0)
            else:
                d = np.mean(g_p, axis=0)
            if combination == "looksam":  # refresh: g_v = g_s − ‖g_s‖cos θ ĝ
                g_v = d - (g_mean @ d) / (g_mean @ g_mean) * g_mean
        d = d + l2_outside * theta
        trace = d + MOMENTUM * trace
        theta = theta - lr_fn(t) * trace
        out.append(theta)
    return out


def make_step(tx, axis_name=None, value=True):
    def step(params, state, x, y):
        def loss_fn(p):
            return logistic_loss(p, (x, y))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        extra = {"value": loss} if value else {}
        updates, state = tx.update(grads, state, params, loss_fn=loss_fn, **extra)
        return optax.apply_updates(params, updates), state

    return step


def run(tx, steps=STEPS, step=None, data=None, params=None):
    x, y = make_data() if data is None else data
    step = jax.jit(make_step(tx)) if step is None else step
    params = init_params() if params is None else params
    state = tx.init(params)
    out, states = [], []
    for _ in range(steps):
        params, state = step(params, state, x, y)
        out.append(flat(params))
        states.append(state)
    return out, states


def assert_close(got, want, rtol=2e-5, atol=1e-6):
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def lr_schedule(count):
    return LR * (1.0 - 0.1 * count)


def one_shard():
    return shards(*make_data(), 1)


MASK = {"b": False, "w": True}
VARIANTS = {
    "sam": ({}, {}),
    "asam": (
        {"perturbation": "asam", "eta": 0.05, "adaptive_mask": MASK},
        {"rule": "asam", "eta": 0.05, "scaled": (False, True, True, True)},
    ),
    "layerwise": ({"perturbation": "layerwise"}, {"rule": "layerwise"}),
    "fsam": (
        {"perturbation": "fsam", "sigma": 0.8, "lam": 0.6},
        {"rule": "fsam", "sigma": 0.8, "lam": 0.6},
    ),
    "gsam": ({"combination": "gsam", "alpha": 0.4}, {"combination": "gsam", "alpha": 0.4}),
    "looksam": (
        {"combination": "looksam", "alpha": 0.7, "k": 3},
        {"combination": "looksam", "alpha": 0.7, "k": 3},
    ),
    "masked": ({"perturbation_mask": MASK}, {"perturbed": (False, True, True, True)}),
    "asam_looksam": (
        {"perturbation": "asam", "combination": "looksam", "alpha": 0.5, "k": 2},
        {"rule": "asam", "combination": "looksam", "alpha": 0.5, "k": 2},
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_equals_its_reference(variant):
    kwargs, ref_kwargs = VARIANTS[variant]
    got, _ = run(sam(optax.sgd(LR, momentum=MOMENTUM), RHO, **kwargs))
    assert_close(got, reference(flat(init_params()), one_shard(), **ref_kwargs))
    if variant != "sam":  # each variant is a different algorithm on this problem
        plain = reference(flat(init_params()), one_shard())
        assert np.max(np.abs(got[-1] - plain[-1])) > 1e-4


def test_gsam_with_rho_following_the_learning_rate_equals_big_vision():
    rho_max, rho_min, lr_max, lr_min = 0.4, 0.1, LR, LR * (1 - 0.1 * (STEPS - 1))
    rho = gsam_rho_schedule(lr_schedule, rho_max, rho_min, lr_max, lr_min)
    got, states = run(
        sam(optax.sgd(lr_schedule, momentum=MOMENTUM), rho, combination="gsam", alpha=0.3)
    )

    def rho_ref(t):  # big_vision: rho_min + (rho_max − rho_min)(lr − lr_min)/(lr_max − lr_min)
        return rho_min + (rho_max - rho_min) * (lr_schedule(t) - lr_min) / (lr_max - lr_min)

    want = reference(
        flat(init_params()), one_shard(), rho=rho_ref, lr=lr_schedule, combination="gsam", alpha=0.3
    )
    assert_close(got, want)
    np.testing.assert_allclose(
        [s.diagnostics.rho for s in states], [rho_ref(t) for t in range(STEPS)], rtol=1e-6
    )
    assert float(states[-1].diagnostics.rho) == pytest.approx(rho_min, rel=1e-6)


MULTI = {
    "sam": ({}, {}),
    "sam_synced": ({"sync_perturbation": True}, {"sync": True}),
    "fsam_gsam": (
        {"perturbation": "fsam", "combination": "gsam", "alpha": 0.4},
        {"rule": "fsam", "combination": "gsam", "alpha": 0.4},
    ),
    "layerwise_looksam": (
        {"perturbation": "layerwise", "combination": "looksam", "alpha": 0.7, "k": 3},
        {"rule": "layerwise", "combination": "looksam", "alpha": 0.7, "k": 3},
    ),
}


@pytest.mark.parametrize("variant", list(MULTI))
@pytest.mark.parametrize("mapping", ["pmap", "shard_map"])
def test_multi_device_equals_reference(mapping, variant):
    kwargs, ref_kwargs = MULTI[variant]
    tx = sam(optax.sgd(LR, momentum=MOMENTUM), RHO, axis_name="i", **kwargs)
    x, y = make_data()
    if mapping == "pmap":
        step = jax.pmap(
            make_step(tx),
            "i",
            in_axes=(None, None, 0, 0),
            out_axes=None,
            devices=jax.devices()[:N_DEV],
        )
        data = (x.reshape(N_DEV, PER_DEV, -1), y.reshape(N_DEV, PER_DEV))
    else:
        mesh = make_mesh()
        specs = (P(), P(), P("i"), P("i"))
        step = jax.jit(
            jax.shard_map(
                make_step(tx), mesh=mesh, in_specs=specs, out_specs=(P(), P()), check_vma=False
            )
        )
        data = jax.device_put((x, y), NamedSharding(mesh, P("i")))
    got, states = run(tx, step=step, data=data)
    assert_close(got, reference(flat(init_params()), shards(x, y, N_DEV), **ref_kwargs))
    # the diagnostics are device means: the mean clean loss is the whole-batch loss
    np.testing.assert_allclose(
        states[-1].diagnostics.loss,
        np_loss_grad(got[-2], x, y)[0],
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    ("limit", "kwargs"),
    [
        ("looksam_k1", {"combination": "looksam", "k": 1, "alpha": 0.7}),
        ("gsam_alpha0", {"combination": "gsam", "alpha": 0.0}),
        ("fsam_sigma0", {"perturbation": "fsam", "sigma": 0.0}),
    ],
)
def test_limit_cases_equal_sam(limit, kwargs):
    del limit
    got, _ = run(sam(optax.sgd(LR, momentum=MOMENTUM), RHO, **kwargs))
    want, _ = run(sam(optax.sgd(LR, momentum=MOMENTUM), RHO))
    assert_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rho_zero_equals_the_base_optimizer_exactly(variant):
    """Op by op (no jit, so no fusion differences) the trajectories are bitwise equal."""
    kwargs, _ = VARIANTS[variant]
    base = optax.adam(0.1)
    got, states = run(sam(base, 0.0, **kwargs), steps=3, step=make_step(sam(base, 0.0, **kwargs)))

    def base_step(params, state, x, y):
        grads = jax.grad(logistic_loss)(params, (x, y))
        updates, state = base.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    want, _ = run(base, steps=3, step=base_step)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(float(s.diagnostics.perturbation_norm) == 0.0 for s in states)


def quadratic(params):
    return jnp.sum((params - jnp.asarray([1.0, -2.0, 0.5])) ** 2)


def at_minimum_step(tx, **extra):
    params = jnp.asarray([1.0, -2.0, 0.5])
    grads = jax.grad(quadratic)(params)
    assert not np.any(np.asarray(grads))
    updates, _ = tx.update(grads, tx.init(params), params, **extra)
    return updates


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_zero_gradient_gives_the_finite_base_step(variant):
    """At the minimum only the decay moves the params; optax.contrib.sam returns NaN there."""
    kwargs, _ = VARIANTS[variant]
    kwargs = {k: v for k, v in kwargs.items() if not k.endswith("mask")}
    base = optax.adamw(0.1, weight_decay=0.1)
    got = at_minimum_step(sam(base, RHO, **kwargs), loss_fn=quadratic)
    params = jnp.asarray([1.0, -2.0, 0.5])
    want, _ = base.update(jnp.zeros(3), base.init(params), params)
    assert np.all(np.isfinite(got)) and np.any(np.asarray(want))
    np.testing.assert_array_equal(got, want)


def test_optax_contrib_sam_is_nan_at_a_zero_gradient():
    adversary = optax.chain(optax.contrib.normalize(), optax.sgd(RHO))
    tx = optax.contrib.sam(optax.adamw(0.1, weight_decay=0.1), adversary, opaque_mode=True)
    assert np.all(np.isnan(at_minimum_step(tx, grad_fn=lambda p, _: jax.grad(quadratic)(p))))


def test_equals_optax_contrib_sam_opaque_mode():
    ours, _ = run(sam(optax.sgd(LR, momentum=MOMENTUM), RHO))
    adversary = optax.chain(optax.contrib.normalize(), optax.sgd(RHO))
    tx = optax.contrib.sam(optax.sgd(LR, momentum=MOMENTUM), adversary, opaque_mode=True)

    def step(params, state, x, y):
        grads = jax.grad(logistic_loss)(params, (x, y))

        def grad_fn(p, _):
            return jax.grad(logistic_loss)(p, (x, y))

        updates, state = tx.update(grads, state, params, grad_fn=grad_fn)
        return optax.apply_updates(params, updates), state

    theirs, _ = run(tx, step=jax.jit(step))
    assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_rho_schedule_counts_outer_steps():
    schedule = optax.linear_schedule(0.0, 0.6, transition_steps=6)
    _, states = run(sam(optax.sgd(LR), schedule), steps=5)
    want = [0.0, 0.1, 0.2, 0.3, 0.4]
    np.testing.assert_allclose([s.diagnostics.rho for s in states], want, atol=1e-7)
    np.testing.assert_allclose([s.diagnostics.perturbation_norm for s in states], want, atol=1e-6)


def test_gsam_rho_schedule_closed_form_and_errors():
    rho = gsam_rho_schedule(lambda c: 1.0 - 0.1 * c, 0.5, 0.1, lr_max=1.0, lr_min=0.2)
    np.testing.assert_allclose([rho(c) for c in (0, 4, 8)], [0.5, 0.3, 0.1], rtol=1e-6)
    assert float(gsam_rho_schedule(0.1, 0.5, 0.1, 0.1, 0.1)(3)) == 0.5
    with pytest.raises(ValueError, match="rho_max"):
        gsam_rho_schedule(0.1, 0.1, 0.5, 1.0, 0.0)
    with pytest.raises(ValueError, match="lr_max"):
        gsam_rho_schedule(0.1, 0.5, 0.1, 0.1, 1.0)


@pytest.mark.parametrize("inner_value", ["perturbed", "clean"])
def test_wraps_momo_and_forwards_the_chosen_loss(inner_value):
    """sam(momo()) equals momo fed the perturbed gradient and L(w+ε) (or L(w)).

    The learning rate (MoMo's cap on τ) is large so that τ depends on the loss value."""

    def make():
        return sam(momo(100.0), RHO, inner_value=inner_value)

    got, states = run(make(), steps=4)
    got_no_value, _ = run(make(), steps=4, step=jax.jit(make_step(make(), value=False)))
    inner = momo(100.0)

    def manual_step(params, state, x, y, value_of=inner_value):
        def loss_fn(p):
            return logistic_loss(p, (x, y))

        loss, g = jax.value_and_grad(loss_fn)(params)
        eps = jax.tree.map(lambda v: RHO * v / optax.tree.norm(g), g)
        loss_p, g_p = jax.value_and_grad(loss_fn)(optax.apply_updates(params, eps))
        value = loss_p if value_of == "perturbed" else loss
        updates, state = inner.update(g_p, state, params, value=value)
        return optax.apply_updates(params, updates), state

    want, _ = run(inner, steps=4, step=jax.jit(manual_step))
    assert not any(bool(s.inner_state.cap_active) for s in states)
    assert_close(got, want, rtol=1e-5)
    assert_close(got_no_value, got, rtol=1e-6)
    other = "clean" if inner_value == "perturbed" else "perturbed"
    not_want, _ = run(inner, steps=4, step=jax.jit(lambda *a: manual_step(*a, value_of=other)))
    assert np.max(np.abs(not_want[-1] - got[-1])) > 1e-3


def test_diagnostics_closed_form():
    a = jnp.asarray([3.0, 1.0])

    def loss(w):
        return 0.5 * jnp.sum(a * w**2)

    w = jnp.asarray([1.0, 2.0])
    tx = sam(optax.sgd(0.1), 0.2)
    value, g = jax.value_and_grad(loss)(w)
    _, state = tx.update(g, tx.init(w), w, loss_fn=loss)
    gn = np.asarray(a * w)
    wp = np.asarray(w) + 0.2 * gn / np.linalg.norm(gn)
    gp = np.asarray(a) * wp
    d = state.diagnostics
    np.testing.assert_allclose(d.loss, value, rtol=1e-7)
    np.testing.assert_allclose(d.perturbed_loss, 0.5 * np.sum(np.asarray(a) * wp**2), rtol=1e-6)
    np.testing.assert_allclose(d.sharpness, d.perturbed_loss - d.loss, rtol=1e-6)
    np.testing.assert_allclose(d.grad_norm, np.linalg.norm(gn), rtol=1e-6)
    cos = gn @ gp / (np.linalg.norm(gn) * np.linalg.norm(gp))
    np.testing.assert_allclose(d.cosine, cos, rtol=1e-6)
    np.testing.assert_allclose(d.perturbation_norm, 0.2, rtol=1e-6)
    np.testing.assert_allclose(d.rho, 0.2, rtol=1e-7)

    # diagnostics=False: the same step and losses, without the three extra reductions.
    quiet = sam(optax.sgd(0.1), 0.2, diagnostics=False)
    u_quiet, s_quiet = quiet.update(g, quiet.init(w), w, loss_fn=loss)
    np.testing.assert_array_equal(u_quiet, tx.update(g, tx.init(w), w, loss_fn=loss)[0])
    np.testing.assert_allclose(s_quiet.diagnostics.sharpness, d.sharpness, rtol=1e-7)
    assert s_quiet.diagnostics.cosine == 0 and s_quiet.diagnostics.grad_norm == 0


def test_looksam_skips_the_second_gradient_off_period():
    calls = []
    x, y = make_data()

    def loss_fn(p):
        jax.debug.callback(lambda: calls.append(1))
        return logistic_loss(p, (x, y))

    tx = sam(optax.sgd(LR), RHO, combination="looksam", k=3)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(logistic_loss)(params, (x, y))
        updates, state = tx.update(grads, state, params, loss_fn=loss_fn, value=loss)
        return optax.apply_updates(params, updates), state

    params, state = init_params(), tx.init(init_params())
    diagnostics = []
    for _ in range(7):
        params, state = step(params, state)
        diagnostics.append(jax.device_get(state.diagnostics))
    jax.effects_barrier()
    assert len(calls) == 3  # refreshes at steps 0, 3, 6
    sharpness = [d.sharpness for d in diagnostics]
    assert sharpness[0] == sharpness[1] == sharpness[2] != sharpness[3] == sharpness[4]
    for d in diagnostics:  # off-period: the last sharpness on top of the current clean loss
        np.testing.assert_allclose(d.perturbed_loss, d.loss + d.sharpness, rtol=1e-6)
    assert len({float(d.loss) for d in diagnostics}) == 7


def test_weight_decay_outside_the_perturbation():
    """L2 kept out of the loss and added by the inner optimizer: the ascent ignores it."""

    def loss_without_l2(params, batch):
        return logistic_loss(params, batch) - 0.5 * L2 * sum(
            jnp.sum(p**2) for p in jax.tree.leaves(params)
        )

    tx = sam(sgdw(LR, MOMENTUM, weight_decay=L2, weight_decay_mode="l2"), RHO)

    def step(params, state, x, y):
        def loss_fn(p):
            return loss_without_l2(p, (x, y))

        grads = jax.grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, loss_fn=loss_fn)
        return optax.apply_updates(params, updates), state

    got, _ = run(tx, step=jax.jit(step))

    def no_l2(theta, x, y):
        loss, g = np_loss_grad(theta, x, y)
        return loss - 0.5 * L2 * theta @ theta, g - L2 * theta

    want = reference(flat(init_params()), one_shard(), l2_outside=L2, loss_grad=no_l2)
    inside = reference(flat(init_params()), one_shard())
    assert_close(got, want)
    assert np.max(np.abs(want[-1] - inside[-1])) > 1e-4


def test_has_aux_is_discarded():
    def loss_with_aux(params):
        return logistic_loss(params, make_data()), {"logits": params["w"]}

    tx = sam(optax.sgd(LR), RHO, has_aux=True)
    params = init_params()
    grads = jax.grad(logistic_loss)(params, make_data())
    got, _ = tx.update(grads, tx.init(params), params, loss_fn=loss_with_aux)
    plain = sam(optax.sgd(LR), RHO)
    want, _ = plain.update(
        grads, plain.init(params), params, loss_fn=lambda p: logistic_loss(p, make_data())
    )
    np.testing.assert_array_equal(flat(got), flat(want))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rho": -0.05}, "rho=-0.05"),
        ({"k": 0}, "k=0"),
        ({"k": 2.5}, "k=2.5"),
        ({"perturbation": "gam"}, "perturbation='gam'"),
        ({"combination": "esam"}, "combination='esam'"),
        ({"inner_value": "mean"}, "inner_value='mean'"),
        ({"alpha": -1.0}, "alpha=-1.0"),
        ({"lam": 1.0}, "lam=1.0"),
        ({"sigma": -1.0}, "sigma=-1.0"),
        ({"eta": -0.1}, "eta=-0.1"),
        ({"eps": 0.0}, "eps=0.0"),
        ({"sync_perturbation": True}, "axis_name=None"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("(", r"\(")):
        sam(optax.sgd(0.1), **kwargs)


def test_bad_inner_and_missing_loss_fn():
    with pytest.raises(TypeError, match="inner"):
        sam(optax.sgd)
    tx = sam(optax.sgd(0.1))
    params = init_params()
    with pytest.raises(ValueError, match="loss_fn"):
        tx.update(params, tx.init(params), params)


@pytest.mark.parametrize("perturbation", ["asam", "layerwise"])
def test_perturbation_norm_diagnostic_of_the_other_rules(perturbation):
    """‖ε‖ as reported equals the norm of the NumPy ε of the rule (SAM's is ρ, tested above)."""
    a = jnp.asarray([3.0, 1.0, 0.5])
    w = jnp.asarray([1.0, -2.0, 0.25])
    rho, eta = 0.3, 0.01

    def loss(p):
        return 0.5 * jnp.sum(a * p**2)

    tx = sam(optax.sgd(0.1), rho, perturbation=perturbation)
    _, state = tx.update(jax.grad(loss)(w), tx.init(w), w, loss_fn=loss)
    g, wn = np.asarray(a * w, np.float64), np.asarray(w, np.float64)
    if perturbation == "asam":
        t = np.abs(wn) + eta
        e = rho * t**2 * g / np.linalg.norm(t * g)
    else:
        e = rho * np.linalg.norm(wn) * g / np.linalg.norm(g)
    np.testing.assert_allclose(state.diagnostics.perturbation_norm, np.linalg.norm(e), rtol=1e-6)
