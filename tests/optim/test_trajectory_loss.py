"""SAF / MESA trajectory losses and the SAF logit memory against NumPy, SciPy and a dict replay."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.optim.averaging import ema_params_init, ema_params_update
from jaxlab.optim.trajectory_loss import (
    mesa_loss,
    saf_loss,
    saf_memory_init,
    saf_memory_update,
)

RNG = np.random.default_rng(0)
N_DEV = 8


def np_saf(z, z_past, tau):
    """τ² KL(softmax(z_past/τ) ‖ softmax(z/τ)) per row, as the official F.kl_div(...).sum(-1)."""
    q = scipy.special.softmax(z_past / tau, axis=-1)
    log_p = scipy.special.log_softmax(z / tau, axis=-1)
    return tau**2 * np.sum(q * (np.log(q) - log_p), axis=-1)


# ---------------------------------------------------------------------------------------------
# The loss.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 5.0])
def test_saf_loss_matches_numpy_and_scipy(tau):
    z, z_past = RNG.normal(size=(2, 6, 4)) * 3
    got = saf_loss(jnp.asarray(z, jnp.float32), jnp.asarray(z_past, jnp.float32), temperature=tau)
    assert got.shape == (6,) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, np_saf(z, z_past, tau), rtol=1e-4, atol=1e-6)
    p = scipy.special.softmax(z / tau, axis=-1)
    q = scipy.special.softmax(z_past / tau, axis=-1)
    np.testing.assert_allclose(got, tau**2 * scipy.stats.entropy(q, p, axis=-1), rtol=1e-4)
    reverse = tau**2 * scipy.stats.entropy(p, q, axis=-1)  # the other direction differs
    assert not np.allclose(got, reverse, rtol=1e-2)


@pytest.mark.parametrize("tau", [1.0, 5.0])
def test_gradient_flows_only_to_current_logits(tau):
    z, z_past = (jnp.asarray(a, jnp.float32) for a in RNG.normal(size=(2, 5, 3)) * 2)
    dz, dpast = jax.grad(lambda a, b: jnp.sum(saf_loss(a, b, temperature=tau)), (0, 1))(z, z_past)
    p = scipy.special.softmax(np.asarray(z, np.float64) / tau, axis=-1)
    q = scipy.special.softmax(np.asarray(z_past, np.float64) / tau, axis=-1)
    np.testing.assert_allclose(dz, tau * (p - q), rtol=1e-4, atol=1e-6)  # ∂ℓ/∂z = τ(p − q)
    np.testing.assert_array_equal(dpast, 0.0)


def test_zero_when_logits_equal_including_huge_and_bf16():
    for z in (RNG.normal(size=(4, 5)), np.array([[1e30, 0.0, -1e30], [3e38, -3e38, 0.0]])):
        z = jnp.asarray(z, jnp.float32)
        np.testing.assert_array_equal(saf_loss(z, z), 0.0)
        grad = jax.grad(lambda a, z=z: jnp.sum(saf_loss(a, z)))(z)  # τ(p − q), rounding only
        np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    zb = jnp.asarray(RNG.normal(size=(3, 4)), jnp.bfloat16)
    out = saf_loss(zb, zb)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)


def test_huge_and_infinite_logits_stay_finite():
    z = jnp.array([[1e30, 0.0, -1e30], [0.0, 1.0, 2.0]], jnp.float32)
    z_past = jnp.array([[0.0, 1e30, 0.0], [-jnp.inf, 1.0, 2.0]], jnp.float32)
    val, grad = jax.value_and_grad(lambda a: jnp.sum(saf_loss(a, z_past, temperature=1.0)))(z)
    assert bool(jnp.isfinite(val)) and bool(jnp.all(jnp.isfinite(grad)))
    # Row 2: q puts no mass on class 0, so the loss is the KL over the classes it covers.
    q = scipy.special.softmax([1.0, 2.0])
    log_p = scipy.special.log_softmax([0.0, 1.0, 2.0])[1:]
    row = saf_loss(z, z_past, temperature=1.0)[1]
    np.testing.assert_allclose(row, np.sum(q * (np.log(q) - log_p)), rtol=1e-5)


def test_where_masks_examples_and_equals_sliced():
    z, z_past = (jnp.asarray(a, jnp.float32) for a in RNG.normal(size=(2, 6, 4)))
    keep = jnp.array([True, False, True, True, False, True])
    masked = saf_loss(z, z_past, where=keep)
    np.testing.assert_array_equal(masked[~keep], 0.0)
    np.testing.assert_allclose(masked[keep], saf_loss(z[keep], z_past[keep]), rtol=1e-6)
    dz = jax.grad(lambda a: jnp.sum(saf_loss(a, z_past, where=keep)))(z)
    np.testing.assert_array_equal(dz[~keep], 0.0)
    assert np.all(np.abs(np.asarray(dz[keep])) > 0)


def test_temperature_must_be_positive():
    z = jnp.zeros((2, 3))
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            saf_loss(z, z, temperature=bad)


# ---------------------------------------------------------------------------------------------
# MESA and the cost: one backward pass, no gradient into the reference.
# ---------------------------------------------------------------------------------------------

MLP = {"w1": jnp.asarray(RNG.normal(size=(4, 5)), jnp.float32),
       "w2": jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32)}  # fmt: skip
XB = jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32)
YB = jnp.asarray(RNG.integers(0, 3, size=6))
IDX = jnp.arange(6)


def apply(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


def ce_loss(params):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(params, XB), YB))


def saf_step_loss(params, memory, epoch):
    logits = apply(params, XB)
    memory, past, valid = saf_memory_update(memory, IDX, logits, epoch)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, YB)
    return jnp.mean(ce + 0.3 * saf_loss(logits, past, where=valid)), memory


def mesa_step_loss(params, ema_params):
    logits = apply(params, XB)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, YB)
    return jnp.mean(ce + 0.8 * mesa_loss(logits, apply(ema_params, XB)))


def count_dots(jaxpr) -> int:
    """dot_general equations in a jaxpr, including nested ones."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == "dot_general"
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                if hasattr(sub, "eqns"):  # Jaxpr
                    n += count_dots(sub)
                elif hasattr(sub, "jaxpr") and hasattr(sub, "consts"):  # ClosedJaxpr
                    n += count_dots(sub.jaxpr)
    return n


