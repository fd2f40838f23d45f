"""scripts/reproduce/sam_flatness.py: SAM is flatter at matched loss and resists label noise."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reproduce"))
import sam_flatness  # noqa: E402


def _by_seed(runs, optimizer, noise, key):
    return np.array(
        [r[key] for r in sorted(runs, key=lambda r: r["seed"])
         if r["optimizer"] == optimizer and r["noise"] == noise]
    )  # fmt: skip


@pytest.mark.slow
def test_sam_flatter_at_matched_loss_and_better_under_label_noise(tmp_path):
    assert sam_flatness.main(["--size", "small", "--workdir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    runs = result["runs"]
    assert result["seeds"] == [0, 1, 2]
    assert len(runs) == 2 * 2 * 3  # optimizers × noise levels × seeds
    for noise, target in zip((0.0, 0.4), result["targets"], strict=True):
        for opt in ("sgdm", "sam"):
            # Every run reached its noise level's target, and the kept point is at the target.
            assert (_by_seed(runs, opt, noise, "matched_step") > 0).all()
            assert (_by_seed(runs, opt, noise, "matched_train_loss") <= target * 1.001).all()
            # Lanczos converged, and λ_max lies below the trace (a near-PSD Hessian's sum).
            assert _by_seed(runs, opt, noise, "lambda_max_converged").all()
            lam, trace = (_by_seed(runs, opt, noise, k) for k in ("lambda_max", "trace"))
            assert (lam > 0).all() and (lam < trace).all(), (lam, trace)
        for key in ("lambda_max", "trace"):
            sgd, sam = _by_seed(runs, "sgdm", noise, key), _by_seed(runs, "sam", noise, key)
            # Asserted: lower in the mean over 3 seeds (seeds 0-8 tried: lower in every seed,
            # by 2-4× for λ_max and ~2× for the trace).
            assert sam.mean() < sgd.mean(), (noise, key, sam, sgd)
            assert (sam < sgd).sum() >= 2
    # Clean labels: both generalise (digits); 40 % noise: SAM's final test accuracy is higher
    # in the mean over 3 seeds (seeds 0-8 tried: in every seed, ~0.89 vs ~0.72).
    for opt in ("sgdm", "sam"):
        assert _by_seed(runs, opt, 0.0, "test_accuracy").mean() > 0.9
    sgd = _by_seed(runs, "sgdm", 0.4, "test_accuracy")
    sam = _by_seed(runs, "sam", 0.4, "test_accuracy")
    assert sam.mean() > sgd.mean() + 0.05, (sam, sgd)
    assert result["checks"]["passed"]
    for name in ("curvature.png", "accuracy.png", "train_loss.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_train_examples_takes_a_random_subset(tmp_path):
    flags = "--size small --train-examples 300 --steps 20 --eval-every 10 --seeds 0"
    flags += " --curvature-examples 64 --trace-probes 2 --lanczos-steps 3"
    assert sam_flatness.main([*flags.split(), "--workdir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["train_examples"] == 300 and result["curvature_examples"] == 64


@pytest.mark.parametrize(
    "flags",
    [
        ["--size", "tiny"],
        ["--steps", "0"],
        ["--steps", "110", "--eval-every", "25"],
        ["--lr", "-1"],
        ["--rho", "0"],
        ["--momentum", "1.0"],
        ["--targets", "0.1", "-1"],
        ["--seeds", "1", "1"],
        ["--optimizers", "sam", "asam"],
        ["--optimizers", "adam"],
        ["--trace-probes", "1"],
        ["--train-examples", "0"],
    ],
)
def test_bad_flags_exit_2(tmp_path, flags):
    with pytest.raises(SystemExit) as err:
        sam_flatness.main([*flags, "--workdir", str(tmp_path)])
    assert err.value.code == 2


def test_workdir_is_required():
    with pytest.raises(SystemExit) as err:
        sam_flatness.main(["--size", "small"])
    assert err.value.code == 2
