"""The contract every jaxlab transform keeps, run over one table of transforms.

For each: unknown extra keywords are accepted; the update traces once; ``init`` runs on
``jax.ShapeDtypeStruct``; float32 and bfloat16 parameters keep their dtype; it composes with
``optax.chain``, ``optax.masked``, ``optax.inject_hyperparams`` and ``optax.MultiSteps``; it
converges on a quadratic and on Rosenbrock inside ``lax.scan``; out-of-range hyperparameters raise
``ValueError`` naming the value when the transform is built.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import optim


def no_extra(params, grads, loss):
    del params, grads, loss
    return {}


def loss_value(params, grads, loss):
    del params, grads
    return {"value": loss}


def half_grads(name):
    """A second gradient (auxiliary / distillation loss) with the same minimiser: g/2."""

    def extra(params, grads, loss):
        del params, loss
        return {name: jax.tree.map(lambda g: g / 2, grads)}

    return extra


def sam_extra(params, grads, loss):
    """SAM's extra args: the loss function of the current batch and the clean loss."""
    del grads
    return {"loss_fn": rosenbrock if "xy" in params else quadratic_loss, "value": loss}


def sam_sgd(learning_rate, rho=0.01, perturbation="sam", combination="sam", alpha=None, k=5):
    """SAM around momentum SGD (explicit keywords: ``inject_hyperparams`` needs them)."""
    return optim.sam(
        optax.sgd(learning_rate, momentum=0.9),
        rho,
        perturbation=perturbation,
        combination=combination,
        alpha=alpha,
        k=k,
    )


def sam_momo(learning_rate=1.0, rho=0.01):
    return optim.sam(optim.momo(learning_rate), rho)


def perp_grad_sgd(learning_rate, eps=1e-30):
    """⊥Grad before momentum SGD, as the paper uses it."""
    return optax.chain(optim.scale_by_perp_grad(eps=eps), optax.sgd(learning_rate, momentum=0.9))


def bloop_sgd(learning_rate, aux_weight=0.5):
    return optax.chain(optim.bloop(aux_weight), optax.sgd(learning_rate, momentum=0.9))


@dataclasses.dataclass(frozen=True)
class Spec:
    """A transform under test: ``factory(**kwargs)``, the extra args its update needs, and the
    learning rates, steps and tolerances at which it must converge (``None``: not a minimiser)."""

    name: str
    factory: Callable[..., optax.GradientTransformation]
    kwargs: dict[str, Any]
    extra: Callable = no_extra
    bad: tuple[tuple[dict[str, Any], str], ...] = ()
    quadratic: dict[str, Any] | None = None
    rosenbrock: dict[str, Any] | None = None

    def make(self, **override):
        return self.factory(**{**self.kwargs, **override})


