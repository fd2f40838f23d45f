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
# # Hessian spectra: top eigenvalues, density, per-layer blocks, GGN vs Hessian
#
# The Hessian of a trained classifier's loss has a characteristic spectrum: a *bulk* of
# eigenvalues near zero and a handful of *outliers*, about one per class (Sagun et al.; Papyan).
# The outliers come from the Gauss-Newton part G = Jᵀ H_out J of the Hessian (the rest,
# Σ ∂ℓ/∂z · ∇²z, is small at a well-fitted point), so at a trained point the top eigenvalues of
# the Hessian and of the GGN nearly coincide.
#
# This notebook, on a small MLP trained on the digits data set with `jaxlab` curvature tools:
#
# 1. trains a 64-32-10 MLP and computes its top 20 Hessian eigenvalues
#    (`curvature.hessian_eigenvalues`: Lanczos on Hessian-vector products);
# 2. draws the spectral density by stochastic Lanczos quadrature (`curvature.hessian_density`,
#    `density_grid`, `spectral_density`, `plot_density`);
# 3. restricts the Hessian to each layer with `mask=` (per-layer spectra), and checks the output
#    layer's block against its dense Hessian, `np.linalg.eigvalsh(jax.hessian(...))`;
# 4. compares the top of the GGN spectrum (`curvature.ggn_operator` +
#    `curvature.lanczos_eigenvalues`) with the Hessian's.
#
# References:
# - Sagun, Evci, Güney, Dauphin & Bottou, "Empirical Analysis of the Hessian of
#   Over-Parametrized Neural Networks", 2017, https://arxiv.org/abs/1706.04454.
# - Ghorbani, Krishnan & Xiao, "An Investigation into Neural Net Optimization via Hessian
#   Eigenvalue Density", ICML 2019, https://arxiv.org/abs/1901.10159.
# - Papyan, "Traces of Class/Cross-Class Structure Pervade Deep Learning Spectra", JMLR 2020,
#   https://arxiv.org/abs/2008.11865.
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
from jax.flatten_util import ravel_pytree

from jaxlab import curvature, data, losses, models, train

OUT = Path(os.environ.get("JAXLAB_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="jaxlab-notebook-"))
OUT.mkdir(parents=True, exist_ok=True)
print("figures go to", OUT)

ds = data.load_dataset("digits")
NUM_CLASSES = ds.num_classes

# %% [markdown]
# ## 1. A trained MLP and its top eigenvalues
#
# A 64-32-10 MLP (2,410 parameters) trained by full-batch Adam on 512 digits to near-zero
# training error. The loss is the third function of `train.classification_objective`,
# `curvature_loss_fn(params, (model_state, batch))`: the inference-mode mean cross-entropy, a
# deterministic function of the parameters as the curvature tools need.

# %%
model = models.create_model("mlp", num_classes=NUM_CLASSES, features=(32,))
params, model_state = models.init_model(model, jax.random.key(0), ds.x_train[:1])
_, _, loss_fn = train.classification_objective(model)
batch = (model_state, {"x": jnp.asarray(ds.x_train[:512]), "y": jnp.asarray(ds.y_train[:512])})

tx = optax.adam(1e-2)


params, _, history = jax.jit(
    lambda p: train.full_batch_descent(loss_fn, tx, p, batch, num_steps=300)
)(params)
print(f"training loss {float(history[0]):.3f} -> {float(history[-1]):.4f}")

K = 2 * NUM_CLASSES
everything = jax.tree.map(lambda _: True, params)  # the whole Hessian, see section 3
hess = curvature.hessian_eigenvalues(
    loss_fn, params, batch, k=K, key=jax.random.key(2), mask=everything
)
print("top Hessian eigenvalues:", np.round(np.asarray(hess.eigenvalues), 3))

# %% [markdown]
# ## 2. Spectral density by stochastic Lanczos quadrature
#
# Each of `num_runs` Rademacher probes gives a `num_steps`-node Gauss quadrature of the spectral
# measure; Gaussian broadening turns the nodes into a density. The linear view shows the bulk
# piled up at zero; the log-|λ| view spreads the decades and shows the outliers.

# %%
nodes, weights = curvature.hessian_density(
    loss_fn, params, batch, key=jax.random.key(3), num_steps=60, num_runs=4
)
grid = curvature.density_grid(nodes, weights, num_points=1024)
density = curvature.spectral_density(nodes, weights, grid)
log_grid = curvature.density_grid(nodes, weights, num_points=1024, log_abs=True)
log_density = curvature.spectral_density(nodes, weights, log_grid, log_abs=True)

fig, (ax_lin, ax_log) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
curvature.plot_density(grid, density, ax=ax_lin)
ax_lin.set_title("Hessian spectral density (SLQ)")
curvature.plot_density(log_grid, log_density, ax=ax_log, log_abs=True)
ax_log.set_title("density of log |λ|")
fig.savefig(OUT / "hessian_density.png", dpi=120)

# %% [markdown]
# ## 3. Per-layer spectra with `mask=`
#
# A mask (a pytree of booleans, or a function of the parameters returning one) restricts the
# Hessian to a diagonal block: here each layer's kernel and bias. Masks are traced, not static,
# so these calls reuse the program compiled for the all-True mask of section 1. By Cauchy
# interlacing no block is sharper than the whole Hessian; here each layer's block alone has about
# half of λ_max, so the top eigenvector couples the two layers.


# %%
def layer_mask(name):
    return jax.tree_util.tree_map_with_path(lambda path, _: path[0].key == name, params)


per_layer = {
    name: curvature.hessian_eigenvalues(
        loss_fn, params, batch, k=K, key=jax.random.key(2), mask=layer_mask(name)
    ).eigenvalues
    for name in params
}
print("λ_max of each layer's block:", {name: float(e[0]) for name, e in per_layer.items()})
print("λ_max of the whole Hessian: ", float(hess.eigenvalues[0]))

fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
index = np.arange(1, K + 1)
ax.semilogy(index, hess.eigenvalues, "o", label="whole Hessian")
for name, eigenvalues in per_layer.items():
    ax.semilogy(index, eigenvalues, ".", label=f"block of {name}")
ax.set_xlabel("index i")
ax.set_ylabel("λ_i")
ax.legend()
fig.savefig(OUT / "per_layer_spectra.png", dpi=120)

# %% [markdown]
# The output layer's block is small enough (330 parameters) to form densely with `jax.hessian`
# with respect to the head's parameters alone; its eigenvalues are an independent check of the
# Lanczos results for that block.

# %%
head, unravel_head = ravel_pytree(params["head"])


def head_loss(flat_head):
    return loss_fn({**params, "head": unravel_head(flat_head)}, batch)


dense_head = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(head_loss))(head), np.float64))
print("dense head block, top 5:  ", np.round(dense_head[::-1][:5], 5))
print("Lanczos head block, top 5:", np.round(np.asarray(per_layer["head"][:5]), 5))

# %% [markdown]
# ## 4. Gauss-Newton vs Hessian
#
# `ggn_operator(apply_fn, output_loss_fn, params, batch)` builds v ↦ Jᵀ H_out J v from the
# network's outputs and the loss as a function of those outputs. Its top eigenvalues track the
# Hessian's outliers; the plot marks i = C, near which the outliers end (C − 1 or C of them,
# depending on the data and the training).


# %%
def apply_fn(params, batch):
    model_state, data_batch = batch
    return model.apply({"params": params, **model_state}, data_batch["x"])


def output_loss(logits, batch):
    return jnp.mean(losses.softmax_cross_entropy(logits, batch[1]["y"]))


@jax.jit
def ggn_eigenvalues(params, v0):
    matvec = curvature.ggn_operator(apply_fn, output_loss, params, batch)
    return curvature.lanczos_eigenvalues(matvec, v0, k=K)


v0 = jax.tree.map(lambda p: jax.random.normal(jax.random.key(5), p.shape), params)
ggn = ggn_eigenvalues(params, v0)
print("top GGN eigenvalues:", np.round(np.asarray(ggn.eigenvalues), 3))

fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
ax.semilogy(index, hess.eigenvalues, "o", label="Hessian")
ax.semilogy(index, ggn.eigenvalues, "x", label="GGN")
ax.axvline(NUM_CLASSES + 0.5, color="k", linestyle=":", label="C = number of classes")
ax.set_xlabel("index i")
ax.set_ylabel("λ_i")
ax.legend()
fig.savefig(OUT / "hessian_vs_ggn.png", dpi=120)

# %% [markdown]
# ## Check
#
# Lanczos reproduces the top eigenvalues of the dense Hessian of the output layer's block, the
# SLQ density integrates to one, no layer's block is sharper than the whole Hessian (Cauchy
# interlacing), and at the trained point the GGN's top eigenvalue is within 10 % of the
# Hessian's.

# %%
np.testing.assert_allclose(
    np.asarray(per_layer["head"]), dense_head[::-1][:K], rtol=1e-3, atol=1e-5
)
mass = float(jnp.sum(density) * (grid[1] - grid[0]))
assert abs(mass - 1.0) < 0.02, mass
for name, eigenvalues in per_layer.items():
    assert float(eigenvalues[0]) <= float(hess.eigenvalues[0]) * (1 + 1e-4), name
ratio = float(ggn.eigenvalues[0] / hess.eigenvalues[0])
assert abs(ratio - 1.0) < 0.1, ratio
