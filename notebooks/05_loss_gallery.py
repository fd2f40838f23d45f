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
# # A gallery of losses and their gradients: classification and contrastive
#
# Classification losses differ most in how hard they push on examples that are already right,
# and how hard on those that are wrong. A one-parameter family of logits makes that visible: with
# C = 10 classes, the true class's logit is the *margin* m and all other logits are 0, so
# m = z_y − max_{j≠y} z_j. We plot each loss of `jaxlab.losses` and its derivative with respect
# to the true logit, ∂ℓ/∂z_y (computed with `jax.grad`), against m:
#
# - cross-entropy −log p_y, with and without label smoothing (Szegedy et al. 2016);
# - focal loss −(1 − p_y)^γ log p_y (Lin et al. 2017), which down-weights easy examples, and
#   dual focal loss (Tao et al. 2023);
# - Poly-1, −log p_y + ε(1 − p_y) (Leng et al. 2022);
# - squentropy, cross-entropy plus the mean squared wrong-class logit (Hui, Belkin & Wright
#   2023);
# - StableMax cross-entropy, with s(x) = x + 1 for x ≥ 0 and 1/(1 − x) below instead of eˣ
#   (Prieto et al. 2025): its gradient decays polynomially, not exponentially;
# - the sparsemax loss (Martins & Astudillo 2016), exactly zero once m ≥ 1, like a hinge.
#
# All of them return per-example values (reduce with `losses.weighted_mean`).
#
# References:
# - Lin, Goyal, Girshick, He & Dollár, "Focal Loss for Dense Object Detection", ICCV 2017,
#   https://arxiv.org/abs/1708.02002.
# - Tao, Dong & Xu, "Dual Focal Loss for Calibration", ICML 2023,
#   https://arxiv.org/abs/2305.13665.
# - Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
#   Functions", ICLR 2022, https://arxiv.org/abs/2204.12511.
# - Hui, Belkin & Wright, "Cut your Losses with Squentropy", ICML 2023,
#   https://arxiv.org/abs/2302.03952.
# - Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability", ICLR 2025,
#   https://arxiv.org/abs/2501.04697.
# - Martins & Astudillo, "From Softmax to Sparsemax", ICML 2016,
#   https://arxiv.org/abs/1602.02068.
# - Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016,
#   https://arxiv.org/abs/1512.00567 (label smoothing).
#
# Figures are written to the folder named by the environment variable `JAXLAB_NOTEBOOK_OUT`
# (a fresh temporary folder when it is unset).

# %%
import os
import tempfile
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxlab import losses

