"""μP multipliers: the Tensor Programs V table, identity at base width, and a coordinate check."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.scaling import mup_learning_rate_scaling, mup_scales

BASE = 64


def _shapes(n, d_in=4, d_out=2):
    return {
        "w1": (d_in, n),
        "b1": (n,),
        "w2": (n, n),
        "w3": (n, d_out),
        "b3": (d_out,),
    }


def _zeros(shapes):
    return {k: jnp.zeros(v) for k, v in shapes.items()}


def test_table_adam_and_sgd():
    params, base = _zeros(_shapes(256)), _shapes(BASE)
    adam = mup_scales(params, base)
    assert adam.kind == {
        "w1": "input",
        "b1": "vector",
        "w2": "hidden",
        "w3": "output",
        "b3": "fixed",
    }
    assert adam.lr == {"w1": 1.0, "b1": 1.0, "w2": 0.25, "w3": 1.0, "b3": 1.0}
    assert adam.init_std == {"w1": 1.0, "b1": 1.0, "w2": 0.5, "w3": 1.0, "b3": 1.0}
    assert adam.output == {"w1": 1.0, "b1": 1.0, "w2": 1.0, "w3": 0.25, "b3": 1.0}
    sgd = mup_scales(params, base, optimizer="sgd")
    assert sgd.lr == {"w1": 4.0, "b1": 4.0, "w2": 1.0, "w3": 4.0, "b3": 1.0}
    # doubling the width halves the hidden Adam LR; a non-square hidden uses fan_in / fan_out
    assert mup_scales({"w": jnp.zeros((128, 128))}, {"w": (64, 64)}).lr["w"] == 0.5
    rect = mup_scales({"w": jnp.zeros((128, 256))}, {"w": (64, 64)}, optimizer="sgd")
    assert rect.lr["w"] == 2.0 and rect.init_std["w"] == pytest.approx(2**-0.5)
    conv = mup_scales(
        {"k": jnp.zeros((3, 3, 32, 64))}, {"k": jax.ShapeDtypeStruct((3, 3, 16, 32), jnp.float32)}
    )
    assert conv.kind["k"] == "hidden" and conv.lr["k"] == 0.5


def test_base_width_gives_identity():
    params = _zeros(_shapes(BASE))
    for opt in ("adam", "sgd"):
        s = mup_scales(params, _shapes(BASE), optimizer=opt)
        for tree in (s.init_std, s.lr, s.output):
            assert all(v == 1.0 for v in jax.tree.leaves(tree))
        tx = mup_learning_rate_scaling(params, _shapes(BASE), optimizer=opt)
        g = jax.tree.map(jnp.ones_like, params)
        u, _ = tx.update(g, tx.init(params))
        assert all(np.all(np.asarray(x) == 1.0) for x in jax.tree.leaves(u))


def test_learning_rate_scaling_multiplies_updates_jit():
    params = _zeros(_shapes(256))
    tx = optax.chain(
        optax.sgd(0.1), mup_learning_rate_scaling(params, _shapes(BASE), optimizer="sgd")
    )
    g = jax.tree.map(jnp.ones_like, params)
    u, _ = jax.jit(tx.update)(g, tx.init(params))
    expected = {"w1": 4.0, "b1": 4.0, "w2": 1.0, "w3": 4.0, "b3": 1.0}
    for k, v in expected.items():
        np.testing.assert_allclose(np.asarray(u[k]), -0.1 * v, rtol=1e-6)


def test_bad_args():
    params = _zeros(_shapes(128))
    with pytest.raises(ValueError, match="optimizer"):
        mup_scales(params, _shapes(BASE), optimizer="lion")
    with pytest.raises(ValueError, match="structure"):
        mup_scales(params, {"w1": (4, 64)})
    with pytest.raises(ValueError, match="w2"):
        mup_scales(params, {**_shapes(BASE), "w2": (64, 64, 1)})
    with pytest.raises(ValueError, match="last two axes"):
        mup_scales({"k": jnp.zeros((5, 3, 8, 8))}, {"k": (3, 3, 4, 4)})
    with pytest.raises(ValueError, match="positive"):
        mup_scales({"b": jnp.zeros(4)}, {"b": (0,)})
    with pytest.raises(ValueError, match="optimizer"):
        mup_learning_rate_scaling(params, _shapes(BASE), optimizer="adagrad")


def _coord_check(n, use_mup):
    """RMS change of the last hidden layer and the output after one Adam step of a 3-layer MLP."""
    shapes, base = _shapes(n, d_in=8, d_out=1), _shapes(BASE, d_in=8, d_out=1)
    scales = mup_scales(_zeros(shapes), base)
    rng = np.random.default_rng(0)
    params = {}
    for name, shape in sorted(shapes.items()):
        base_std = 1.0 / np.sqrt(base[name][0]) if len(shape) == 2 else 0.0
        std = base_std * (scales.init_std[name] if use_mup else np.sqrt(base[name][0] / shape[0]))
        params[name] = jnp.asarray(std * rng.standard_normal(shape), jnp.float32)
    out_mult = scales.output["w3"] if use_mup else 1.0
    x = jnp.asarray(rng.standard_normal((16, 8)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((16, 1)), jnp.float32)

    def forward(p):
        h1 = jax.nn.relu(x @ p["w1"] + p["b1"][None, :])
        h2 = jax.nn.relu(h1 @ p["w2"])
        return h2, out_mult * (h2 @ p["w3"]) + p["b3"][None, :]

    def loss(p):
        return jnp.mean((forward(p)[1] - y) ** 2)

    tx = optax.adam(1e-2)
    if use_mup:
        tx = optax.chain(tx, mup_learning_rate_scaling(params, base))

    @jax.jit
    def first_step_change(params):
        updates, _ = tx.update(jax.grad(loss)(params), tx.init(params), params)
        (h_old, f_old) = forward(params)
        (h_new, f_new) = forward(optax.apply_updates(params, updates))
        return jnp.sqrt(jnp.mean((h_new - h_old) ** 2)), jnp.sqrt(jnp.mean((f_new - f_old) ** 2))

    return [float(v) for v in first_step_change(params)]


@pytest.mark.slow
def test_coordinate_check_mup_stable_sp_grows():
    widths = (64, 256, 1024)
    mup = np.array([_coord_check(n, True) for n in widths])
    sp = np.array([_coord_check(n, False) for n in (widths[0], widths[-1])])
    for col in range(2):  # hidden activation change, output change
        ratio = mup[:, col].max() / mup[:, col].min()
        assert ratio < 2.0, (col, mup[:, col])
        assert sp[1, col] / sp[0, col] > 4.0, (col, sp[:, col])