SPECS = [
    Spec(
        "sgdw_coupled",
        optim.sgdw,
        {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-6},
        bad=(({"momentum": 1.0}, "momentum"), ({"weight_decay": -1e-3}, "weight_decay")),
        quadratic={"learning_rate": 0.05},
        rosenbrock={"learning_rate": 1e-3},
    ),
    Spec(
        "sgdw_l2",
        optim.sgdw,
        {"learning_rate": 0.05, "weight_decay": 1e-6, "weight_decay_mode": "l2"},
        bad=(({"weight_decay_mode": "L2"}, "mode"),),
        quadratic={"learning_rate": 0.05},
        rosenbrock={"learning_rate": 1e-3},
    ),
    Spec(
        "adamw_coupled",
        optim.adamw,
        {"learning_rate": 0.05, "weight_decay": 1e-6},
        bad=(({"b2": 1.5}, "b2"), ({"learning_rate": -1.0}, "learning_rate")),
        quadratic={"learning_rate": 0.05},
        rosenbrock={"learning_rate": 0.02},
    ),
    Spec(
        "adamw_independent",
        optim.adamw,
        {"learning_rate": 0.05, "weight_decay": 1e-6, "weight_decay_mode": "independent"},
        bad=(({"peak_learning_rate": 0.0}, "peak_learning_rate"),),
        quadratic={"learning_rate": 0.05},
        rosenbrock={"learning_rate": 0.02},
    ),
    Spec(
        "momo",
        optim.momo,
        {"learning_rate": 1.0, "weight_decay": 1e-6},
        extra=loss_value,
        bad=(({"beta": 1.0}, "beta"), ({"learning_rate": 0.0}, "learning_rate")),
        quadratic={},
        rosenbrock={"learning_rate": 0.5},
    ),
    Spec(
        "momo_star",
        optim.momo,
        {"learning_rate": 1.0, "adapt_lower_bound": True, "bias_correction": True},
        extra=loss_value,
        bad=(({"weight_decay": -1.0}, "weight_decay"),),
        quadratic={},
        rosenbrock={"learning_rate": 0.5},
    ),
    Spec(
        "momo_adam",
        optim.momo_adam,
        {"learning_rate": 0.05, "weight_decay": 1e-6},
        extra=loss_value,
        bad=(({"b2": 1.0}, "b2"), ({"eps": -1.0}, "eps")),
        quadratic={},
        rosenbrock={"learning_rate": 0.02},
    ),
    Spec(
        "momo_adam_no_divide",
        optim.momo_adam,
        {"learning_rate": 0.05, "weight_decay": 1e-3, "divide": False},
        extra=loss_value,
        quadratic={},
        rosenbrock={"learning_rate": 0.02},
    ),
    Spec(
        "sam",
        sam_sgd,
        {"learning_rate": 0.01, "rho": 0.01},
        extra=sam_extra,
        bad=(({"rho": -0.1}, "rho"), ({"perturbation": "bogus"}, "perturbation")),
        quadratic={},
        rosenbrock={"learning_rate": 1e-3, "rho": 1e-3},
    ),
    Spec(
        "asam",
        sam_sgd,
        {"learning_rate": 0.01, "rho": 0.01, "perturbation": "asam"},
        extra=sam_extra,
        quadratic={},
        rosenbrock={"learning_rate": 1e-3, "rho": 1e-3},
    ),
    Spec(
        "fsam",
        sam_sgd,
        {"learning_rate": 0.01, "rho": 0.01, "perturbation": "fsam"},
        extra=sam_extra,
        quadratic={},
        rosenbrock={"learning_rate": 1e-3, "rho": 1e-3},
    ),
    Spec(
        "layerwise_sam",
        sam_sgd,
        {"learning_rate": 0.01, "rho": 0.01, "perturbation": "layerwise"},
        extra=sam_extra,
        quadratic={},
        rosenbrock={"learning_rate": 1e-3, "rho": 1e-3},
    ),
    Spec(
        "gsam",
        sam_sgd,
        {"learning_rate": 0.01, "rho": 0.01, "combination": "gsam", "alpha": 0.1},
        extra=sam_extra,
        bad=(({"alpha": -0.1}, "alpha"),),
        quadratic={},
        rosenbrock={"learning_rate": 1e-3, "rho": 1e-3},
    ),
    Spec(
        "looksam",
        sam_sgd,
        {"learning_rate": 0.01, "rho": 0.01, "combination": "looksam", "k": 3, "alpha": 0.3},
        extra=sam_extra,
        bad=(({"k": 0}, "k"),),
        quadratic={},
        rosenbrock={"learning_rate": 1e-3, "rho": 1e-4, "alpha": 0.1, "k": 2},
    ),
    Spec(
        "sam_momo",
        sam_momo,
        {"learning_rate": 1.0, "rho": 0.01},
        extra=sam_extra,
        quadratic={},
        rosenbrock={"learning_rate": 0.5, "rho": 1e-4},
    ),
    Spec(
        "perp_grad_sgd",
        perp_grad_sgd,
        {"learning_rate": 0.01},
        bad=(({"eps": 0.0}, "eps"),),
        # ⊥Grad keeps ‖θ‖ from shrinking, so it is not a minimiser of these losses.
    ),
    Spec(
        "bloop",
        bloop_sgd,
        {"learning_rate": 0.01},
        extra=half_grads("aux_grads"),
        bad=(({"aux_weight": -1.0}, "aux_weight"),),
        quadratic={},
        rosenbrock={"learning_rate": 5e-4},
    ),
    Spec(
        "grams",
        optim.grams,
        {"learning_rate": 0.05, "weight_decay": 1e-6},
        bad=(({"b1": -0.1}, "b1"),),
        quadratic={},
        rosenbrock={"learning_rate": 0.02},
    ),
    Spec(
        "gravity",
        optim.gravity,
        {"learning_rate": 0.05},
        bad=(({"alpha": -1.0}, "alpha"), ({"beta": 1.0}, "beta")),
        # Its step is ≈ g/(1 + g² max|g|²): with gradients up to 40 on the quadratic it barely
        # moves in 1000 steps; Rosenbrock (gradients ≈ 4 at the start) checks convergence.
        rosenbrock={"learning_rate": 0.02},
    ),
    Spec(
        "dot_sgd",
        optim.dot_sgd,
        {"learning_rate": 0.01, "weight_decay": 1e-6},
        extra=half_grads("kd_grads"),
        bad=(({"delta": 0.2}, "delta"),),
        quadratic={},
        rosenbrock={"learning_rate": 5e-4},
    ),
    Spec(
        "induced_metric_sgd",
        optim.induced_metric_sgd,
        {"learning_rate": 0.05},
        bad=(({"xi": -1.0}, "xi"),),
        quadratic={},
        rosenbrock={"learning_rate": 0.01},
    ),
]

IDS = [s.name for s in SPECS]


def make_params(dtype=jnp.float32):
    return {
        "w": jnp.asarray([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]], dtype),
        "b": jnp.asarray([0.1, -0.2, 0.3], dtype),
    }


def quadratic_loss(params):
    """Σ c_i θ_i² with curvatures c_i spread over [1, 10] in every leaf."""
    return sum(
        jnp.sum(jnp.linspace(1.0, 10.0, p.size).reshape(p.shape) * p.astype(jnp.float32) ** 2)
        for p in jax.tree.leaves(params)
    )


