# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Composing jaxlab transforms with optax
#
# Every optimizer in `jaxlab.optim` is an `optax.GradientTransformation`, so it composes with
# optax's combinators. This notebook shows, on softmax regression on the digits data set:
#
# 1. **SAM around MoMo**: `optim.sam(optim.momo(...))`. SAM evaluates the gradient at a
#    perturbed point and hands it to its inner optimizer; MoMo needs the loss value, which SAM
#    forwards (the perturbed loss, the value of the objective whose gradient MoMo receives).
#    Extra arguments go through `update(..., loss_fn=..., value=...)`.
# 2. **Weight-decay modes**: `optim.adamw` / `optim.sgdw` / `optim.with_weight_decay` with
#    `l2` (decay through the preconditioner), `coupled` (PyTorch / optax AdamW: shrink η_t·λ per
#    step) and `independent` (Loshchilov & Hutter's Algorithm 2: shrink (η_t/η_max)·λ).
# 3. **Schedules**: linear decay to zero (D2Z), warmup-stable-decay (WSD) and cosine to 10 %, and
#    how each weighs past updates in AdamW's weights viewed as an EMA.
# 4. **Masks**: a decay mask that spares biases, and `optax.masked` to freeze a layer.
# 5. **`optax.inject_hyperparams`**: jaxlab transforms with hyperparameters changed mid-training.
#
# References:
# - Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for Efficiently Improving
#   Generalization", ICLR 2021, https://arxiv.org/abs/2010.01412.
# - Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: Momentum Models for Adaptive Learning
#   Rates", ICML 2024, https://arxiv.org/abs/2305.07583.
# - Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
#   https://arxiv.org/abs/1711.05101.
# - Bergsma et al., "Straight to Zero: Why Linearly Decaying the Learning Rate to Zero Works Best
#   for LLMs", ICLR 2025, https://arxiv.org/abs/2502.15938.
# - Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations",
#   NeurIPS 2024, https://arxiv.org/abs/2405.18392 (WSD).
# - Wang & Aitchison, "How to set AdamW's weight decay as you scale model and dataset size",
#   ICML 2025, https://arxiv.org/abs/2405.13698 (AdamW as an EMA).
#
# Figures are written to the folder named by the environment variable `JAXLAB_NOTEBOOK_OUT`
# (a fresh temporary folder when it is unset).

# %%
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from jaxlab import data, losses, optim, train

