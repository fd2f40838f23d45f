#!/usr/bin/env bash
# Creates the separate benchmark environment .venv-bench with torch==2.13.0 (CPU) and PyHessian
# 0.1 for benchmarks/curvature_vs_pyhessian.py. It is never the project's .venv and never CI.
#
#     bash benchmarks/setup_pyhessian.sh [VENV_DIR]     # default: .venv-bench (git-ignored)
#
# torch is installed first and pinned, so that pip cannot pull a newer torch with CUDA packages;
# PyHessian is installed with --no-deps (its only other requirement, numpy, is installed here).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-bench}"
PY="${PY:-python3}"

test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q torch==2.13.0 numpy
"$VENV/bin/python" -m pip install -q --no-deps pyhessian==0.1
"$VENV/bin/python" - <<'EOF'
import numpy, pyhessian, torch

assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}), numpy {numpy.__version__},")
print(f"pyhessian from {pyhessian.__file__}")
EOF
