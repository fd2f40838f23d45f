"""ECE against a NumPy loop, a hand example and a perfectly calibrated sample; the plot."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.metrics import expected_calibration_error, plot_reliability_diagram

RNG = np.random.default_rng(2)


def np_ece(p, y, m):
    p = np.asarray(p, np.float64)
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, m + 1)
    ece, accs, confs, counts = 0.0, [], [], []
    for lo, hi in itertools.pairwise(edges):
        inside = (conf > lo) & (conf <= hi)
        n = inside.sum()
        acc = (pred[inside] == y[inside]).mean() if n else 0.0
        cf = conf[inside].mean() if n else 0.0
        ece += n / len(y) * abs(acc - cf)
        accs.append(acc)
        confs.append(cf)
        counts.append(n)
    return ece, np.array(accs), np.array(confs), np.array(counts)


def test_ece_matches_numpy_loop():
    logits = 2.0 * RNG.normal(size=(200, 4))
    y = RNG.integers(0, 4, size=200)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for m in (1, 7, 15):
        out = expected_calibration_error(
            jnp.asarray(logits, jnp.float32), jnp.asarray(y), num_bins=m, from_logits=True
        )
        ece, acc, conf, counts = np_ece(p, y, m)
        np.testing.assert_allclose(float(out.ece), ece, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(out.accuracy), acc, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(out.confidence), conf, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(out.counts), counts)


def test_ece_hand_example_mask_and_jit():
    # bins of width 0.25: {0.6 ok, 0.7 wrong} in (0.5, .75], {0.9 ok} in (.75, 1]
    p = jnp.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    y = jnp.array([0, 0, 0, 1])
    where = jnp.array([True, True, True, False])
    out = jax.jit(expected_calibration_error, static_argnames="num_bins")(
        p, y, num_bins=4, where=where
    )
    expected = (2 / 3) * abs(0.5 - 0.65) + (1 / 3) * abs(1.0 - 0.9)
    np.testing.assert_allclose(float(out.ece), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.counts), [0, 0, 2, 1])


def test_ece_perfectly_calibrated_is_small():
    n = 20000
    conf = RNG.uniform(0.5, 1.0, size=n)
    correct = RNG.uniform(size=n) < conf
    y = np.where(correct, 0, 1)
    p = np.stack([conf, 1 - conf], 1)
    out = expected_calibration_error(jnp.asarray(p, jnp.float32), jnp.asarray(y))
    assert float(out.ece) < 0.02
    overconfident = expected_calibration_error(jnp.asarray(p, jnp.float32), jnp.zeros(n, jnp.int32))
    assert float(overconfident.ece) > 0.2  # always right at mean confidence 0.75


def test_ece_bad_args():
    p, y = jnp.ones((3, 2)) / 2, jnp.zeros(3, jnp.int32)
    with pytest.raises(ValueError, match="num_bins"):
        expected_calibration_error(p, y, num_bins=0)
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(p, y[:2])
    with pytest.raises(ValueError, match="probs_or_logits"):
        expected_calibration_error(jnp.ones(3), y)
    with pytest.raises(ValueError, match="where"):
        expected_calibration_error(p, y, where=jnp.ones(2, bool))
    with pytest.raises(TypeError, match="bins"):
        plot_reliability_diagram((0.1, 0.2))


def test_reliability_diagram_saves_png(tmp_path):
    import matplotlib.pyplot as plt

    p = jnp.asarray(RNG.dirichlet(np.ones(3), size=50), jnp.float32)
    out = expected_calibration_error(p, jnp.asarray(RNG.integers(0, 3, size=50)), num_bins=5)
    path = tmp_path / "rel.png"
    ax = plot_reliability_diagram(out, path=path)
    assert path.exists() and path.stat().st_size > 0
    assert ax.get_xlabel() == "confidence"
    plt.close(ax.figure)