OUT = Path(os.environ.get("JAXLAB_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="jaxlab-notebook-"))
OUT.mkdir(parents=True, exist_ok=True)
print("figures go to", OUT)

# %% [markdown]
# ## A small problem
#
# Softmax regression (64 inputs, 10 classes) on 512 standardised digits, full batch. The loss
# uses jaxlab's per-example cross-entropy reduced by `losses.weighted_mean`.
# `run(tx, steps)` trains with any transform through `train.full_batch_descent` (one `lax.scan`),
# which passes `value=` and `loss_fn=` to `update` (transforms that do not use them ignore them
# through `optax.with_extra_args_support`).

# %%
ds = data.standardize(data.load_dataset("digits"))
batch = {"x": jnp.asarray(ds.x_train[:512]), "y": jnp.asarray(ds.y_train[:512])}
init_params = {"w": jnp.zeros((64, ds.num_classes)), "b": jnp.zeros((ds.num_classes,))}


def loss_fn(params, batch):
    logits = batch["x"] @ params["w"] + params["b"][None, :]
    return losses.weighted_mean(losses.softmax_cross_entropy(logits, batch["y"]))


def run(tx, steps=100, params=init_params):
    return train.full_batch_descent(loss_fn, tx, params, batch, steps)


# %% [markdown]
# ## 1. SAM around MoMo
#
# MoMo's step size is adaptive (a Polyak-type step capped at `learning_rate`), so the same
# `learning_rate=1.0` works with and without the SAM wrapper. SAM's state records diagnostics
# of the last step: the clean and perturbed losses and their difference, the sharpness.

# %%
runs = {
    "SGD (lr 0.1)": optax.sgd(0.1),
    "MoMo": optim.momo(learning_rate=1.0),
    "SAM(MoMo), ρ = 0.05": optim.sam(optim.momo(learning_rate=1.0), rho=0.05),
}
histories, states = {}, {}
for name, tx in runs.items():
    _, states[name], histories[name] = run(tx)
    print(f"{name:22s} loss {float(histories[name][0]):.3f} -> {float(histories[name][-1]):.4f}")
diag = states["SAM(MoMo), ρ = 0.05"].diagnostics
print(
    f"SAM's last step: L(w) = {float(diag.loss):.4f}, L(w + ε) = {float(diag.perturbed_loss):.4f}"
)

fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
for name, history in histories.items():
    ax.plot(history, label=name)
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("training loss")
ax.legend()
fig.savefig(OUT / "sam_momo.png", dpi=120)

# %% [markdown]
# ## 2. Weight-decay modes: who shrinks how much
#
# With a zero gradient only the decay acts, which isolates the three conventions. Parameters
# start at 1; the learning rate follows a D2Z schedule from η_max = 0.01 over 100 steps; λ = 0.01.
#
# - `coupled` multiplies by (1 − η_t λ) each step: a total shrink of exp(−λ Σ η_t) ≈ 0.995;
# - `independent` multiplies by (1 − (η_t/η_max) λ): λ is the per-step shrink at the peak,
#   exp(−λ Σ η_t/η_max) ≈ 0.61;
# - `l2` feeds λθ through Adam's normalisation, so each step moves by ≈ η_t whatever λ is
#   (the reason AdamW was introduced).

# %%
TOTAL, PEAK, DECAY = 100, 1e-2, 1e-2
d2z = optim.warmup_linear_decay_to_zero(PEAK, TOTAL)
ones = {"w": jnp.ones((3,))}


def shrink_path(tx):
    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params["w"][0]

    _, path = jax.lax.scan(step, (ones, tx.init(ones)), length=TOTAL)
    return np.concatenate([[1.0], np.asarray(path)])


trajectories = {}
for mode in optim.WEIGHT_DECAY_MODES:
    tx = optim.adamw(d2z, weight_decay=DECAY, weight_decay_mode=mode, peak_learning_rate=PEAK)
    trajectories[mode] = shrink_path(tx)
    print(f"{mode:12s} θ_T = {trajectories[mode][-1]:.4f}")

fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
for mode, path in trajectories.items():
    ax.plot(path, label=mode)
ax.set_xlabel("step")
ax.set_ylabel("θ (zero gradient)")
ax.set_title("adamw: weight-decay modes under a D2Z schedule")
ax.legend()
fig.savefig(OUT / "weight_decay_modes.png", dpi=120)

# %% [markdown]
# `coupled` is exactly `optax.adamw` (with any schedule), and `optim.sgdw` is the same
# construction around `optax.trace` (momentum): all of them are `optim.with_weight_decay(inner,
# learning_rate, weight_decay=..., mode=...)` for some `inner`.

# %%
schedule = optim.warmup_cosine_to_fraction(0.05, 60, 10)
ours, _, _ = run(optim.adamw(schedule, weight_decay=0.1), steps=60)
reference, _, _ = run(optax.adamw(schedule, weight_decay=0.1), steps=60)
gap = max(
    jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), ours, reference))
)
print(f"max |adamw(coupled) − optax.adamw| after 60 steps: {gap:.2e}")

sgdw = optim.sgdw(0.1, momentum=0.9, weight_decay=1e-3)
by_hand = optim.with_weight_decay(optax.trace(decay=0.9), 0.1, weight_decay=1e-3)
sgdw_params, _, _ = run(sgdw, steps=20)
hand_params, _, _ = run(by_hand, steps=20)

# %% [markdown]
# ## 3. Schedules
#
# D2Z decays linearly to exactly zero; WSD holds the peak and decays only in the last steps; the
# common baseline is cosine to 10 % of the peak. With coupled decay, AdamW's weights are an EMA of
# the updates with per-step rate η_t λ; `optim.adamw_update_weights` gives the weight
# c_t = η_t λ Π_{s>t}(1 − η_s λ) of update t in the final weights (here η_max = 1e-3 and λ = 5,
# an EMA timescale 1/(η_max λ) of 200 steps). Under D2Z the last updates get almost no weight and
# the final weights average many earlier ones; cosine to 10 % keeps weight on the last steps; WSD
# puts the most weight on the steps just before its cooldown.

