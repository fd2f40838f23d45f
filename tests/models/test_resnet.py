"""Tests for jaxlab.models.resnet: NumPy float64 forward transcriptions, hand-derived parameter
counts, BatchNorm statistics updates and synchronised BatchNorm across 8 devices."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxlab.models import ResNet18, WideResNet, has_batch_norm, init_model
from tests.models._util import conv2d_np, count_params, random_variables, rbg_key, to_numpy64

EPS = 1e-5


# ---------------------------------------------------------------- independent NumPy transcription
def _bn_eval_np(h, p, s):
    return (h - s["mean"]) / np.sqrt(s["var"] + EPS) * p["scale"] + p["bias"]


def _relu(h):
    return np.maximum(h, 0)


def _resnet18_np(params, stats, x):
    """Eval-mode CIFAR ResNet-18 (He et al. 2016), post-activation BasicBlocks."""
    p, s = to_numpy64(params), to_numpy64(stats)
    h = _relu(_bn_eval_np(conv2d_np(x, p["stem_conv"]["kernel"]), p["stem_bn"], s["stem_bn"]))
    for stage, stride in zip((1, 2, 3, 4), (1, 2, 2, 2), strict=True):
        for block in (1, 2):
            name = f"stage{stage}_block{block}"
            bp, bs = p[name], s[name]
            st = stride if block == 1 else 1
            y = _relu(_bn_eval_np(conv2d_np(h, bp["conv1"]["kernel"], st), bp["bn1"], bs["bn1"]))
            y = _bn_eval_np(conv2d_np(y, bp["conv2"]["kernel"]), bp["bn2"], bs["bn2"])
            if "proj_conv" in bp:
                sc = conv2d_np(h, bp["proj_conv"]["kernel"], st, pad=0)
                sc = _bn_eval_np(sc, bp["proj_bn"], bs["proj_bn"])
            else:
                sc = h
            h = _relu(y + sc)
    h = h.mean(axis=(1, 2))
    return h @ p["head"]["kernel"] + p["head"]["bias"]


def _wrn_np(params, stats, x, blocks_per_group):
    """Eval-mode pre-activation WRN (Zagoruyko & Komodakis 2016)."""
    p, s = to_numpy64(params), to_numpy64(stats)
    h = conv2d_np(x, p["stem_conv"]["kernel"])
    for group, stride in zip((1, 2, 3), (1, 2, 2), strict=True):
        for block in range(1, blocks_per_group + 1):
            bp, bs = p[f"group{group}_block{block}"], s[f"group{group}_block{block}"]
            st = stride if block == 1 else 1
            o = _relu(_bn_eval_np(h, bp["bn1"], bs["bn1"]))
            sc = conv2d_np(o, bp["proj_conv"]["kernel"], st, pad=0) if "proj_conv" in bp else h
            y = _relu(_bn_eval_np(conv2d_np(o, bp["conv1"]["kernel"], st), bp["bn2"], bs["bn2"]))
            h = conv2d_np(y, bp["conv2"]["kernel"]) + sc
    h = _relu(_bn_eval_np(h, p["final_bn"], s["final_bn"])).mean(axis=(1, 2))
    return h @ p["head"]["kernel"] + p["head"]["bias"]


def _resnet18_count(width, num_classes, in_channels=3):
    """Parameter count of the CIFAR ResNet-18 summed by hand (conv, BN scale+bias, dense)."""
    n = 9 * in_channels * width + 2 * width
    c_in = width
    for mult, stride in zip((1, 2, 4, 8), (1, 2, 2, 2), strict=True):
        c = width * mult
        for block in range(2):
            n += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c
            if (block == 0 and stride != 1) or c_in != c:
                n += c_in * c + 2 * c
            c_in = c
    return n + c_in * num_classes + num_classes


def _wrn_count(depth, k, num_classes, in_channels=3):
    """Parameter count of WRN-depth-k summed by hand (pre-activation, bias-free convs)."""
    n_blocks = (depth - 4) // 6
    n = 9 * in_channels * 16
    c_in = 16
    for mult, stride in zip((16, 32, 64), (1, 2, 2), strict=True):
        c = mult * k
        for block in range(n_blocks):
            n += 2 * c_in + 9 * c_in * c + 2 * c + 9 * c * c
            if (block == 0 and stride != 1) or c_in != c:
                n += c_in * c
            c_in = c
    return n + 2 * c_in + c_in * num_classes + num_classes


def _images(n, size=8, channels=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, channels)).astype(np.float32)


# ------------------------------------------------------------------------------- parameter counts
def test_resnet18_cifar10_parameter_count_is_standard():
    count = count_params(ResNet18(num_classes=10, width=64), jnp.zeros((1, 32, 32, 3)))
    assert count == 11_173_962
    assert _resnet18_count(64, 10) == 11_173_962


@pytest.mark.parametrize(("width", "num_classes"), [(4, 10), (16, 100), (64, 100)])
def test_resnet18_parameter_count_matches_hand_formula(width, num_classes):
    model = ResNet18(num_classes=num_classes, width=width)
    assert count_params(model, jnp.zeros((1, 32, 32, 3))) == _resnet18_count(width, num_classes)


@pytest.mark.parametrize(("depth", "k"), [(16, 8), (10, 1), (22, 2), (28, 10), (40, 4)])
def test_wrn_parameter_count_matches_hand_formula(depth, k):
    model = WideResNet(depth=depth, widen_factor=k, num_classes=10)
    assert count_params(model, jnp.zeros((1, 32, 32, 3))) == _wrn_count(depth, k, 10)


@pytest.mark.parametrize(("depth", "k", "millions"), [(28, 10, 36.5), (16, 8, 11.0), (40, 4, 8.9)])
def test_wrn_parameter_count_matches_paper(depth, k, millions):
    """Published sizes (Zagoruyko & Komodakis 2016, Table 4), to the 0.1M they are quoted with."""
    count = count_params(WideResNet(depth=depth, widen_factor=k), jnp.zeros((1, 32, 32, 3)))
    assert round(count / 1e6, 1) == millions


# ------------------------------------------------------------------------ forward vs NumPy (eval)
def test_resnet18_eval_forward_matches_numpy():
    model = ResNet18(num_classes=3, width=2)
    x = _images(2)
    params, state = random_variables(model, x)
    assert has_batch_norm(state)
    out = jax.jit(lambda p, s, x: model.apply({"params": p, **s}, x))(params, state, x)
    assert out.shape == (2, 3) and out.dtype == jnp.float32
    ref = _resnet18_np(params, state["batch_stats"], x.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("depth", "k", "dropout_rate"), [(10, 1, 0.0), (16, 1, 0.3), (10, 2, 0.0)])
def test_wrn_eval_forward_matches_numpy(depth, k, dropout_rate):
    """Eval mode ignores dropout, so the NumPy reference has none."""
    model = WideResNet(depth=depth, widen_factor=k, num_classes=3, dropout_rate=dropout_rate)
    x = _images(2)
    params, state = random_variables(model, x)
    out = jax.jit(lambda p, s, x: model.apply({"params": p, **s}, x))(params, state, x)
    assert out.shape == (2, 3) and out.dtype == jnp.float32
    ref = _wrn_np(params, state["batch_stats"], x.astype(np.float64), (depth - 4) // 6)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_resnet18_shapes_on_cifar_sized_input():
    model = ResNet18(num_classes=10, width=4)
    x = _images(2, size=32)
    params, state = random_variables(model, x)
    logits, new = jax.jit(
        lambda p, s, x: model.apply({"params": p, **s}, x, train=True, mutable=["batch_stats"])
    )(params, state, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert jax.tree.map(jnp.shape, new) == jax.tree.map(jnp.shape, state)


# --------------------------------------------------------------------------- BatchNorm behaviour
def test_train_updates_running_stats_with_momentum_and_eval_does_not():
    model = ResNet18(num_classes=3, width=2)
    x = _images(4)
    params, state = random_variables(model, x)
    apply = jax.jit(
        lambda p, s, x, train: model.apply(
            {"params": p, **s}, x, train=train, mutable=["batch_stats"]
        ),
        static_argnums=3,
    )
    _, new_eval = apply(params, state, x, False)
    jax.tree.map(np.testing.assert_array_equal, new_eval, state)

    _, new = apply(params, state, x, True)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state), strict=True):
        assert not np.allclose(a, b)
    # Stem BN: r ← 0.9 r + 0.1 (batch mean / biased batch variance) of the stem conv output.
    z = conv2d_np(x.astype(np.float64), np.asarray(params["stem_conv"]["kernel"], np.float64))
    old = to_numpy64(state["batch_stats"]["stem_bn"])
    got = new["batch_stats"]["stem_bn"]
    np.testing.assert_allclose(got["mean"], 0.9 * old["mean"] + 0.1 * z.mean((0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(got["var"], 0.9 * old["var"] + 0.1 * z.var((0, 1, 2)), rtol=1e-5)


@pytest.mark.parametrize(
    "model", [ResNet18(num_classes=3, width=2), WideResNet(depth=10, widen_factor=1, num_classes=3)]
)
def test_eval_mode_is_per_example_and_train_mode_uses_the_batch(model):
    x = _images(4)
    params, state = random_variables(model, x)
    f = jax.jit(
        lambda x, train: model.apply(
            {"params": params, **state}, x, train=train, mutable=["batch_stats"]
        )[0],
        static_argnums=1,
    )
    x2 = x.copy()
    x2[1:] *= 3.0  # change every example except the first
    np.testing.assert_allclose(f(x, False)[0], f(x2, False)[0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(f(x, True)[0], f(x2, True)[0], atol=1e-4)


# ------------------------------------------------------------------------------- synchronised BN
def _train_apply(model, params, state, x):
    return model.apply({"params": params, **state}, x, train=True, mutable=["batch_stats"])


@pytest.mark.parametrize("axis_name", ["batch", None])
def test_sync_batch_norm_pmap_equals_full_batch(axis_name):
    devices = jax.local_device_count()
    assert devices == 8
    model = ResNet18(num_classes=3, width=2)
    x = _images(2 * devices, seed=5)
    params, state = random_variables(model, x)
    ref_logits, ref_state = jax.jit(functools.partial(_train_apply, model))(params, state, x)

    sharded = model.clone(bn_axis_name=axis_name)
    logits, new = jax.pmap(
        functools.partial(_train_apply, sharded), axis_name="batch", in_axes=(None, None, 0)
    )(params, state, x.reshape(devices, 2, *x.shape[1:]))
    logits = logits.reshape(ref_logits.shape)
    stats_close = all(
        np.allclose(a, b[None], rtol=1e-5, atol=1e-5)
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ref_state), strict=True)
    )
    if axis_name is None:  # control: per-device statistics are not the full-batch ones
        assert not stats_close
        assert not np.allclose(logits, ref_logits, atol=1e-4)
    else:
        assert stats_close
        np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)


def test_sync_batch_norm_shard_map_equals_full_batch():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    model = WideResNet(depth=10, widen_factor=1, num_classes=3)
    x = _images(16, seed=6)
    params, state = random_variables(model, x)
    ref_logits, ref_state = jax.jit(functools.partial(_train_apply, model))(params, state, x)

    step = jax.shard_map(
        functools.partial(_train_apply, model.clone(bn_axis_name="data")),
        mesh=mesh,
        in_specs=(P(), P(), P("data")),
        out_specs=(P("data"), P()),
    )
    x = jax.device_put(x, jax.NamedSharding(mesh, P("data")))
    params, state = jax.device_put((params, state), jax.NamedSharding(mesh, P()))
    logits, new = jax.jit(step)(params, state, x)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5), new, ref_state
    )


# ----------------------------------------------------------------- dtype, dropout, grads, errors
@pytest.mark.parametrize(
    "model", [ResNet18(num_classes=3, width=2), WideResNet(depth=10, widen_factor=1, num_classes=3)]
)
def test_bfloat16_gives_finite_float32_logits_and_float32_stats(model):
    x = _images(2)
    params, state = random_variables(model, x)
    logits, new = jax.jit(functools.partial(_train_apply, model.clone(dtype=jnp.bfloat16)))(
        params, state, x
    )
    assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(new))


def test_wrn_dropout_is_random_in_training_and_grads_are_finite():
    model = WideResNet(depth=10, widen_factor=1, num_classes=3, dropout_rate=0.5)
    x = _images(4)
    params, state = random_variables(model, x)

    def loss(p, key):
        logits, _ = model.apply(
            {"params": p, **state}, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}
        )
        return -jnp.mean(jax.nn.log_softmax(logits)[:, 0])

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    (l1, g1), (l2, _) = (value_and_grad(params, rbg_key(i)) for i in (1, 2))
    assert float(l1) != float(l2)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(g1))
    assert float(jnp.sum(jnp.abs(g1["stem_conv"]["kernel"]))) > 0
    assert float(jnp.sum(jnp.abs(g1["final_bn"]["scale"]))) > 0


class _TinyBN(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        h = nn.BatchNorm(use_running_average=not train, name="bn")(nn.Dense(2, name="dense")(x))
        return h.astype(jnp.float32)


def test_init_model_splits_batch_stats():
    params, state = init_model(_TinyBN(), jax.random.key(0), jnp.ones((4, 3)))
    assert set(params) == {"dense", "bn"} and set(state) == {"batch_stats"}
    assert has_batch_norm(state)
    # Fresh BatchNorm: running mean 0, running variance 1, scale 1, bias 0.
    np.testing.assert_array_equal(state["batch_stats"]["bn"]["mean"], np.zeros(2))
    np.testing.assert_array_equal(state["batch_stats"]["bn"]["var"], np.ones(2))
    np.testing.assert_array_equal(params["bn"]["scale"], np.ones(2))
    assert params["dense"]["kernel"].shape == (3, 2)


@pytest.mark.parametrize("depth", [4, 9, 15, 17, 0, 16.0])
def test_wrn_bad_depth_raises(depth):
    with pytest.raises(ValueError, match="depth"):
        WideResNet(depth=depth)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (WideResNet, {"widen_factor": 0}),
        (WideResNet, {"num_classes": 0}),
        (WideResNet, {"dropout_rate": 1.0}),
        (WideResNet, {"dropout_rate": -0.1}),
        (ResNet18, {"width": 0}),
        (ResNet18, {"width": -64}),
        (ResNet18, {"num_classes": 0}),
    ],
)
def test_bad_hyperparameters_raise(cls, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cls(**kwargs)


@pytest.mark.parametrize("model", [ResNet18(width=2), WideResNet(depth=10, widen_factor=1)])
def test_non_image_input_raises(model):
    with pytest.raises(ValueError, match="NHWC"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 8, 8))))
