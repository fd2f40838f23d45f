"""SLA: official-code slicing (``i::M`` columns), optax cross-entropy, M = 1 limits, masks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.losses import label_augmentation as sla

RNG = np.random.default_rng(0)
N, M, B = 3, 4, 5
Y = np.array([0, 1, 2, 2, 1])
TR = np.array([0, 3, 1, 2, 3])
Z = (2 * RNG.normal(size=(B, N * M))).astype(np.float32)


def test_joint_labels_pair_class_and_transform():
    joint = np.asarray(sla.sla_joint_labels(Y, TR, num_transforms=M))
    np.testing.assert_array_equal(joint // M, Y)
    np.testing.assert_array_equal(joint % M, TR)
    np.testing.assert_array_equal(sla.sla_joint_labels(Y, 0, num_transforms=1), Y)


def test_loss_matches_optax_on_joint_labels_and_m1_is_ce():
    expected = optax.losses.softmax_cross_entropy_with_integer_labels(Z, Y * M + TR)
    np.testing.assert_allclose(jax.jit(sla.sla_loss)(Z, Y, TR), expected, rtol=1e-6)
    zn = Z[:, :N]
    np.testing.assert_allclose(
        sla.sla_loss(zn, Y, np.zeros_like(Y), num_transforms=1),
        optax.losses.softmax_cross_entropy_with_integer_labels(zn, Y),
        rtol=1e-6,
    )


def test_aggregate_matches_official_slicing_and_m1_identity():
    z = RNG.normal(size=(M, B, N * M)).astype(np.float32)
    expected = sum(z[t][:, t::M].astype(np.float64) for t in range(M)) / M  # official SLA code
    np.testing.assert_allclose(jax.jit(sla.sla_aggregate)(z), expected, rtol=1e-6)
    np.testing.assert_allclose(sla.sla_aggregate(Z[None]), Z, rtol=1e-7)
    assert sla.sla_aggregate(jnp.asarray(z, jnp.bfloat16)).dtype == jnp.float32


def test_mask_large_logits_and_bf16():
    mask = np.array([True, False, True, True, False])
    bad = Z.copy()
    bad[~mask] = np.nan
    out = sla.sla_loss(bad, np.where(mask, Y, 99), TR, where=mask)
    np.testing.assert_allclose(out[mask], sla.sla_loss(Z[mask], Y[mask], TR[mask]), rtol=1e-6)
    assert np.all(np.asarray(out)[~mask] == 0)
    grad = jax.grad(lambda z: jnp.sum(sla.sla_loss(z, Y, TR, where=mask)))(bad)
    assert np.all(np.isfinite(grad))
    for z in (Z * 1e4, jnp.asarray(Z, jnp.bfloat16)):
        value, grad = jax.value_and_grad(lambda z: jnp.sum(sla.sla_loss(z, Y, TR)))(z)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad, np.float32)))
        assert sla.sla_loss(z, Y, TR).dtype == jnp.float32


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_transforms"):
        sla.sla_joint_labels(Y, TR, num_transforms=0)
    with pytest.raises(TypeError, match="labels"):
        sla.sla_joint_labels(Y.astype(float), TR)
    with pytest.raises(ValueError, match="joint_logits"):
        sla.sla_loss(Z[:, :10], Y, TR)
    with pytest.raises(ValueError, match=r"labels\.shape"):
        sla.sla_loss(Z, Y[:3], TR[:3])
    with pytest.raises(ValueError, match="joint_logits_per_transform"):
        sla.sla_aggregate(Z[0])
    with pytest.raises(ValueError, match="joint_logits"):
        sla.sla_aggregate(np.zeros((3, B, 4)))
