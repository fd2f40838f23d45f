"""scripts/reproduce/hessian_outliers.py: a bulk near zero plus about C outliers from the GGN."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reproduce"))
import hessian_outliers  # noqa: E402


def test_top_eigenvalues_split_after_about_c_outliers(tmp_path):
    assert hessian_outliers.main(["--size", "small", "--workdir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    c = result["num_classes"]
    hess, ggn = np.array(result["hessian_top"]), np.array(result["ggn_top"])
    assert c == 10 and hess.shape == ggn.shape == (2 * c,)
    assert np.all(np.diff(hess) <= 0) and np.all(hess > 0)
    # The largest (log-scale) gap among the top 2C eigenvalues is after the C-th or (C-1)-th.
    ratios = hess[:-1] / hess[1:]
    assert result["gap_index"] == int(np.argmax(ratios)) + 1
    assert result["gap_index"] in (c - 1, c)
    # The SLQ density is a bulk: almost all of its mass lies within 5 % of λ_max around 0.
    assert result["density"]["mass_near_zero"] > 0.85
    assert result["density"]["mass_above_cut"] < 0.02
    # The outliers come from the Gauss-Newton part: its top C match the Hessian's.
    np.testing.assert_allclose(ggn[:c], hess[:c], rtol=0.2)
    assert (tmp_path / "hessian_outliers.png").stat().st_size > 0


@pytest.mark.parametrize(
    "flags",
    [
        ["--size", "tiny"],
        ["--lr", "-1"],
        ["--steps", "0"],
        ["--num-classes", "1"],
        ["--num-classes", "11"],
        ["--num-examples", "5000"],
    ],
)
def test_bad_flags_exit_2(tmp_path, flags):
    with pytest.raises(SystemExit) as exc:
        hessian_outliers.main([*flags, "--workdir", str(tmp_path)])
    assert exc.value.code == 2