def one_update(tx, spec, params, state=None, **extra):
    loss, grads = jax.value_and_grad(quadratic_loss)(params)
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    state = tx.init(params) if state is None else state
    return tx.update(grads, state, params, **spec.extra(params, grads, loss), **extra)


def trajectory(tx, spec, params, steps=3):
    out = []
    state = tx.init(params)
    for _ in range(steps):
        updates, state = one_update(tx, spec, params, state)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(
            np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=atol
        )


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_accepts_unknown_extra_keyword(spec):
    tx = optax.with_extra_args_support(spec.make())
    updates, _ = one_update(tx, spec, make_params(), some_other_links_arg=1.0)
    assert jax.tree.structure(updates) == jax.tree.structure(make_params())


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_traces_once(spec):
    tx = optax.with_extra_args_support(spec.make())
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        updates, state = one_update(tx, spec, params, state)
        return optax.apply_updates(params, updates), state

    params = make_params()
    state = tx.init(params)
    for _ in range(3):
        params, state = step(params, state)
    assert len(traces) == 1


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_init_on_shape_dtype_struct(spec):
    tx = spec.make()
    params = make_params()
    abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    got = jax.eval_shape(tx.init, abstract)
    want = jax.eval_shape(tx.init, params)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(got)] == [
        (x.shape, x.dtype) for x in jax.tree.leaves(want)
    ]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_dtype_preserved_and_finite(spec, dtype):
    tx = optax.with_extra_args_support(spec.make())
    params = make_params(dtype)
    for params_after in trajectory(tx, spec, params):
        for p in jax.tree.leaves(params_after):
            assert p.dtype == dtype
            assert bool(jnp.all(jnp.isfinite(p)))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_inside_chain_and_inject_hyperparams(spec):
    plain = trajectory(optax.with_extra_args_support(spec.make()), spec, make_params())
    chained = trajectory(optax.chain(spec.make(), optax.scale(1.0)), spec, make_params())
    injected = trajectory(
        optax.inject_hyperparams(spec.factory)(**spec.kwargs), spec, make_params()
    )
    assert_trees_close(chained, plain)
    assert_trees_close(injected, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_inside_masked_acts_on_the_selected_leaves_only(spec):
    params = make_params()
    masked = optax.masked(spec.make(), {"w": True, "b": False}, mask_compatible_extra_args=True)
    updates, _ = one_update(masked, spec, params)
    grads = jax.grad(quadratic_loss)(params)
    np.testing.assert_array_equal(updates["b"], grads["b"])  # passed through untouched

    sub_spec = dataclasses.replace(spec)
    sub_params = {"w": params["w"]}
    sub_tx = optax.with_extra_args_support(spec.make())
    sub_grads = {"w": grads["w"]}
    loss = quadratic_loss(params)
    sub_updates, _ = sub_tx.update(
        sub_grads,
        sub_tx.init(sub_params),
        sub_params,
        **sub_spec.extra(sub_params, sub_grads, loss),
    )
    np.testing.assert_allclose(updates["w"], sub_updates["w"], rtol=1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_inside_multi_steps_averages_gradients(spec):
    """Two MultiSteps calls with gradients g1, g2 equal one call with (g1 + g2)/2.

    MultiSteps passes the extra args of the last call on (it does not average them).
    """
    params = make_params()
    g1 = jax.grad(quadratic_loss)(params)
    g2 = jax.tree.map(lambda g: 0.5 - g, g1)
    loss = quadratic_loss(params)
    multi = optax.MultiSteps(spec.make(), every_k_schedule=2)
    state = multi.init(params)
    for g in (g1, g2):
        updates, state = multi.update(g, state, params, **spec.extra(params, g, loss))
    tx = optax.with_extra_args_support(spec.make())
    mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
    want, _ = tx.update(mean, tx.init(params), params, **spec.extra(params, g2, loss))
    assert_trees_close(updates, want, rtol=1e-5)


def rosenbrock(params):
    x, y = params["xy"][0], params["xy"][1]
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def minimise(spec, loss_fn, params, *, steps, **override):
    tx = optax.with_extra_args_support(spec.make(**override))

    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, **spec.extra(params, grads, loss))
        return (optax.apply_updates(params, updates), state), loss

    (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), length=steps))(params)
    return float(loss_fn(params))


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.quadratic is not None], ids=lambda s: s.name
)
def test_converges_on_quadratic(spec):
    start = quadratic_loss(make_params())
    assert (
        minimise(spec, quadratic_loss, make_params(), steps=1000, **spec.quadratic) < 1e-4 * start
    )


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.rosenbrock is not None], ids=lambda s: s.name
)
def test_converges_on_rosenbrock(spec):
    params = {"xy": jnp.asarray([-1.0, 1.0])}
    assert minimise(spec, rosenbrock, params, steps=5000, **spec.rosenbrock) < 1e-3


@pytest.mark.parametrize(
    ("spec", "bad", "name"),
    [(s, bad, name) for s in SPECS for bad, name in s.bad],
    ids=lambda x: x.name if isinstance(x, Spec) else None,
)
def test_out_of_range_hyperparameter_raises_at_construction(spec, bad, name):
    with pytest.raises(ValueError, match=name):
        spec.make(**bad)
