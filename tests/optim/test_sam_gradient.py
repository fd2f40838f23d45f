"""sam_value_and_grad against closed forms and a NumPy transcription of google-research/sam.

The reference (``google_sam_reference``) is ``flax_training.train_step`` of google-research/sam in
float64 with analytic logistic-regression gradients: per shard ε_i = ρ g_i/(‖g_i‖ + 1e-12) (or
one ε from the averaged gradient with ``--sync_perturbations``), the gradient at w + ε_i on the
same shard, averaged over shards, then Nesterov momentum SGD. L2 is in the loss, as there.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.optim.sam_gradient import sam_value_and_grad

N_DEV, PER_DEV, DIM = 4, 4, 3
L2, LR, MOMENTUM = 1e-2, 0.5, 0.9


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_DEV * PER_DEV, DIM)).astype(np.float32)
    y = np.where(rng.normal(size=N_DEV * PER_DEV) > 0, 1.0, -1.0).astype(np.float32)
    return x, y


def init_params():
    return {"b": jnp.asarray(0.3), "w": jnp.asarray([0.5, -1.0, 0.8])}


def logistic_loss(params, batch):
    """Mean logistic loss of a linear model plus ½λ‖θ‖² (L2 inside, as google-research/sam)."""
    x, y = batch
    z = x @ params["w"] + params["b"]
    l2 = sum(jnp.sum(p**2) for p in jax.tree.leaves(params))
    return jnp.mean(jax.nn.softplus(-y * z)) + 0.5 * L2 * l2


# NumPy, float64, θ = [b, w] (the leaf order of the params dict).
def np_loss_grad(theta, x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    z = x @ theta[1:] + theta[0]
    loss = np.mean(np.logaddexp(0.0, -y * z)) + 0.5 * L2 * theta @ theta
    s = -y / (1.0 + np.exp(y * z)) / len(y)  # d mean softplus(−yz) / dz
    return loss, np.concatenate([[s.sum()], x.T @ s]) + L2 * theta


def flat(params):
    return np.concatenate([np.ravel(np.asarray(p, np.float64)) for p in jax.tree.leaves(params)])


def shards(x, y, n):
    return list(zip(np.split(x, n), np.split(y, n), strict=True))


def google_sam_reference(theta, data, *, rho, sync, steps, lr=LR, momentum=MOMENTUM):
    """google-research/sam train_step over shards ``data``; returns θ after each step."""
    trace, out = np.zeros_like(theta), []
    for _ in range(steps):
        grads = [np_loss_grad(theta, x, y)[1] for x, y in data]
        if sync:
            grads = [np.mean(grads, axis=0)] * len(data)
        perturbed = [
            np_loss_grad(theta + rho * g / (np.linalg.norm(g) + 1e-12), x, y)[1]
            for g, (x, y) in zip(grads, data, strict=True)
        ]
        g_sam = np.mean(perturbed, axis=0)
        trace = g_sam + momentum * trace  # optax.sgd(nesterov=True) = flax Momentum(nesterov)
        theta = theta - lr * (g_sam + momentum * trace)
        out.append(theta)
    return out


def sgd():
    return optax.sgd(LR, momentum=MOMENTUM, nesterov=True)


def make_step(grad_fn, axis_name=None):
    tx = sgd()

    def step(params, opt_state, x, y):
        _, grads = grad_fn(params, (x, y))
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step, tx


def run(step, tx, x, y, steps):
    params = init_params()
    opt_state = tx.init(params)
    out = []
    for _ in range(steps):
        params, opt_state = step(params, opt_state, x, y)
        out.append(flat(params))
    return out


def make_mesh():
    return jax.make_mesh(
        (N_DEV,), ("i",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:N_DEV]
    )


def assert_trajectories_close(got, want, rtol=2e-5, atol=1e-6):
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


STEPS, RHO = 6, 0.3


@pytest.mark.parametrize("sync", [False, True], ids=["per_device", "synced"])
@pytest.mark.parametrize("mapping", ["pmap", "shard_map"])
def test_multi_device_equals_google_research_sam(mapping, sync):
    x, y = make_data()
    grad_fn = sam_value_and_grad(logistic_loss, RHO, sync_axis_name="i" if sync else None)
    step, tx = make_step(grad_fn, axis_name="i")
    devices = jax.devices()[:N_DEV]
    if mapping == "pmap":
        mapped = jax.pmap(step, "i", in_axes=(None, None, 0, 0), out_axes=None, devices=devices)
        x, y = x.reshape(N_DEV, PER_DEV, DIM), y.reshape(N_DEV, PER_DEV)
    else:
        mesh = make_mesh()
        mapped = jax.jit(
            jax.shard_map(
                step,
                mesh=mesh,
                in_specs=(P(), P(), P("i"), P("i")),
                out_specs=(P(), P()),
                check_vma=False,
            )
        )
        x, y = jax.device_put((x, y), NamedSharding(mesh, P("i")))
    got = run(mapped, tx, x, y, STEPS)
    want = google_sam_reference(
        flat(init_params()), shards(*make_data(), N_DEV), rho=RHO, sync=sync, steps=STEPS
    )
    assert_trajectories_close(got, want)
    if not sync:  # the two semantics really differ on this problem
        other = google_sam_reference(
            flat(init_params()), shards(*make_data(), N_DEV), rho=RHO, sync=True, steps=STEPS
        )
        assert np.max(np.abs(got[-1] - other[-1])) > 1e-3


def test_check_vma_with_pcast_gives_local_gradients():
    """Under check_vma=True, pcast(params, to='varying') restores per-device SAM."""
    x, y = make_data()
    mesh = make_mesh()
    grad_fn = sam_value_and_grad(logistic_loss, RHO)
    tx = sgd()

    def step(params, opt_state, x, y):
        local = jax.lax.pcast(params, "i", to="varying")
        _, grads = grad_fn(local, (x, y))
        updates, opt_state = tx.update(jax.lax.pmean(grads, "i"), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    mapped = jax.jit(
        jax.shard_map(step, mesh=mesh, in_specs=(P(), P(), P("i"), P("i")), out_specs=(P(), P()))
    )
    x, y = jax.device_put((x, y), NamedSharding(mesh, P("i")))
    got = run(mapped, tx, x, y, 3)
    want = google_sam_reference(
        flat(init_params()), shards(*make_data(), N_DEV), rho=RHO, sync=False, steps=3
    )
    assert_trajectories_close(got, want)


def test_one_device_with_the_whole_batch_equals_the_synced_variant():
    x, y = make_data()
    step, tx = make_step(sam_value_and_grad(logistic_loss, RHO))
    got = run(jax.jit(step), tx, x, y, STEPS)
    synced = google_sam_reference(
        flat(init_params()), shards(x, y, N_DEV), rho=RHO, sync=True, steps=STEPS
    )
    whole = google_sam_reference(
        flat(init_params()), shards(x, y, 1), rho=RHO, sync=True, steps=STEPS
    )
    assert_trajectories_close(got, synced)
    assert_trajectories_close(got, whole)


@pytest.mark.parametrize("group_size", [2, 4])
def test_group_size_equals_per_group_reference(group_size):
    """Micro-groups of m on one device equal per-device SAM on B/m devices of m examples."""
    x, y = make_data()
    step, tx = make_step(sam_value_and_grad(logistic_loss, RHO, group_size=group_size))
    got = run(jax.jit(step), tx, x, y, STEPS)
    n_groups = len(y) // group_size
    want = google_sam_reference(
        flat(init_params()), shards(x, y, n_groups), rho=RHO, sync=False, steps=STEPS
    )
    assert_trajectories_close(got, want)


def test_group_size_value_is_the_batch_mean_and_aux_is_stacked():
    x, y = make_data()

    def loss_with_aux(params, batch):
        return logistic_loss(params, batch), {"n": jnp.asarray(batch[1].shape[0])}

    fn = sam_value_and_grad(loss_with_aux, RHO, has_aux=True, group_size=4)
    (value, aux), _ = fn(init_params(), (x, y))
    np.testing.assert_allclose(value, logistic_loss(init_params(), (x, y)), rtol=1e-6)
    np.testing.assert_array_equal(aux["n"], [4, 4, 4, 4])


def test_closed_form_on_a_quadratic():
    """L = ½ wᵀAw: g = Aw, ε = ρg/‖g‖, returned gradient A(w + ε), value L(w)."""
    a = jnp.asarray([[3.0, 1.0], [1.0, 2.0]])
    w = jnp.asarray([1.0, -2.0])
    value, grads = sam_value_and_grad(lambda w: 0.5 * w @ a @ w, rho=0.1)(w)
    g = np.asarray(a) @ np.asarray(w)
    want = np.asarray(a) @ (np.asarray(w) + 0.1 * g / np.linalg.norm(g))
    np.testing.assert_allclose(grads, want, rtol=1e-6)
    np.testing.assert_allclose(value, 0.5 * w @ a @ w, rtol=1e-7)


def test_asam_equals_the_official_ascent_step():
    """SamsungLabs/ASAM ascent_step: T = |w| + η on 'weight' leaves only (the mask), T = 1 on the
    bias; ε = ρ T(T g)/‖T g‖."""
    x, y = make_data()
    params = init_params()
    rho, eta = 0.5, 0.01
    mask = {"b": False, "w": True}
    fn = sam_value_and_grad(logistic_loss, rho, adaptive=True, eta=eta, adaptive_mask=mask)
    _, grads = fn(params, (x, y))
    theta = flat(params)
    g = np_loss_grad(theta, x, y)[1]
    t = np.concatenate([[1.0], np.abs(theta[1:]) + eta])
    eps = rho * t * (t * g) / (np.linalg.norm(t * g) + 1e-12)
    np.testing.assert_allclose(flat(grads), np_loss_grad(theta + eps, x, y)[1], rtol=1e-5)
    # with every leaf scaled the bias moves too, so the gradient differs
    _, all_scaled = sam_value_and_grad(logistic_loss, rho, adaptive=True, eta=eta)(params, (x, y))
    assert np.max(np.abs(flat(all_scaled) - flat(grads))) > 1e-4


def test_aux_and_value_come_from_the_clean_pass():
    def loss_with_aux(params, batch):
        return logistic_loss(params, batch), params["w"]

    params = init_params()
    (value, aux), grads = sam_value_and_grad(loss_with_aux, RHO, has_aux=True)(params, make_data())
    _, plain = sam_value_and_grad(logistic_loss, RHO)(params, make_data())
    np.testing.assert_array_equal(aux, params["w"])
    np.testing.assert_array_equal(value, logistic_loss(params, make_data()))
    np.testing.assert_array_equal(flat(grads), flat(plain))


def test_both_passes_see_the_same_dropout_mask():
    x, y = make_data()

    def dropout_loss(params, batch, key):
        x, y = batch
        keep = jax.random.bernoulli(key, 0.5, x.shape)
        return logistic_loss(params, (jnp.where(keep, x, 0.0), y))

    key = jax.random.key(3)
    _, grads = sam_value_and_grad(dropout_loss, RHO)(init_params(), (x, y), key)
    x_dropped = np.where(jax.random.bernoulli(key, 0.5, x.shape), x, 0.0)
    theta = flat(init_params())
    g = np_loss_grad(theta, x_dropped, y)[1]
    want = np_loss_grad(theta + RHO * g / np.linalg.norm(g), x_dropped, y)[1]
    np.testing.assert_allclose(flat(grads), want, rtol=1e-5)


def test_tuple_argnums_perturb_jointly():
    def split_loss(w, b, batch):
        return logistic_loss({"b": b, "w": w}, batch)

    params = init_params()
    value, (gw, gb) = sam_value_and_grad(split_loss, RHO, argnums=(0, 1))(
        params["w"], params["b"], make_data()
    )
    want_value, want = sam_value_and_grad(logistic_loss, RHO)(params, make_data())
    np.testing.assert_allclose(value, want_value, rtol=1e-7)
    np.testing.assert_allclose(gw, want["w"], rtol=1e-6)
    np.testing.assert_allclose(gb, want["b"], rtol=1e-6)


@pytest.mark.parametrize("adaptive", [False, True])
def test_zero_gradient_is_finite(adaptive):
    center = jnp.asarray([1.0, -2.0, 0.0])
    fn = sam_value_and_grad(lambda w: jnp.sum((w - center) ** 2), RHO, adaptive=adaptive)
    value, grads = fn(center)
    np.testing.assert_array_equal(grads, jnp.zeros(3))
    assert float(value) == 0.0


def test_bfloat16_params_keep_their_dtype():
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), init_params())
    value, grads = jax.jit(sam_value_and_grad(logistic_loss, RHO))(params, make_data())
    assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))
    assert bool(jnp.isfinite(value)) and all(
        bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)
    )
    want = sam_value_and_grad(logistic_loss, RHO)(init_params(), make_data())[1]
    np.testing.assert_allclose(flat(grads), flat(want), rtol=3e-2, atol=3e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"rho": -0.1}, ValueError, "rho"),
        ({"eta": -1.0}, ValueError, "eta"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"group_size": 0}, ValueError, "group_size"),
        ({"group_size": 2, "sync_axis_name": "i"}, ValueError, "sync_axis_name"),
        ({"group_size": 2, "batch_argnum": 0}, ValueError, "batch_argnum"),
        ({"argnums": "params"}, TypeError, "argnums"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, error, name):
    with pytest.raises(error, match=name):
        sam_value_and_grad(logistic_loss, **kwargs)


def test_batch_not_divisible_by_group_size_raises():
    fn = sam_value_and_grad(logistic_loss, RHO, group_size=5)
    with pytest.raises(ValueError, match="group_size=5"):
        fn(init_params(), make_data())