def test_cost_saf_one_pass_and_mesa_one_extra_forward():
    base = count_dots(jax.make_jaxpr(jax.value_and_grad(ce_loss))(MLP).jaxpr)
    assert base == 5  # forward 2, backward 3 (no input gradient)
    memory = saf_memory_init(6, 3)
    saf = jax.make_jaxpr(jax.value_and_grad(saf_step_loss, has_aux=True))(MLP, memory, 4)
    assert count_dots(saf.jaxpr) == base
    mesa = jax.make_jaxpr(jax.value_and_grad(mesa_step_loss))(MLP, MLP)
    assert count_dots(mesa.jaxpr) == base + 2  # the EMA forward, never differentiated


def test_mesa_equals_saf_formula_and_blocks_ema_gradient():
    ema = ema_params_init(MLP)
    new = jax.tree.map(lambda w: w + 0.1, MLP)
    ema = ema_params_update(ema, new, decay=0.9)
    z, z_ema = apply(new, XB), apply(ema.ema, XB)
    np.testing.assert_allclose(
        mesa_loss(z, z_ema), np_saf(np.float64(z), np.float64(z_ema), 5.0), rtol=1e-4, atol=1e-5
    )
    d_ema = jax.grad(lambda p, e: jnp.sum(mesa_loss(apply(p, XB), apply(e, XB))), 1)(new, ema.ema)
    for leaf in jax.tree.leaves(d_ema):
        np.testing.assert_array_equal(leaf, 0.0)


# ---------------------------------------------------------------------------------------------
# The SAF memory.
# ---------------------------------------------------------------------------------------------


def _epoch_batches(rng, n, batch, epoch):
    """A shuffled epoch in batches padded with index n; odd epochs skip two examples."""
    order = rng.permutation(n)[: n - 2 if epoch % 2 else n]
    order = np.concatenate([order, np.full(-len(order) % batch, n)])
    return order.reshape(-1, batch)


