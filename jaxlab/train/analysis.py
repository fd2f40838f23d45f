"""Curvature of a trained solution: top eigenvalues, trace, spectral density, a 1-D landscape.

Used by ``scripts/curvature.py`` (one checkpoint) and ``scripts/compare_optimizers.py`` (the
README's main job). All measures are of the inference-mode loss on one fixed batch, each a
single compiled program from :mod:`jaxlab.curvature`.
"""

import jax
import numpy as np

from jaxlab.curvature.density import density_grid, hessian_density, spectral_density
from jaxlab.curvature.eigen import hessian_eigenvalues
from jaxlab.curvature.landscape import filter_normalized_direction, loss_surface_1d
from jaxlab.curvature.trace import hessian_trace


def analyze_solution(
    curvature_loss_fn,
    params,
    model_state,
    batch,
    *,
    key,
    top_k: int = 5,
    trace_probes: int = 100,
    density_runs: int = 5,
    density_steps: int = 80,
    landscape_radius: float = 1.0,
    landscape_points: int = 41,
) -> dict:
    """Curvature summary of ``curvature_loss_fn(params, (model_state, batch))``.

    Args:
      curvature_loss_fn: ``(params, (model_state, batch)) -> loss`` (inference mode).
      params, model_state, batch: the solution and the batch measured on.
      key: PRNG key (Lanczos start, trace probes, SLQ probes, landscape direction).
      top_k: eigenvalues of largest value (Lanczos).
      trace_probes: Hutchinson probes.
      density_runs, density_steps: stochastic Lanczos quadrature runs and steps.
      landscape_radius, landscape_points: the 1-D slice along a filter-normalised random
        direction d, at α ∈ [−radius, radius].

    Returns:
      A dict: ``loss``, ``eigenvalues`` (descending), ``lambda_max``, ``trace``,
      ``trace_stderr`` (floats/lists) and arrays ``density_grid``, ``density``,
      ``landscape_alphas``, ``landscape_losses``.
    """
    data = (model_state, batch)
    k_eig, k_trace, k_density, k_direction = jax.random.split(key, 4)
    eig = hessian_eigenvalues(curvature_loss_fn, params, data, k=top_k, key=k_eig)
    trace, stderr = hessian_trace(
        curvature_loss_fn, params, data, key=k_trace, num_probes=trace_probes
    )
    nodes, weights = hessian_density(
        curvature_loss_fn, params, data, key=k_density, num_steps=density_steps,
        num_runs=density_runs,
    )  # fmt: skip
    grid = density_grid(nodes, weights)
    direction = filter_normalized_direction(k_direction, params)
    alphas = np.linspace(-landscape_radius, landscape_radius, landscape_points)
    losses = loss_surface_1d(curvature_loss_fn, params, data, direction, alphas)
    eigenvalues = [float(v) for v in np.asarray(eig.eigenvalues)]
    return {
        "loss": float(curvature_loss_fn(params, data)),
        "eigenvalues": eigenvalues,
        "lambda_max": eigenvalues[0],
        "trace": float(trace),
        "trace_stderr": float(stderr),
        "density_grid": np.asarray(grid),
        "density": np.asarray(spectral_density(nodes, weights, grid)),
        "landscape_alphas": alphas,
        "landscape_losses": np.asarray(losses),
    }


def scalars(summary: dict) -> dict:
    """The JSON-ready part of :func:`analyze_solution`'s summary (no arrays)."""
    return {k: v for k, v in summary.items() if not isinstance(v, np.ndarray)}


def plot_summaries(summaries: dict[str, dict], out_dir) -> dict[str, str]:
    """``density.png`` and ``landscape.png`` with one curve per named summary; returns paths."""
    import os

    import matplotlib.pyplot as plt

    from jaxlab.curvature.density import plot_density

    paths = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in summaries.items():
        plot_density(s["density_grid"], s["density"], ax=ax, label=name)
    ax.legend()
    ax.set_title("Hessian spectral density (SLQ)")
    paths["density"] = os.path.join(out_dir, "density.png")
    fig.savefig(paths["density"], dpi=120, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in summaries.items():
        ax.plot(s["landscape_alphas"], s["landscape_losses"], label=name)
    ax.set_xlabel("α (filter-normalised random direction)")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    paths["landscape"] = os.path.join(out_dir, "landscape.png")
    fig.savefig(paths["landscape"], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths
