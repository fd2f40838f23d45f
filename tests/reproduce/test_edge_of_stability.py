"""scripts/reproduce/edge_of_stability.py: λ_max rises to 2/η (or (2+2β)/η) and stays there."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reproduce"))
import edge_of_stability  # noqa: E402


def _check_edge_of_stability(result, threshold):
    assert result["threshold"] == pytest.approx(threshold)
    assert result["loss_finite"]
    # Progressive sharpening: λ_max starts (or drops) well below the threshold, then reaches it.
    assert result["lambda_max_min_first_half"] < 0.8 * threshold
    assert result["step_reached_threshold"] is not None
    # Edge of stability: within ±15 % of the threshold over the last quarter.
    assert 0.85 <= result["ratio_last_quarter_min"] <= result["ratio_last_quarter"]
    assert result["ratio_last_quarter"] <= result["ratio_last_quarter_max"] <= 1.15
    # The loss keeps decreasing overall, but not monotonically.
    assert result["loss_final"] < 0.1 * result["loss_initial"]
    assert result["loss_final"] < result["loss_last_quarter_start"]
    assert result["loss_increases_last_half"] >= 1
    steps = [s["step"] for s in result["sharpness"]]
    assert steps == sorted(steps) and steps[0] == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_gd_reaches_and_stays_at_two_over_lr(tmp_path, seed):
    argv = ["--size", "small", "--seed", str(seed), "--workdir", str(tmp_path)]
    assert edge_of_stability.main(argv) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    _check_edge_of_stability(result, 2 / 0.2)
    assert (tmp_path / "edge_of_stability.png").stat().st_size > 0


def test_momentum_threshold_is_two_plus_two_beta_over_lr(tmp_path):
    argv = ["--size", "small", "--optimizer", "momentum", "--momentum", "0.5", "--lr", "0.3",
            "--workdir", str(tmp_path)]  # fmt: skip
    assert edge_of_stability.main(argv) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    _check_edge_of_stability(result, (2 + 2 * 0.5) / 0.3)


@pytest.mark.parametrize(
    "flags",
    [
        ["--size", "tiny"],
        ["--lr", "0"],
        ["--lr", "abc"],
        ["--steps", "0"],
        ["--momentum", "1.0"],
        ["--optimizer", "adam"],
        ["--eig-every", "50", "--steps", "10"],
        ["--eig-every", "30", "--steps", "100"],
        ["--num-examples", "5000"],
    ],
)
def test_bad_flags_exit_2(tmp_path, flags):
    with pytest.raises(SystemExit) as exc:
        edge_of_stability.main([*flags, "--workdir", str(tmp_path)])
    assert exc.value.code == 2


def test_workdir_is_required():
    with pytest.raises(SystemExit) as exc:
        edge_of_stability.main(["--size", "small"])
    assert exc.value.code == 2
