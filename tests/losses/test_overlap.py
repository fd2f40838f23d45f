"""Dice, Tversky, Jaccard metric and AnyLoss against hand values, NumPy, optax and sklearn."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from sklearn import metrics as skm

from jaxlab.losses import overlap as ov

RNG = np.random.default_rng(0)
PROBS = RNG.uniform(size=(4, 6)).astype(np.float32)
HARD = (RNG.uniform(size=(4, 6)) > 0.5).astype(np.float32)
SOFT = RNG.uniform(size=(4, 6)).astype(np.float32)

# Set losses: (predictions [4, 6], targets) -> [4]; self-adjusting Dice -> [4, 6].
LOSSES = {
    "soft_dice": ov.soft_dice_loss,
    "tversky": ov.tversky_loss,
    "jaccard_metric": ov.jaccard_metric_loss,
    "dice_metric": ov.dice_metric_loss,
    "self_adjusting_dice": ov.self_adjusting_dice_loss,
}
SET_LOSSES = [n for n in LOSSES if n != "self_adjusting_dice"]


# ---------------------------------------------------------------- NumPy transcriptions of papers
def np_dice(p, y, s):
    return 1 - (2 * np.sum(p * y) + s) / (np.sum(p) + np.sum(y) + s)


def np_tversky(p, y, a, b, s):
    tp, fp, fn = np.sum(p * y), np.sum(p * (1 - y)), np.sum((1 - p) * y)
    return 1 - (tp + s) / (tp + a * fp + b * fn + s)


def np_jml(x, y, s):
    norm1, diff = np.sum(np.abs(x)) + np.sum(np.abs(y)), np.sum(np.abs(x - y))
    return 1 - ((norm1 - diff) / 2 + s) / ((norm1 + diff) / 2 + s)


def np_self_adjusting(p, y, a, g):
    w = (1 - p) ** a * p
    return 1 - (2 * w * y + g) / (w + y + g)


def np_confusion(p, y, amp):
    a = 1 / (1 + np.exp(-amp * (p - 0.5)))
    return np.sum(y * a), np.sum(y * (1 - a)), np.sum((1 - y) * a), np.sum((1 - y) * (1 - a))


# ---------------------------------------------------------------- Dice and Tversky
def test_dice_and_tversky_hand_values():
    p, y = jnp.array([[1.0, 0.5, 0.0]]), jnp.array([[1.0, 1.0, 0.0]])
    np.testing.assert_allclose(ov.soft_dice_loss(p, y, smooth=0.0), [1 / 7], rtol=1e-6)
    np.testing.assert_allclose(ov.soft_dice_loss(p, y), [1 / 9], rtol=1e-6)
    # TP = 1.5, FP = 0, FN = 0.5: 1 − 1.5 / (1.5 + 0.7 · 0.5)
    np.testing.assert_allclose(ov.tversky_loss(p, y, smooth=0.0), [1 - 1.5 / 1.85], rtol=1e-6)


def test_dice_and_tversky_match_numpy():
    for y in (HARD, SOFT):
        for s in (0.0, 1.0):
            want = [np_dice(a, b, s) for a, b in zip(PROBS, y, strict=True)]
            np.testing.assert_allclose(ov.soft_dice_loss(PROBS, y, smooth=s), want, rtol=1e-5)
            want = [np_tversky(a, b, 0.2, 0.9, s) for a, b in zip(PROBS, y, strict=True)]
            got = ov.tversky_loss(PROBS, y, alpha=0.2, beta=0.9, smooth=s)
            np.testing.assert_allclose(got, want, rtol=1e-5)


def test_tversky_and_dice_match_optax_per_class():
    logits = RNG.normal(size=(2, 5, 3)).astype(np.float32)
    probs = jax.nn.softmax(logits)
    targets = jax.nn.one_hot(RNG.integers(0, 3, size=(2, 5)), 3)
    kw = dict(apply_softmax=False, reduction="none", axis=(1,))
    want = optax.losses.dice_loss(probs, targets, alpha=0.3, beta=0.7, smooth=0.5, **kw)
    got = ov.tversky_loss(probs, targets, alpha=0.3, beta=0.7, smooth=0.5, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    want = optax.losses.dice_loss(probs, targets, smooth=0.5, **kw)
    np.testing.assert_allclose(ov.soft_dice_loss(probs, targets, axis=1), want, rtol=1e-5)
    got = ov.tversky_loss(PROBS, SOFT, alpha=0.5, beta=0.5, smooth=0.5)
    np.testing.assert_allclose(got, ov.soft_dice_loss(PROBS, SOFT, smooth=1.0), rtol=1e-6)


# ---------------------------------------------------------------- Jaccard / Dice metric losses
def test_metric_losses_hand_values_and_hard_label_equivalence():
    x, y = jnp.array([[0.5, 0.5]]), jnp.array([[1.0, 0.0]])  # I = 0.5, U = 1.5
    np.testing.assert_allclose(ov.jaccard_metric_loss(x, y, smooth=0.0), [2 / 3], rtol=1e-6)
    np.testing.assert_allclose(ov.dice_metric_loss(x, y, smooth=0.0), [0.5], rtol=1e-6)
    for s in (0.0, 1.0):
        inter = np.sum(PROBS * HARD, axis=1)
        soft_jaccard = 1 - (inter + s) / (PROBS.sum(1) + HARD.sum(1) - inter + s)
        got = ov.jaccard_metric_loss(PROBS, HARD, smooth=s)
        np.testing.assert_allclose(got, soft_jaccard, rtol=1e-5)
        got = ov.dice_metric_loss(PROBS, HARD, smooth=s)
        np.testing.assert_allclose(got, ov.soft_dice_loss(PROBS, HARD, smooth=s), rtol=1e-5)
    want = [np_jml(a, b, 1.0) for a, b in zip(PROBS, SOFT, strict=True)]
    np.testing.assert_allclose(ov.jaccard_metric_loss(PROBS, SOFT), want, rtol=1e-5)


def test_jaccard_metric_loss_is_a_metric_on_soft_labels():
    x, y, z = (RNG.uniform(size=(64, 5)) for _ in range(3))
    d = lambda a, b: np.asarray(ov.jaccard_metric_loss(a, b, smooth=0.0))  # noqa: E731
    np.testing.assert_allclose(d(x, x), 0.0, atol=1e-6)
    assert np.all(d(x, y) > 1e-3)
    np.testing.assert_allclose(d(x, y), d(y, x), rtol=1e-6)
    assert np.all(d(x, z) <= d(x, y) + d(y, z) + 1e-6)
    assert not np.allclose(ov.soft_dice_loss(SOFT, SOFT, smooth=0.0), 0.0)  # soft Dice is not


# ---------------------------------------------------------------- self-adjusting Dice
def test_self_adjusting_dice_values_and_limits():
    got = ov.self_adjusting_dice_loss(jnp.array([0.5]), jnp.array([1.0]))  # w = 1/4
    np.testing.assert_allclose(got, [1 - 1.5 / 2.25], rtol=1e-6)
    for a, g in ((1.0, 1.0), (2.0, 0.5)):
        got = ov.self_adjusting_dice_loss(PROBS, SOFT, alpha=a, gamma=g)
        np.testing.assert_allclose(got, np_self_adjusting(PROBS, SOFT, a, g), rtol=1e-5)
    dice = 1 - 2 * PROBS * HARD / (PROBS + HARD)
    got = ov.self_adjusting_dice_loss(PROBS, HARD, alpha=0.0, gamma=1e-9)
    np.testing.assert_allclose(got, dice, atol=1e-5)
    y = jnp.array([0.0, 1.0])
    np.testing.assert_allclose(ov.self_adjusting_dice_loss(y, y, alpha=0.0), [0.0, 0.0])


# ---------------------------------------------------------------- AnyLoss
def test_soft_confusion_and_anyloss_hand_values():
    p, y = jnp.array([1.0, 0.0, 1.0, 0.0]), jnp.array([1, 1, 0, 0])
    np.testing.assert_allclose(ov.soft_confusion(p, y), [1.0, 1.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(ov.anyloss(p, y), 0.5, atol=1e-6)
    np.testing.assert_allclose(ov.anyloss(p, y, metric="accuracy"), 0.5, atol=1e-6)
    np.testing.assert_allclose(ov.anyloss(y.astype(float), y), 0.0, atol=1e-6)
    soft = jnp.array([0.6, 0.3, 0.2, 0.9])
    np.testing.assert_allclose(
        ov.soft_confusion(soft, y, amp=5.0), np_confusion(np.asarray(soft), np.asarray(y), 5.0)
    )


def test_anyloss_on_hard_predictions_equals_sklearn():
    y = HARD.ravel().astype(int)
    pred = (PROBS.ravel() > 0.5).astype(int)
    tpr, tnr = skm.recall_score(y, pred), skm.recall_score(y, pred, pos_label=0)
    cases = {
        ("f_beta", 1.0): skm.f1_score(y, pred),
        ("f_beta", 2.0): skm.fbeta_score(y, pred, beta=2.0),
        ("accuracy", 1.0): skm.accuracy_score(y, pred),
        ("balanced_accuracy", 1.0): skm.balanced_accuracy_score(y, pred),
        ("geometric_mean", 1.0): tpr * tnr,  # the authors' G-mean² surrogate
    }
    for (metric, beta), want in cases.items():
        got = ov.anyloss(pred.astype(np.float32), y, metric=metric, beta=beta)
        np.testing.assert_allclose(got, 1 - want, atol=1e-6, err_msg=metric)
    got = ov.anyloss(pred.astype(np.float32), y, metric=lambda c: c.tp / (c.tp + c.fp))
    np.testing.assert_allclose(got, 1 - skm.precision_score(y, pred), atol=1e-6)


def test_anyloss_soft_matches_numpy_axis_where_and_devices():
    tp, fn, fp, _ = np_confusion(np.float64(PROBS), HARD, 73.0)
    want = 1 - 2 * tp / (2 * tp + fn + fp)
    np.testing.assert_allclose(ov.anyloss(PROBS, HARD), want, rtol=1e-5)
    per_row = ov.anyloss(PROBS, HARD, axis=1)
    np.testing.assert_allclose(per_row[1], ov.anyloss(PROBS[1], HARD[1]), rtol=1e-6)
    mask = RNG.uniform(size=PROBS.shape) > 0.3
    got = ov.anyloss(PROBS, HARD, where=mask)
    np.testing.assert_allclose(got, ov.anyloss(PROBS[mask], HARD[mask]), rtol=1e-6)
    n = jax.local_device_count() if 24 % jax.local_device_count() == 0 else 1
    sharded = jax.pmap(lambda p, y: ov.anyloss(p, y, axis_name="i"), axis_name="i")(
        PROBS.reshape(n, -1), HARD.reshape(n, -1)
    )
    np.testing.assert_allclose(sharded, np.full(n, ov.anyloss(PROBS, HARD)), rtol=1e-6)
    with jax.enable_x64(True):
        check_grads(lambda p: ov.anyloss(p, HARD, amp=5.0), (np.float64(PROBS),), 1, ["rev"])


@pytest.mark.parametrize("metric", sorted(ov.METRICS))
def test_anyloss_gradients_finite_for_degenerate_and_bf16_inputs(metric):
    for probs in (jnp.zeros(6), jnp.ones(6), jnp.asarray(PROBS[0]).astype(jnp.bfloat16)):
        value, grad = jax.value_and_grad(lambda p: ov.anyloss(p, HARD[0], metric=metric))(probs)
        assert value.dtype == jnp.float32 and np.isfinite(value)
        assert np.all(np.isfinite(grad.astype(jnp.float32)))


def test_anyloss_bad_inputs():
    with pytest.raises(ValueError, match="metric"):
        ov.anyloss(PROBS, HARD, metric="auc")
    with pytest.raises(ValueError, match="beta=0"):
        ov.anyloss(PROBS, HARD, beta=0.0)
    with pytest.raises(ValueError, match="amp=-1"):
        ov.soft_confusion(PROBS, HARD, amp=-1.0)
    with pytest.raises(ValueError, match=r"labels\.shape"):
        ov.soft_confusion(PROBS, HARD[:2])
    with pytest.raises(ValueError, match=r"where\.shape"):
        ov.soft_confusion(PROBS, HARD, where=np.ones(3, bool))


# ---------------------------------------------------------------- shared properties
@pytest.mark.parametrize("name", LOSSES)
def test_where_equals_slicing(name):
    loss = LOSSES[name]
    rows = np.array([True, False, True, True])
    got = loss(PROBS, SOFT, where=np.broadcast_to(rows[:, None], PROBS.shape))
    np.testing.assert_allclose(got[rows], loss(PROBS[rows], SOFT[rows]), rtol=1e-6)
    assert np.all(np.asarray(got[~rows]) == 0)
    mask = RNG.uniform(size=PROBS.shape) > 0.4
    got = loss(PROBS, SOFT, where=mask)
    want = loss(PROBS[2][mask[2]][None], SOFT[2][mask[2]][None])[0]
    np.testing.assert_allclose(got[2][mask[2]] if got.ndim == 2 else got[2], want, rtol=1e-6)


@pytest.mark.parametrize("name", SET_LOSSES)
def test_empty_inputs_give_zero_without_nan(name):
    zeros = jnp.zeros((2, 3))
    loss = lambda p: LOSSES[name](p, zeros, smooth=0.0).sum()  # noqa: E731
    value, grad = jax.value_and_grad(loss)(jnp.zeros((2, 3)))
    assert float(value) == 0.0 and np.all(np.isfinite(grad))


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_float64(name):
    with jax.enable_x64(True):
        f = lambda p: LOSSES[name](p, np.float64(SOFT))  # noqa: E731
        check_grads(f, (np.float64(PROBS),), order=1, modes=["rev"])


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("scale,dtype", [(1e4, jnp.float32), (1.0, jnp.bfloat16)])
def test_saturated_and_bf16_inputs_are_finite(name, scale, dtype):
    logits = (jnp.asarray(RNG.normal(size=(4, 6))) * scale).astype(dtype)
    f = lambda z: LOSSES[name](jax.nn.sigmoid(z), HARD.astype(dtype)).sum()  # noqa: E731
    value, grad = jax.value_and_grad(f)(logits)
    assert LOSSES[name](jax.nn.sigmoid(logits), HARD.astype(dtype)).dtype == jnp.float32
    assert np.isfinite(value) and np.all(np.isfinite(grad.astype(jnp.float32)))


@pytest.mark.parametrize("name", LOSSES)
def test_bad_inputs_raise(name):
    loss = LOSSES[name]
    with pytest.raises(ValueError, match=r"targets\.shape"):
        loss(PROBS, SOFT[:2])
    with pytest.raises(ValueError, match=r"where\.shape"):
        loss(PROBS, SOFT, where=np.ones(3, bool))
    bad = {"smooth": -1.0} if name in SET_LOSSES else {"gamma": -1.0}
    with pytest.raises(ValueError, match="=-1"):
        loss(PROBS, SOFT, **bad)
    if name in ("tversky", "self_adjusting_dice"):
        with pytest.raises(ValueError, match="alpha=-1"):
            loss(PROBS, SOFT, alpha=-1.0)
