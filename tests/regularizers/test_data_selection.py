"""CoLoR-Filter scores/selection against NumPy; USEFUL clustering against scikit-learn KMeans."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from jaxlab.regularizers import data_selection as ds

RNG = np.random.default_rng(0)


def test_scores_are_nll_difference_and_constant_for_identical_models():
    prior, cond = RNG.uniform(1, 5, size=(2, 7)).astype(np.float32)
    np.testing.assert_allclose(
        ds.color_filter_scores(prior, cond), prior.astype(np.float64) - cond, rtol=1e-6
    )
    np.testing.assert_array_equal(ds.color_filter_scores(prior, prior), np.zeros(7))
    assert ds.color_filter_scores(jnp.asarray(prior, jnp.bfloat16), cond).dtype == jnp.float32
    with pytest.raises(ValueError, match="nll_prior"):
        ds.color_filter_scores(prior, cond[:3])


@pytest.mark.parametrize(("n", "fraction", "k"), [(10, 0.3, 3), (10, 0.25, 3), (7, 1.0, 7)])
def test_select_top_fraction_count_and_order(n, fraction, k):
    scores = RNG.normal(size=n).astype(np.float32)
    idx = np.asarray(jax.jit(lambda s: ds.select_top_fraction(s, fraction=fraction))(scores))
    assert len(idx) == k == int(np.ceil(round(fraction * n, 9)))
    np.testing.assert_array_equal(idx, np.argsort(-scores, kind="stable")[:k])


def test_select_ties_and_nan():
    idx = ds.select_top_fraction(jnp.array([1.0, jnp.nan, 1.0, 0.0]), fraction=0.75)
    np.testing.assert_array_equal(idx, [0, 2, 3])


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.1])
def test_select_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        ds.select_top_fraction(jnp.ones(4), fraction=fraction)
    with pytest.raises(ValueError, match="scores"):
        ds.select_top_fraction(jnp.ones((2, 2)), fraction=0.5)


def _two_blob_logits():
    """Per class: a confident (easy) blob and a confused (hard) blob of early outputs."""
    labels = np.repeat([0, 1, 2], 12)
    logits = np.zeros((36, 3))
    easy = np.zeros(36, bool)
    for c in range(3):
        idx = np.flatnonzero(labels == c)
        n_easy = 7 + c  # unequal sizes
        logits[idx] = RNG.normal(scale=0.2, size=(12, 3))
        logits[idx[:n_easy], c] += 6.0
        logits[idx[n_easy:], (c + 1) % 3] += 2.0
        easy[idx[:n_easy]] = True
    perm = RNG.permutation(36)
    return logits[perm], labels[perm], easy[perm]


def test_useful_returns_complement_of_easy_cluster_as_sklearn():
    logits, labels, easy = _two_blob_logits()
    idx = ds.useful_upsample_indices(logits, labels)
    np.testing.assert_array_equal(idx, np.flatnonzero(~easy))
    for c in range(3):  # same partition as scikit-learn's k-means
        members = np.flatnonzero(labels == c)
        sk = KMeans(n_clusters=2, n_init=10, random_state=0).fit_predict(logits[members])
        ours = np.isin(members, idx)
        assert np.array_equal(ours, sk == 1) or np.array_equal(ours, sk == 0)
    new_dataset = np.concatenate([np.arange(len(labels)), idx])
    assert len(new_dataset) == len(labels) + int((~easy).sum())
    np.testing.assert_array_equal(ds.useful_upsample_indices(logits, labels, seed=3), idx)


def test_useful_degenerate_classes():
    logits = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # class 0: two identical outputs (cannot split); class 1: a single example.
    assert ds.useful_upsample_indices(logits, np.array([0, 0, 1])).size == 0


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"num_clusters": 1}, "num_clusters"), ({"n_init": 0}, "n_init"), ({"max_iter": 0}, "max")],
)
def test_useful_bad_arguments(kw, match):
    logits, labels, _ = _two_blob_logits()
    with pytest.raises(ValueError, match=match):
        ds.useful_upsample_indices(logits, labels, **kw)
    with pytest.raises(ValueError, match="labels"):
        ds.useful_upsample_indices(logits, labels[:3])
    with pytest.raises(ValueError, match="labels"):
        ds.useful_upsample_indices(logits, labels + 5)
    with pytest.raises(ValueError, match="early_logits"):
        ds.useful_upsample_indices(logits[:, 0], labels)
