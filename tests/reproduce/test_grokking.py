"""scripts/reproduce/grokking.py: without regularisation the MLP memorises and its logits blow
up; ⊥Grad makes the same network generalise (small size)."""

import itertools
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reproduce"))
import grokking  # noqa: E402


@pytest.mark.slow
def test_perp_grad_groks_where_softmax_memorises(tmp_path):
    assert grokking.main(["--size", "small", "--workdir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    runs = result["variants"]
    assert set(runs) == {"softmax", "stablemax", "perp_grad"}
    base, perp = runs["softmax"], runs["perp_grad"]
    # Baseline (softmax CE, Adam, no weight decay): fits the train split, does not generalise
    # (seeds 0-2: test accuracy 0.000 at every evaluation).
    assert base["final"]["train_accuracy"] == 1.0
    assert base["max_test_accuracy"] < 0.1
    # Softmax-collapse sign: after fitting, the logits keep growing along the weight direction
    # at every evaluation (seeds 0-2: ≈ 60 at fit → 74-77), to about twice ⊥Grad's norm (31-35).
    fitted = base["train_accuracy"].index(1.0)
    norms = base["logit_norm"][fitted:]
    assert all(b > a for a, b in itertools.pairwise(norms))
    assert norms[-1] > 1.15 * norms[0]
    assert base["logit_norm"][-1] > 1.8 * perp["logit_norm"][-1]
    # ⊥Grad: same init, same loss, generalises (seeds 0-2: test accuracy 0.996-1.000).
    assert perp["final"]["train_accuracy"] == 1.0
    assert perp["final"]["test_accuracy"] > 0.9
    assert perp["final"]["test_accuracy"] > base["final"]["test_accuracy"] + 0.8
    for name in ("accuracy.png", "collapse.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize(
    "flags",
    [
        ["--train-fraction", "1.0"],
        ["--modulus", "1"],
        ["--steps", "600", "--eval-every", "7"],
        ["--lr", "-1"],
        ["--variants", "adamw"],
    ],
)
def test_bad_flags_exit_with_usage_error(tmp_path, flags):
    with pytest.raises(SystemExit) as info:
        grokking.main(["--size", "small", "--workdir", str(tmp_path), *flags])
    assert info.value.code == 2
