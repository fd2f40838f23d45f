"""The main job (scripts/optimizer_demo.py) at a small size: it runs and its table is sane."""

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "optimizer_demo.py"


def load_script():
    spec = importlib.util.spec_from_file_location("optimizer_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_table(capsys):
    rows = load_script().main(["--steps", "150", "--batch-size", "64"])
    out = capsys.readouterr().out
    assert "jaxlab momo" in out and "optax adamw" in out
    for name, (loss, acc) in rows.items():
        assert math.isfinite(loss), name
        assert acc > 0.8, (name, acc)  # chance is 0.1; softmax regression reaches ≈0.95
    # Coupled AdamW is optax.adamw; MoMo without weight decay is optax.contrib.momo.
    assert math.isclose(rows["jaxlab adamw coupled"][0], rows["optax adamw"][0], rel_tol=1e-4)
    assert math.isclose(rows["jaxlab momo"][0], rows["optax.contrib momo"][0], rel_tol=1e-4)