# %%
T = 1000
steps = jnp.arange(T)
schedules = {
    "D2Z": optim.warmup_linear_decay_to_zero(1e-3, T, 50),
    "WSD (20 % cooldown)": optim.warmup_stable_decay(1e-3, T, 50, decay_steps=200),
    "cosine to 10 %": optim.warmup_cosine_to_fraction(1e-3, T, 50),
}
fig, (ax_lr, ax_w) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
for name, sched in schedules.items():
    lrs = jax.vmap(sched)(steps)
    ax_lr.plot(steps, lrs, label=name)
    ax_w.plot(steps, optim.adamw_update_weights(lrs, weight_decay=5.0), label=name)
ax_lr.set_xlabel("step")
ax_lr.set_ylabel("learning rate")
ax_lr.legend()
ax_w.set_xlabel("step t")
ax_w.set_ylabel("weight c_t of update t in θ_T (λ = 5)")
fig.savefig(OUT / "schedules.png", dpi=120)

# %% [markdown]
# ## 4. Masks
#
# A decay mask (a pytree of booleans, or a function of the parameters returning one) selects the
# leaves that are decayed, typically not biases and normalisation scales. `optax.masked` applies
# a transform to some leaves only; with `optax.set_to_zero` it freezes them.


# %%
def no_bias(params):
    return {"w": True, "b": False}


start = {"w": jnp.ones((64, 10)), "b": jnp.ones((10,))}
masked_decay = optim.adamw(0.1, weight_decay=0.5, mask=no_bias)
state = masked_decay.init(start)
zero_grads = jax.tree.map(jnp.zeros_like, start)
updates, state = masked_decay.update(zero_grads, state, start)
decayed = optax.apply_updates(start, updates)
print("one zero-gradient step: w ->", float(decayed["w"][0, 0]), " b ->", float(decayed["b"][0]))

frozen_bias = optax.chain(
    optax.masked(optax.set_to_zero(), {"w": False, "b": True}),
    optim.sgdw(0.1, weight_decay=1e-3),
)
frozen_params, _, frozen_history = run(frozen_bias, steps=50)
print(
    "bias after 50 steps with optax.masked(set_to_zero):", float(jnp.abs(frozen_params["b"]).max())
)

# %% [markdown]
# ## 5. `optax.inject_hyperparams`
#
# Wrapping a jaxlab constructor exposes its numeric arguments in the optimizer state, where they
# can be read and changed between steps (here: MoMo's cap on the step size is cut by 10× halfway,
# inside a SAM wrapper).

# %%
tx = optim.sam(optax.inject_hyperparams(optim.momo)(learning_rate=1.0), rho=0.05)


@jax.jit
def train_step(params, state):
    value, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, state = tx.update(
        grads, state, params, value=value, loss_fn=lambda p: loss_fn(p, batch)
    )
    return optax.apply_updates(params, updates), state, value


params, state = init_params, tx.init(init_params)
for step in range(40):
    if step == 20:
        state.inner_state.hyperparams["learning_rate"] = jnp.asarray(0.1)
    params, state, value = train_step(params, state)
print("MoMo's learning rate now:", float(state.inner_state.hyperparams["learning_rate"]))

# %% [markdown]
# ## Check
#
# Coupled `optim.adamw` matches `optax.adamw` to float32 round-off, `sgdw` is
# `with_weight_decay(optax.trace(...))`, SAM(MoMo) reduces the loss, the independent decay
# follows its closed form Π_t(1 − λ η_t/η_max), the masked leaves are not decayed (or not
# updated at all), and the injected learning rate took effect.

# %%
assert gap < 1e-5, gap
jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), sgdw_params, hand_params
)
sam_history = histories["SAM(MoMo), ρ = 0.05"]
assert float(sam_history[-1]) < 0.2 * float(sam_history[0]), (sam_history[0], sam_history[-1])
assert float(diag.perturbed_loss) >= float(diag.loss)
lrs = np.asarray(jax.vmap(d2z)(jnp.arange(TOTAL)), np.float64)
np.testing.assert_allclose(
    trajectories["independent"][-1], np.prod(1 - DECAY * lrs / PEAK), rtol=1e-4
)
np.testing.assert_allclose(trajectories["coupled"][-1], np.prod(1 - DECAY * lrs), rtol=1e-5)
assert float(decayed["b"][0]) == 1.0 and float(decayed["w"][0, 0]) < 1.0
assert float(jnp.abs(frozen_params["b"]).max()) == 0.0
assert state.inner_state.hyperparams["learning_rate"] == np.float32(0.1)
