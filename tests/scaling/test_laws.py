"""Scaling laws against the published constants, NumPy transcriptions and synthetic recovery."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.scaling import (
    critical_batch_size,
    fit_loss_deceleration,
    fit_loss_to_loss,
    fit_lr_annealing_law,
    fit_power_law,
    kaplan_loss,
    loss_to_loss,
    lr_annealing_areas,
    lr_annealing_loss,
    minimum_steps,
    minimum_tokens,
    scale_embeddings,
    small_init_std,
    step_law,
)


def close(actual, desired, rtol=1e-5, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=rtol, atol=atol)


def test_step_law_published_constants():
    n, d = 1e9, 1e11
    lr, bs = step_law(n, d)
    close(lr, 1.79 * n**-0.713 * d**0.307, rtol=1e-5)
    close(bs, 0.58 * d**0.571, rtol=1e-5)
    close(lr, 1.63e-3, rtol=5e-3)  # the inventory's worked example
    close(bs, 1.11e6, rtol=5e-3)
    lrs, bss = step_law(jnp.array([1e8, 1e9]), jnp.array([1e11, 1e11]))
    assert lrs[0] > lrs[1] and bss[0] == bss[1]  # η falls with N; B does not depend on N
    assert step_law(1e9, 1e12)[0] > lr  # η grows with D
    with pytest.raises(ValueError, match="num_params"):
        step_law(0.0, 1e9)
    with pytest.raises(ValueError, match="num_tokens"):
        step_law(1e9, -1.0)


def test_kaplan_loss_closed_forms_and_limits():
    n, d = 1e9, 1e10
    close(kaplan_loss(n), (8.8e13 / n) ** 0.076)
    close(kaplan_loss(n), 2.38, rtol=2e-3)
    close(kaplan_loss(d=d), (5.4e13 / d) ** 0.095)
    close(kaplan_loss(n, d), ((8.8e13 / n) ** (0.076 / 0.095) + 5.4e13 / d) ** 0.095)
    close(kaplan_loss(n, 1e30), float(kaplan_loss(n)), rtol=1e-5)  # D → ∞
    close(kaplan_loss(1e30, d), float(kaplan_loss(d=d)), rtol=1e-5)  # N → ∞
    ns = jnp.array([1e7, 1e8, 1e9])
    assert np.all(np.diff(np.asarray(kaplan_loss(ns, jnp.full(3, 1e10)))) < 0)
    close(jax.jit(kaplan_loss)(n, d), float(kaplan_loss(n, d)))
    with pytest.raises(ValueError, match="n=None"):
        kaplan_loss()
    with pytest.raises(ValueError, match="alpha_n"):
        kaplan_loss(n, alpha_n=0.0)
    with pytest.raises(ValueError, match="d="):
        kaplan_loss(n, 0.0)


def test_critical_batch_and_minimum_steps():
    close(critical_batch_size(2.5), 2e8 / 2.5 ** (1 / 0.21))
    close(critical_batch_size(2.5, b_star=1e6, alpha_b=0.5), 1e6 / 2.5**2)
    close(minimum_steps(1000.0, 1e5, 3e5), 1000 / (1 + 3.0))
    close(minimum_tokens(1e9, 1e5, 3e5), 1e9 / (1 + 1 / 3))
    close(minimum_steps(800.0, 5.0, 5.0), 400.0)  # B = B_crit halves both
    close(minimum_tokens(800.0, 5.0, 5.0), 400.0)
    with pytest.raises(ValueError, match="alpha_b"):
        critical_batch_size(2.0, alpha_b=-1.0)
    with pytest.raises(ValueError, match="loss"):
        critical_batch_size(0.0)
    with pytest.raises(ValueError, match="batch_size"):
        minimum_steps(10.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="critical_batch"):
        minimum_tokens(10.0, 1.0, -1.0)


def test_fit_power_law_exact_recovery():
    x = np.logspace(6, 10, 9)
    fit = fit_power_law(x, 3.0 * x**-0.3)
    close([fit.a, fit.alpha, fit.e], [3.0, 0.3, 0.0], rtol=1e-6)
    fit = fit_power_law(x, 1.7 + 400.0 * x**-0.34, offset=True)
    close([fit.a, fit.alpha, fit.e], [400.0, 0.34, 1.7], rtol=1e-6)
    # Kaplan's L(N) is a pure power law: the fit returns its constants
    ns = np.logspace(7, 10, 6)
    fit = fit_power_law(ns, np.asarray(kaplan_loss(jnp.asarray(ns)), np.float64))
    close([fit.alpha, fit.a], [0.076, 8.8e13**0.076], rtol=1e-4)


def test_fit_power_law_bad_args():
    with pytest.raises(ValueError, match="x and y"):
        fit_power_law([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="x and y"):
        fit_power_law([1.0, 2.0], [1.0, 0.5], offset=True)  # needs 3 points
    with pytest.raises(ValueError, match="x must"):
        fit_power_law([-1.0, 2.0], [1.0, 0.5])
    with pytest.raises(ValueError, match="y must"):
        fit_power_law([1.0, 2.0], [1.0, -0.5])


def np_areas(lrs, decay):
    s1, s2, m, total1, total2 = [], [], 0.0, 0.0, 0.0
    for i, lr in enumerate(lrs):
        m = decay * m + ((lrs[i - 1] if i else lrs[0]) - lr)
        total1 += lr
        total2 += m
        s1.append(total1)
        s2.append(total2)
    return np.array(s1), np.array(s2)


def np_s2_double_sum(lrs, decay):
    eta = np.concatenate([[lrs[0]], lrs])  # η_0 = η_1
    return np.array(
        [
            sum((eta[k - 1] - eta[k]) * decay ** (i - k) for k in range(1, i + 1))
            for i in range(1, len(lrs) + 1)
        ]
    ).cumsum()


def _cosine(t, peak=1e-3, floor=0.1):
    return peak * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * np.arange(t) / t)))


def test_lr_annealing_areas_constant_loop_and_double_sum():
    s1, s2 = lr_annealing_areas(jnp.full(50, 2e-3))
    close(s1, 2e-3 * np.arange(1, 51), rtol=1e-5)
    close(s2, np.zeros(50), atol=0)
    lrs = _cosine(200)
    s1, s2 = jax.jit(lr_annealing_areas, static_argnames="decay")(
        jnp.asarray(lrs, jnp.float32), decay=0.99
    )
    ref1, ref2 = np_areas(lrs, 0.99)
    close(s1, ref1, rtol=1e-5)
    close(s2, ref2, rtol=1e-4, atol=1e-8)
    close(ref2, np_s2_double_sum(lrs, 0.99), rtol=1e-10)
    # decay 0: m_i is the i-th drop, so S2(s) telescopes to η_1 − η_s
    close(
        lr_annealing_areas(jnp.asarray(lrs, jnp.float32), decay=0.0)[1],
        lrs[0] - lrs,
        rtol=1e-4,
        atol=1e-9,
    )


def test_lr_annealing_loss_formula_and_more_annealing_helps():
    lrs = _cosine(100)
    s1, s2 = np_areas(lrs, 0.999)
    got = lr_annealing_loss(jnp.asarray(lrs, jnp.float32), l0=2.0, a=0.5, alpha=0.4, c=100.0)
    close(got, 2.0 + 0.5 * s1**-0.4 - 100.0 * s2, rtol=1e-5, atol=1e-5)
    const = lr_annealing_loss(jnp.full(100, 1e-3), l0=2.0, a=0.5, alpha=0.4, c=100.0)
    close(const, 2.0 + 0.5 * (1e-3 * np.arange(1, 101)) ** -0.4, rtol=1e-5)  # pure power law
    with pytest.raises(ValueError, match="decay"):
        lr_annealing_loss(jnp.ones(3), l0=1.0, a=1.0, alpha=1.0, c=1.0, decay=1.0)
    with pytest.raises(ValueError, match="lrs"):
        lr_annealing_areas(jnp.ones((2, 2)))


def test_fit_lr_annealing_law_recovers_parameters():
    t = 1500
    schedules = [np.full(t, 1e-3), _cosine(t)]
    true = {"l0": 2.1, "a": 0.4, "alpha": 0.45, "c": 250.0}
    curves = []
    for lrs in schedules:
        s1, s2 = np_areas(lrs, 0.999)
        curves.append(true["l0"] + true["a"] * s1 ** -true["alpha"] - true["c"] * s2)
    fit = fit_lr_annealing_law(schedules, curves)
    close([fit.l0, fit.a, fit.alpha, fit.c], list(true.values()), rtol=1e-4)
    with pytest.raises(ValueError, match="equally long"):
        fit_lr_annealing_law(schedules, curves[:1])
    with pytest.raises(ValueError, match="lrs_list"):
        fit_lr_annealing_law([np.ones(3)], [np.ones(4)])
    with pytest.raises(ValueError, match="decay"):
        fit_lr_annealing_law(schedules, curves, decay=-0.1)


def test_loss_to_loss_formula_identity_and_fit():
    lx = np.linspace(2.5, 5.0, 12)
    close(loss_to_loss(jnp.asarray(lx), k=1.0, kappa=1.0, e_x=0.0, e_y=0.0), lx, rtol=1e-6)
    got = loss_to_loss(jnp.asarray(lx), k=0.8, kappa=1.3, e_x=1.5, e_y=1.0)
    ly = 0.8 * (lx - 1.5) ** 1.3 + 1.0
    close(got, ly, rtol=1e-6)
    edge = loss_to_loss(jnp.array([1.5, 1.0]), k=0.8, kappa=1.3, e_x=1.5, e_y=1.0)
    close(edge[0], 1.0)
    assert np.isnan(float(edge[1]))  # below E_x: outside the law
    g = jax.grad(lambda x: loss_to_loss(x, k=0.8, kappa=1.3, e_x=1.5, e_y=1.0))(1.5)
    assert np.isfinite(float(g))
    fit = fit_loss_to_loss(lx, ly)
    close([fit.k, fit.kappa, fit.e_x, fit.e_y], [0.8, 1.3, 1.5, 1.0], rtol=1e-5)
    with pytest.raises(ValueError, match="kappa"):
        loss_to_loss(jnp.asarray(lx), k=1.0, kappa=0.0, e_x=0.0, e_y=0.0)
    with pytest.raises(ValueError, match="l_x and l_y"):
        fit_loss_to_loss(lx[:4], ly[:4])
    with pytest.raises(ValueError, match="l_x must"):
        fit_loss_to_loss(-lx, ly)


def test_spike_no_more_init_and_scaled_embeddings():
    assert small_init_std(512) == pytest.approx(math.sqrt(2 / 2560))
    assert small_init_std(512) == pytest.approx(0.0280, abs=1e-4)
    d = 256
    emb = small_init_std(d) * jax.random.normal(jax.random.key(0), (64, d))
    scaled = scale_embeddings(emb, d_model=d)
    close(scaled, np.asarray(emb) * 16.0, rtol=1e-6)
    close(jnp.std(scaled), math.sqrt(2 / 5), rtol=0.02)  # order-1 embeddings
    assert scale_embeddings(emb.astype(jnp.bfloat16), d_model=d).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="d_model"):
        small_init_std(0)
    with pytest.raises(ValueError, match="d_model"):
        scale_embeddings(emb, d_model=128)


def np_broken(t, t_d, l_d, r1, rd):
    u = np.log(t) - np.log(t_d)
    return l_d * np.exp(-r1 * np.minimum(u, 0) - rd * np.maximum(u, 0))


def test_fit_loss_deceleration_recovers_breakpoint():
    t = np.arange(10, 20001, 37, dtype=np.float64)
    truth = (1234.5, 4.2, 0.62, 0.08)
    fit = fit_loss_deceleration(t, np_broken(t, *truth))
    close(list(fit), list(truth), rtol=1e-6)
    # a single power law: both rates agree, whatever breakpoint is reported
    fit = fit_loss_deceleration(t, 7.0 * t**-0.3)
    close([fit.rate_before, fit.rate_after], [0.3, 0.3], rtol=1e-6)
    close(fit.loss, 7.0 * fit.step**-0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="steps and losses"):
        fit_loss_deceleration(t[:4], t[:4])
    with pytest.raises(ValueError, match="> 0"):
        fit_loss_deceleration(t, -np.ones_like(t))
    with pytest.raises(ValueError, match="span"):
        fit_loss_deceleration(np.ones(6), np.ones(6))


def test_laws_are_differentiable_in_their_parameters():
    lx = jnp.linspace(2.5, 5.0, 6)

    def l2l_err(kappa):
        return jnp.sum(loss_to_loss(lx, k=0.8, kappa=kappa, e_x=1.5, e_y=1.0) ** 2)

    g = jax.grad(l2l_err)(1.3)
    expected = np.sum(
        2 * (0.8 * (np.asarray(lx) - 1.5) ** 1.3 + 1.0) * 0.8 * (np.asarray(lx) - 1.5) ** 1.3
        * np.log(np.asarray(lx) - 1.5)
    )  # fmt: skip
    close(g, expected, rtol=1e-4)
    lrs = jnp.asarray(_cosine(50), jnp.float32)
    g = jax.grad(lambda c: jnp.sum(lr_annealing_loss(lrs, l0=2.0, a=0.5, alpha=0.4, c=c)))(1.0)
    close(g, -np.sum(np_areas(np.asarray(lrs, np.float64), 0.999)[1]), rtol=1e-4)
    g = jax.grad(lambda a: kaplan_loss(1e9, alpha_n=a))(0.076)
    close(g, np.log(8.8e13 / 1e9) * (8.8e13 / 1e9) ** 0.076, rtol=1e-4)