@pytest.mark.parametrize("epochs_ago", [1, 3])
def test_memory_returns_logits_of_exactly_epochs_ago(epochs_ago):
    n, c, batch = 10, 3, 4
    rng = np.random.default_rng(epochs_ago)
    memory = saf_memory_init(n, c, epochs_ago=epochs_ago)
    assert memory.logits.shape == (epochs_ago + 1, n, c)
    update = jax.jit(lambda *args: saf_memory_update(*args))  # own cache per parameter
    record = {}  # (epoch, index) -> logits, the reference
    n_valid = 0
    for epoch in range(7):
        for idx in _epoch_batches(rng, n, batch, epoch):
            logits = rng.normal(size=(batch, c)).astype(np.float32)
            memory, past, valid = update(memory, jnp.asarray(idx), jnp.asarray(logits), epoch)
            for j, i in enumerate(idx):
                want = record.get((epoch - epochs_ago, i))
                assert bool(valid[j]) == (want is not None)
                if want is not None:
                    np.testing.assert_array_equal(past[j], want)
                    n_valid += 1
            record.update({(epoch, i): logits[j] for j, i in enumerate(idx) if i < n})
    assert n_valid > 20
    assert update._cache_size() == 1


def test_memory_bf16_storage_and_errors():
    memory = saf_memory_init(4, 2, dtype=jnp.bfloat16)
    logits = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    for epoch in range(3):
        memory, past, valid = saf_memory_update(memory, jnp.array([2, 0]), logits, epoch)
    assert past.dtype == jnp.bfloat16 and bool(jnp.all(valid))
    np.testing.assert_array_equal(past, logits)
    for kwargs, name in [
        ({"num_examples": 0, "num_classes": 3}, "num_examples"),
        ({"num_examples": 4, "num_classes": 2.0}, "num_classes"),
        ({"num_examples": 4, "num_classes": 3, "epochs_ago": 0}, "epochs_ago"),
    ]:
        with pytest.raises(ValueError, match=name):
            saf_memory_init(**kwargs)


def _parallel_run(step):
    """Three epochs of 16 examples on 8 devices (2 each); checks replicas against one device."""
    n, c = 16, 3
    rng = np.random.default_rng(7)
    memory = single = saf_memory_init(n, c, epochs_ago=1)
    for epoch in range(3):
        idx = rng.permutation(n)
        logits = rng.normal(size=(n, c)).astype(np.float32)
        stacked, past, valid = step(memory, idx.reshape(N_DEV, 2), logits.reshape(N_DEV, 2, c),
                                    jnp.int32(epoch))  # fmt: skip
        single, want_past, want_valid = saf_memory_update(single, idx, logits, epoch)
        for leaf, ref in zip(jax.tree.leaves(stacked), jax.tree.leaves(single), strict=True):
            np.testing.assert_array_equal(leaf, np.broadcast_to(ref, leaf.shape))
        np.testing.assert_array_equal(np.reshape(past, (n, c)), want_past)
        np.testing.assert_array_equal(np.reshape(valid, (n,)), want_valid)
        assert bool(np.all(want_valid)) == (epoch >= 1)
        memory = jax.tree.map(lambda a: np.asarray(a)[0], stacked)


def test_memory_all_gathers_under_pmap():
    def local(memory, idx, logits, epoch):
        return saf_memory_update(memory, idx, logits, epoch, axis_name="i")

    _parallel_run(jax.pmap(local, "i", in_axes=(None, 0, 0, None), devices=jax.devices()[:N_DEV]))


def test_memory_all_gathers_under_shard_map():
    mesh = jax.make_mesh((N_DEV,), ("i",), (AxisType.Explicit,), devices=jax.devices()[:N_DEV])

    def local(memory, idx, logits, epoch):
        memory, past, valid = saf_memory_update(memory, idx[0], logits[0], epoch, axis_name="i")
        return jax.tree.map(lambda a: a[None], (memory, past, valid))

    mapped = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("i"), P("i"), P()),
                                   out_specs=P("i"), check_vma=False))  # fmt: skip

    def step(memory, idx, logits, epoch):
        idx, logits = (jax.device_put(a, NamedSharding(mesh, P("i"))) for a in (idx, logits))
        return mapped(memory, idx, logits, epoch)

    _parallel_run(step)
