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
# # Loss landscapes of SGD and SAM solutions
#
# Plots of the loss along random directions are only comparable between networks if the
# directions are scaled to the weights: Li et al. rescale each filter (each output unit of a
# dense layer) of a Gaussian direction to the norm of the corresponding filter of the weights,
# "filter normalisation", which removes the scale invariance of ReLU networks. This notebook
#
# 1. trains the same MLP from the same initialisation with SGD-momentum and with SAM around
#    SGD-momentum, using the `jaxlab.train` step (`train.make_train_step` calls
#    `optim.sam` with the batch loss through `TrainState.apply_gradients`);
# 2. draws 1-D and 2-D filter-normalised slices around each solution
#    (`curvature.filter_normalized_direction`, `loss_surface_1d`, `loss_surface_2d`,
#    `plot_surface_1d`, `plot_surface_2d`) and measures their sharpness λ_max;
# 3. evaluates the loss on the straight line between the two solutions and the barrier on it
#    (`curvature.loss_barrier`).
#
# References:
# - Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of Neural Nets",
#   NeurIPS 2018, https://arxiv.org/abs/1712.09913.
# - Goodfellow, Vinyals & Saxe, "Qualitatively characterizing neural network optimization
#   problems", ICLR 2015, https://arxiv.org/abs/1412.6544.
# - Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for Efficiently Improving
#   Generalization", ICLR 2021, https://arxiv.org/abs/2010.01412.
# - Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery Ticket
#   Hypothesis", ICML 2020, https://arxiv.org/abs/1912.05671.
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

from jaxlab import curvature, data, models, optim, train

OUT = Path(os.environ.get("JAXLAB_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="jaxlab-notebook-"))
OUT.mkdir(parents=True, exist_ok=True)
print("figures go to", OUT)

# %% [markdown]
# ## Training SGD and SAM with the train step
#
# A 64-32-10 MLP on the digits training split, batches of 64 from `data.get_batch` (a pure
# function of the seed and the step, so both runs see the same batches), 300 steps each.

# %%
ds = data.load_dataset("digits")
model = models.create_model("mlp", num_classes=ds.num_classes, features=(32,))
params0, model_state = models.init_model(model, jax.random.key(0), ds.x_train[:1])
loss_fn, _, curvature_loss_fn = train.classification_objective(model)
train_step = jax.jit(train.make_train_step(loss_fn))
full = (model_state, {"x": jnp.asarray(ds.x_train), "y": jnp.asarray(ds.y_train)})

LR, MOMENTUM, STEPS = 0.05, 0.9, 300
optimizers = {
    "SGD": optax.sgd(LR, momentum=MOMENTUM),
    "SAM": optim.sam(optax.sgd(LR, momentum=MOMENTUM), rho=0.05),
}
solutions = {}
for name, tx in optimizers.items():
    state = train.TrainState.create(
        params=params0, tx=tx, key=jax.random.key(1), model_state=model_state
    )
    for step in range(STEPS):
        batch = data.get_batch(ds.x_train, ds.y_train, step, batch_size=64, seed=0)
        state, metrics = train_step(state, batch)
    solutions[name] = state.params
    print(
        f"{name}: final batch loss {float(metrics['loss']):.4f}, "
        f"full training loss {float(curvature_loss_fn(state.params, full)):.4f}"
    )

# %% [markdown]
# ## Sharpness of each solution
#
# The top Hessian eigenvalue of the full training loss (`curvature_loss_fn` runs the model in
# inference mode, a deterministic function of the parameters).

# %%
sharpness = {
    name: float(
        curvature.hessian_eigenvalues(
            curvature_loss_fn, p, full, k=1, key=jax.random.key(2)
        ).eigenvalues[0]
    )
    for name, p in solutions.items()
}
print("λ_max:", sharpness)

# %% [markdown]
# ## Filter-normalised 1-D and 2-D slices
#
# Each solution gets its own pair of random directions, normalised filter by filter to its
# weights (biases are left at zero, the "biasbn" rule), so the axes of the two plots are on the
# same relative scale.

# %%
alphas = jnp.linspace(-1.0, 1.0, 41)
grid = jnp.linspace(-1.0, 1.0, 21)
slices, surfaces = {}, {}
fig1, ax1 = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
fig2, axes2 = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for (name, p), ax in zip(solutions.items(), axes2, strict=True):
    key_x, key_y = jax.random.split(jax.random.key(3))
    dx = curvature.filter_normalized_direction(key_x, p)
    dy = curvature.filter_normalized_direction(key_y, p)
    slices[name] = curvature.loss_surface_1d(curvature_loss_fn, p, full, dx, alphas, chunk_size=41)
    surfaces[name] = curvature.loss_surface_2d(
        curvature_loss_fn, p, full, dx, dy, grid, grid, chunk_size=64
    )
    curvature.plot_surface_1d(alphas, slices[name], ax=ax1, label=name)
    curvature.plot_surface_2d(grid, grid, surfaces[name], ax=ax, log=True)
    ax.set_title(f"{name}: log10 loss, λ_max = {sharpness[name]:.2f}")
fig1.savefig(OUT / "landscape_1d.png", dpi=120)
fig2.savefig(OUT / "landscape_2d.png", dpi=120)

# %% [markdown]
# ## Linear interpolation between the solutions
#
# θ(α) = (1 − α)θ_SGD + α θ_SAM for α in [0, 1]. `loss_barrier` evaluates the loss on this
# segment (`curvature.linear_interpolation` does the same on any grid of α, e.g. to extrapolate)
# and returns the largest excess over the chord between the endpoints. Both runs start from the
# same initialisation and see the same batches, so they typically end in the same basin and the
# barrier is small.

# %%
barrier = curvature.loss_barrier(
    curvature_loss_fn, solutions["SGD"], solutions["SAM"], full, num_points=21
)
print(f"barrier {float(barrier.barrier):.4f} at α = {float(barrier.alpha):.2f}")
ax = curvature.plot_surface_1d(barrier.alphas, barrier.losses, label="(1 − α) SGD + α SAM")
chord = (1 - barrier.alphas) * barrier.losses[0] + barrier.alphas * barrier.losses[-1]
ax.plot(barrier.alphas, chord, "k:", label="chord")
ax.legend()
ax.figure.savefig(OUT / "interpolation.png", dpi=120)

# %% [markdown]
# ## Check
#
# Every surface is finite; on each 1-D slice and 2-D surface the solution (the centre) lies in
# the bottom 5 % of the surface's range (minibatch SGD stops near, not exactly at, the minimum of
# the full-batch loss, so the lowest grid point may be a few steps away); and the barrier is
# finite and non-negative (its chord passes through both endpoints, so the gap is 0 there).

# %%
for name in solutions:
    assert np.all(np.isfinite(np.asarray(slices[name]))), name
    assert np.all(np.isfinite(np.asarray(surfaces[name]))), name
    for values in (np.asarray(slices[name]), np.asarray(surfaces[name])):
        centre = values[(len(values) // 2,) * values.ndim]
        assert centre - values.min() <= 0.05 * (values.max() - values.min()), (name, centre)
assert np.all(np.isfinite(np.asarray(barrier.losses)))
assert np.isfinite(float(barrier.barrier)) and float(barrier.barrier) >= 0.0
