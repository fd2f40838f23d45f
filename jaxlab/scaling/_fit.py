"""Variable-projection least squares for laws that are linear in some parameters (host, float64).

For nonlinear parameters θ and a basis ``B(θ)`` (n × p), the linear coefficients are the
least-squares solution ``c(θ)``; θ minimises the projected residual ``B(θ) c(θ) − y`` (Golub &
Pereyra), started from the best point of a grid and refined with ``scipy.optimize.least_squares``.
"""

import numpy as np


def _project(basis_fn, y):
    def solve(theta):
        b = basis_fn(np.asarray(theta, np.float64))
        if not np.all(np.isfinite(b)):
            return np.full_like(y, 1e150), None
        coef, *_ = np.linalg.lstsq(b, y, rcond=None)
        return b @ coef - y, coef

    return solve


def varpro(basis_fn, y, grid, lower, upper):
    """Best ``(theta, coef)`` for ``y ≈ basis_fn(theta) @ coef``, ``lower <= theta <= upper``."""
    from scipy.optimize import least_squares

    solve = _project(basis_fn, y)
    start = min(grid, key=lambda t: float(np.sum(solve(t)[0] ** 2)))
    sol = least_squares(
        lambda t: solve(t)[0], start, bounds=(lower, upper), method="trf",
        x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=2000,
    )  # fmt: skip
    theta = sol.x
    if np.sum(solve(theta)[0] ** 2) > np.sum(solve(start)[0] ** 2):
        theta = np.asarray(start, np.float64)
    return theta, solve(theta)[1]