OUT = Path(os.environ.get("JAXLAB_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="jaxlab-notebook-"))
OUT.mkdir(parents=True, exist_ok=True)
print("figures go to", OUT)

# %% [markdown]
# ## The losses
#
# Each entry maps `(logits [N, C], labels [N])` to per-example losses `[N]`.

# %%
NUM_CLASSES = 10
gallery = {
    "cross-entropy": losses.softmax_cross_entropy,
    "CE, label smoothing 0.1": partial(losses.softmax_cross_entropy, label_smoothing=0.1),
    "focal, γ = 2": partial(losses.softmax_focal_loss, gamma=2.0),
    "dual focal, γ = 2": partial(losses.dual_focal_loss, gamma=2.0),
    "poly-1, ε = 1": partial(losses.poly1_cross_entropy, epsilon=1.0),
    "squentropy": losses.squentropy,
    "StableMax CE": losses.stablemax_cross_entropy,
    "sparsemax loss": losses.sparsemax_loss,
}


def margin_logits(margin):
    """Logits ``[N, C]`` with the true class (0) at ``margin`` and the others at 0."""
    return jnp.zeros((margin.shape[0], NUM_CLASSES)).at[:, 0].set(margin)


def along_margin(loss, margins):
    """The loss and ∂loss/∂z_y at each margin (one example of class 0 per margin)."""

    def single(m):
        return loss(margin_logits(m[None]), jnp.zeros((1,), jnp.int32))[0]

    return jax.jit(jax.vmap(jax.value_and_grad(single)))(margins)


margins = jnp.linspace(-5.0, 8.0, 261)
curves = {name: along_margin(loss, margins) for name, loss in gallery.items()}

# %% [markdown]
# ## Loss and gradient against the margin
#
# Far on the wrong side (m ≪ 0) the softmax losses and the sparsemax loss grow linearly with
# slope −1 (with label smoothing α the slope is −(1 − α(C − 1)/C) = −0.91); StableMax CE grows
# only logarithmically there (s(x) = 1/(1 − x) for x < 0), so its pull on badly wrong examples
# fades. On the right side the difference is in the tails: cross-entropy's gradient decays like
# e^{−m}, the focal loss's like e^{−(γ+1)m} (it stops learning from easy examples), StableMax's
# only like 1/m², the sparsemax loss is exactly flat beyond m = 1, and label smoothing has a
# minimum at a finite margin (it pulls confident logits back). Squentropy coincides with
# cross-entropy on this slice, since its extra term penalises the wrong-class logits, here 0 (the
# dashed black line is cross-entropy). The dual focal loss jumps at m = 0: its p_j is the largest
# probability strictly below p_y (as in the official code), which exists only once the true class
# leads; for m < 0 it coincides with the focal loss.

# %%
fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
styles = {"cross-entropy": {"color": "k", "linestyle": "--", "zorder": 3}}
for name, (values, grads) in curves.items():
    ax_loss.plot(margins, values, label=name, **styles.get(name, {}))
    ax_grad.plot(margins, grads, label=name, **styles.get(name, {}))
ax_loss.set_ylim(-0.1, 6.0)
ax_loss.set_xlabel("margin m = z_y − max_{j≠y} z_j")
ax_loss.set_ylabel("loss")
ax_loss.legend(fontsize=8)
ax_grad.set_xlabel("margin m")
ax_grad.set_ylabel("∂loss / ∂z_y")
ax_grad.axhline(0.0, color="k", linewidth=0.5)
fig.savefig(OUT / "loss_gallery.png", dpi=120)

# %% [markdown]
# The tails on a log scale: |∂ℓ/∂z_y| for the confident side m > 0.

# %%
fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
positive = margins > 0
for name, (_, grads) in curves.items():
    ax.semilogy(
        margins[positive], jnp.abs(grads[positive]) + 1e-12, label=name, **styles.get(name, {})
    )
ax.set_ylim(1e-8, 2.0)
ax.set_xlabel("margin m")
ax.set_ylabel("|∂loss / ∂z_y|")
ax.legend(fontsize=7)
fig.savefig(OUT / "loss_gallery_tails.png", dpi=120)

# %% [markdown]
# ## Contrastive losses
#
# The same exercise for paired-view losses. With B = 8 pairs, view a_i = e_i and view
# b_i = s·e_i + √(1 − s²)·e_B (e_B is orthogonal to every a_i), so every positive pair has cosine
# similarity s and every negative pair 0. We plot against s:
#
# - InfoNCE / CLIP (`losses.infonce_loss`) at two temperatures: a small τ makes the loss a hinge
#   on s, a large one keeps pushing positives together;
# - SigLIP's pairwise sigmoid loss (`losses.siglip_loss`, t = 10, b = −10): each negative pair
#   costs log(1 + e^{b}) whatever s is;
# - the alignment loss ‖â − b̂‖² = 2 − 2s of Wang & Isola (`losses.alignment_loss`), which has no
#   negatives at all (it is paired with a uniformity term).
#
# References: van den Oord, Li & Vinyals, https://arxiv.org/abs/1807.03748 (InfoNCE); Radford
# et al., https://arxiv.org/abs/2103.00020 (CLIP); Zhai et al., https://arxiv.org/abs/2303.15343
# (SigLIP); Wang & Isola, https://arxiv.org/abs/2005.10242 (alignment and uniformity).

# %%
PAIRS = 8
contrastive = {
    "InfoNCE, τ = 0.1": partial(losses.infonce_loss, temperature=0.1),
    "InfoNCE, τ = 0.5": partial(losses.infonce_loss, temperature=0.5),
    "SigLIP, t = 10, b = −10": losses.siglip_loss,
    "alignment, α = 2": losses.alignment_loss,
}


def paired_views(s):
    """Views ``[B, B + 1]`` whose positive pairs have cosine ``s`` and negative pairs 0."""
    z_a = jnp.eye(PAIRS, PAIRS + 1)
    shared = jnp.zeros((PAIRS, PAIRS + 1)).at[:, PAIRS].set(1.0)
    return z_a, s * z_a + jnp.sqrt(1.0 - s**2) * shared


cosines = jnp.linspace(-0.99, 0.99, 199)
contrastive_curves = {}
for name, loss in contrastive.items():

    def total(s, loss=loss):
        return loss(*paired_views(s))[0]

    contrastive_curves[name] = jax.jit(jax.vmap(jax.value_and_grad(total)))(cosines)

fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for name, (values, grads) in contrastive_curves.items():
    ax_loss.plot(cosines, values, label=name)
    ax_grad.plot(cosines, grads, label=name)
ax_loss.set_xlabel("cosine similarity s of the positive pairs")
ax_loss.set_ylabel("loss")
ax_loss.legend(fontsize=8)
ax_grad.set_xlabel("s")
ax_grad.set_ylabel("∂loss / ∂s")
fig.savefig(OUT / "contrastive_gallery.png", dpi=120)

# %% [markdown]
# ## Check
#
# The limit cases recover cross-entropy (focal and dual focal with γ = 0, Poly-1 with ε = 0,
# squentropy when the wrong-class logits are 0), cross-entropy and its gradient match their closed
# forms log(1 + (C − 1)e^{−m}) and p_y − 1 with p_y = 1/(1 + (C − 1)e^{−m}), and the sparsemax
# loss vanishes exactly when m ≥ 1. On the paired views, InfoNCE is log(1 + (B − 1)e^{−s/τ}),
# SigLIP softplus(−(ts + b)) + (B − 1)·softplus(b) and alignment 2 − 2s.

# %%
labels = jnp.zeros(margins.shape, jnp.int32)
logits = margin_logits(margins)
ce, ce_grad = curves["cross-entropy"]
np.testing.assert_allclose(
    losses.softmax_focal_loss(logits, labels, gamma=0.0), ce, rtol=1e-5, atol=1e-6
)
np.testing.assert_allclose(
    losses.dual_focal_loss(logits, labels, gamma=0.0), ce, rtol=1e-5, atol=1e-6
)
np.testing.assert_allclose(
    losses.poly1_cross_entropy(logits, labels, epsilon=0.0), ce, rtol=1e-5, atol=1e-6
)
np.testing.assert_allclose(curves["squentropy"][0], ce, rtol=1e-5, atol=1e-6)

m = np.asarray(margins, np.float64)
closed_form = np.log1p((NUM_CLASSES - 1) * np.exp(-m))
p_true = 1.0 / (1.0 + (NUM_CLASSES - 1) * np.exp(-m))
np.testing.assert_allclose(ce, closed_form, rtol=1e-5, atol=1e-6)
np.testing.assert_allclose(ce_grad, p_true - 1.0, rtol=1e-5, atol=1e-6)

sparsemax_values = np.asarray(curves["sparsemax loss"][0])
assert np.all(sparsemax_values[m >= 1.0] == 0.0) and np.all(sparsemax_values[m < 0.99] > 0.0)

c = np.asarray(cosines, np.float64)
infonce, _ = contrastive_curves["InfoNCE, τ = 0.1"]
np.testing.assert_allclose(infonce, np.log1p((PAIRS - 1) * np.exp(-c / 0.1)), rtol=1e-5, atol=1e-6)
siglip, _ = contrastive_curves["SigLIP, t = 10, b = −10"]
softplus = np.logaddexp(0.0, -(10.0 * c - 10.0)) + (PAIRS - 1) * np.logaddexp(0.0, -10.0)
np.testing.assert_allclose(siglip, softplus, rtol=1e-5, atol=1e-6)
alignment, alignment_grad = contrastive_curves["alignment, α = 2"]
np.testing.assert_allclose(alignment, 2.0 - 2.0 * c, rtol=1e-5, atol=1e-6)
np.testing.assert_allclose(alignment_grad, -2.0, rtol=1e-4)
