"""Times jaxlab.curvature against PyHessian 0.1 on the same MLP, data and CPU.

Both frameworks compute on identical float32 numbers: tanh MLPs with mean softmax cross-entropy
on the first 1,024 scikit-learn digits (64 features / 16), trained briefly here with full-batch
Adam, then exported as ``.npz`` (weights and data) for PyHessian. PyHessian lives in a separate
environment (``bash benchmarks/setup_pyhessian.sh`` makes ``.venv-bench`` with torch==2.13.0 CPU
and ``pyhessian`` 0.1; never the project's ``.venv``, never CI) and runs as a worker subprocess
of this script (``--pyhessian-worker``) that answers one timing request at a time: the two
frameworks are timed interleaved, never at once, and each figure is the median over
``--repeats`` rounds (different seeds). Every timing is a whole call from (model, data) to the
answer: jaxlab's builds its operator (linearises) inside, PyHessian's constructs its ``hessian``
object (forward + ``backward(create_graph=True)``) inside. On a shared machine each measurement
waits for other processes to be quiet and is repeated if they were not (``--quiet``, see Gate).

Float64 references (λ₁, λ₂ by ARPACK on a float64 Hessian-vector product, the exact trace from
the per-layer Hessian diagonal, and for the small model the dense spectrum) are computed once in
a third process with x64 on and cached under ``runs/curvature_vs_pyhessian/``.

PyHessian's PyPI ``density`` calls ``torch.eig``, removed from torch; the worker first records
the error, then replaces ``torch.eig`` with a wrapper around ``torch.linalg.eigh`` (the old
``(values[n, 2], vectors)`` contract) so that its Lanczos loop can be timed.

    bash benchmarks/setup_pyhessian.sh    # once
    .venv/bin/python benchmarks/curvature_vs_pyhessian.py [--models small,large] [--repeats 5]
        [--quiet 0.1] [--max-wait 20] [--threads 0]
"""

import argparse
import functools
import gc
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

try:  # the PyHessian worker runs in .venv-bench, which has no JAX
    import jax
    import jax.numpy as jnp
    import optax

    from jaxlab import curvature
except ImportError:
    jax = None

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "runs" / "curvature_vs_pyhessian"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
MODELS = {"small": (64, 64, 10), "large": (64, 256, 256, 10)}
TRAIN = {"small": (150, 1e-3), "large": (40, 1e-3)}  # full-batch Adam steps, learning rate
NUM_EXAMPLES = 1024
XTRACE_PRODUCTS = 40  # XTrace's budget in the equal-accuracy trace comparison
HVP_CHAIN = 21  # calls in the long loss+grad / HVP chains; unit cost = (t[21] - t[1]) / 20


# ----------------------------------------------------------------------------------------------
# Shared (NumPy only: both environments)


def load_npz(path):
    """``(layers, x, y)`` with ``layers = [(W [in, out], b [out]), ...]``, float32."""
    z = np.load(path)
    num = sum(1 for name in z.files if name.startswith("w"))
    return [(z[f"w{i}"], z[f"b{i}"]) for i in range(num)], z["x"], z["y"]


def wasserstein1(x1, w1, x2, w2) -> float:
    """W1 distance between two weighted point measures on the line (weights normalised)."""
    xs = np.concatenate([x1, x2]).astype(np.float64)
    ws = np.concatenate([np.asarray(w1) / np.sum(w1), -np.asarray(w2) / np.sum(w2)])
    order = np.argsort(xs, kind="stable")
    xs, ws = xs[order], ws[order]
    return float(np.sum(np.abs(np.cumsum(ws)[:-1]) * np.diff(xs)))


def _respond(stream, obj) -> None:
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


# ----------------------------------------------------------------------------------------------
# PyHessian side (runs in .venv-bench; torch is imported only here)


def pyhessian_worker() -> None:
    """Answers JSON requests on stdin, one JSON line each on stdout, until stdin closes."""
    out, sys.stdout = sys.stdout, sys.stderr  # nothing but answers on the pipe
    import torch
    from pyhessian import hessian
    from pyhessian.utils import hessian_vector_product

    # PyHessian's constructor calls backward(create_graph=True): torch warns of a reference
    # cycle. The worker breaks it with zero_grad(set_to_none=True) before each construction.
    warnings.filterwarnings("ignore", message=".*create_graph=True.*")
    counter = {"hvps": 0}

    def counting_hvp(grads, params, v):  # counts PyHessian's products; ~0.1 µs per call
        counter["hvps"] += 1
        return hessian_vector_product(grads, params, v)

    sys.modules["pyhessian.hessian"].hessian_vector_product = counting_hvp
    torch_eig = getattr(torch, "eig", None)

    def eig(t, eigenvectors=False):  # torch.eig's removed contract, on the symmetric solver
        evals, evecs = torch.linalg.eigh(t)
        return torch.stack([evals, torch.zeros_like(evals)], 1), evecs

    state = {}

    def new_hessian():
        state["model"].zero_grad(set_to_none=True)
        return hessian(state["model"], state["crit"], data=(state["x"], state["y"]), cuda=False)

    def load(req):
        layers, x, y = load_npz(req["npz"])
        mods = []
        for i, (w, b) in enumerate(layers):
            lin = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
            if i < len(layers) - 1:
                mods.append(torch.nn.Tanh())
        state.update(
            model=torch.nn.Sequential(*mods).eval(),
            crit=torch.nn.CrossEntropyLoss(),
            x=torch.from_numpy(x),
            y=torch.from_numpy(y).long(),
        )
        with torch.no_grad():
            loss = float(state["crit"](state["model"](state["x"]), state["y"]))
        torch.eig = torch_eig
        try:  # PyHessian's own density, unpatched
            new_hessian().density(iter=2, n_v=1)
            eig_error = None
        except Exception as e:  # recorded and reported
            eig_error = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        torch.eig = eig
        n = sum(p.numel() for p in state["model"].parameters())
        return {"loss": loss, "num_params": n, "density_error": eig_error}

    def grad(req):
        model = state["model"]
        for _ in range(req["k"]):
            model.zero_grad(set_to_none=True)
            state["crit"](model(state["x"]), state["y"]).backward()
        return {}

    def hvp(req):
        h = new_hessian()
        v = state["v0"]
        for _ in range(req["k"]):
            hv = hessian_vector_product(h.gradsH, h.params, v)
            inv = 1.0 / torch.sqrt(sum(torch.sum(t * t) for t in hv))
            v = [t * inv for t in hv]
        return {}

    def eigenvalue(req):
        h = new_hessian()
        counter["hvps"] = 0
        if req["forced"]:  # tol=0: the relative-change test never passes, 100 iterations
            values, _ = h.eigenvalues(maxIter=100, tol=0.0)
        else:
            values, _ = h.eigenvalues()
        return {"value": float(values[0]), "hvps": counter["hvps"]}

    def trace(req):
        h = new_hessian()
        if req["forced"]:  # -inf: the running-mean test never passes, all 100 probes
            samples = h.trace(maxIter=100, tol=-math.inf)
        else:
            samples = h.trace()
        s = np.asarray(samples, np.float64)
        se = float(np.std(s, ddof=1) / np.sqrt(s.size)) if s.size > 1 else float("nan")
        return {"value": float(np.mean(s)), "stderr": se, "probes": int(s.size)}

    def density(req):
        nodes, weights = new_hessian().density(iter=100, n_v=1)
        return {"nodes": [float(t) for t in nodes[0]], "weights": [float(t) for t in weights[0]]}

    ops = {"grad": grad, "hvp": hvp, "eig": eigenvalue, "trace": trace, "density": density}
    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    _respond(
        out,
        {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "threads": torch.get_num_threads(),
            "torch_has_eig": torch_eig is not None,
        },
    )
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "load":
                _respond(out, load(req))
                continue
            torch.manual_seed(req.get("seed", 0))
            state["v0"] = [torch.randn_like(p) for p in state["model"].parameters()]
            times, res = [], {}
            gc.collect()  # not per call: a collection puts the idle OpenMP threads to sleep
            for _ in range(req.get("inner", 1)):
                start = time.perf_counter()
                res = ops[req["op"]](req)
                times.append(time.perf_counter() - start)
            _respond(out, {**res, "times": times})
        except Exception as e:  # sent back to the driver, which raises
            _respond(out, {"error": f"{type(e).__name__}: {e}"})


class PyHessianWorker:
    """The driver's handle on the worker subprocess."""

    def __init__(self, python: Path):
        if not Path(python).exists():
            raise SystemExit(f"{python} not found: run `bash benchmarks/setup_pyhessian.sh`")
        self.proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--pyhessian-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"PyHessian worker exited with {self.proc.wait()}")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"PyHessian worker: {out['error']}")
        return out

    def __call__(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ----------------------------------------------------------------------------------------------
# jaxlab side (.venv)


def mlp_loss(params, batch):
    """Mean softmax cross-entropy of a tanh MLP; ``params = [(W, b), ...]``, ``batch = (x, y)``."""
    x, y = batch
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return cross_entropy(h, y)


def cross_entropy(logits, y):
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data[:NUM_EXAMPLES] / 16.0).astype(np.float32)
    return x, data.target[:NUM_EXAMPLES].astype(np.int32)


def train(sizes, x, y, steps: int, lr: float):
    keys = jax.random.split(jax.random.key(0), len(sizes) - 1)
    params = [
        (jax.random.normal(k, (a, b)) / np.sqrt(a), jnp.zeros((b,)))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]
    tx = optax.adam(lr)

    @jax.jit
    def run(params, batch):
        def step(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(mlp_loss)(p, batch), s, p)
            return (optax.apply_updates(p, u), s), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params

    return run(params, (jnp.asarray(x), jnp.asarray(y)))


def export(name, params, x, y) -> Path:
    arrays = {"x": x, "y": y}
    for i, (w, b) in enumerate(params):
        arrays[f"w{i}"], arrays[f"b{i}"] = np.asarray(w, np.float32), np.asarray(b, np.float32)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values()))
    path = OUT_DIR / f"{name}-{digest.hexdigest()[:12]}.npz"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# ---- float64 references (separate process, x64 on) -------------------------------------------


def _tail_loss(params, z, y, layer: int):
    """The loss as a function of layer ``layer``'s pre-activation ``z`` (everything downstream)."""
    h = z
    for w, b in params[layer + 1 :]:
        h = jnp.tanh(h) @ w + b
    return cross_entropy(h, y)


def _layer_trace(params, batch, layer: int):
    """Exact trace of layer ``layer``'s (W, b) diagonal Hessian block.

    With ``z = a W + b`` and a mean loss whose examples do not interact downstream of ``z``,
    ``∂²L/∂W_ij² = Σ_n a_nj² D_ni`` and ``∂²L/∂b_i² = Σ_n D_ni`` with ``D_ni = ∂²L/∂z_ni²``;
    column ``i`` of ``D`` is one Hessian-vector product in ``z`` with the one-hot ``e_i`` on every
    row, so the block costs ``width`` products of the downstream network, not ``in·width``.
    """
    x, y = batch
    a = x
    for w, b in params[:layer]:
        a = jnp.tanh(a @ w + b)
    w, b = params[layer]
    z = a @ w + b
    grad = jax.grad(lambda z: _tail_loss(params, z, y, layer))

    def column(i):
        e = jnp.zeros_like(z).at[:, i].set(1.0)
        return jax.jvp(grad, (z,), (e,))[1][:, i]

    d = jax.lax.map(column, jnp.arange(z.shape[1]), batch_size=16)  # [width, N]
    return jnp.sum((jnp.sum(a * a, axis=1) + 1.0)[None, :] * d)


def reference(npz: str, out: str) -> None:
    """λ₁, λ₂ (ARPACK), exact trace and (n ≤ 6,000) the dense spectrum, in float64."""
    from jax.flatten_util import ravel_pytree
    from scipy.sparse.linalg import LinearOperator, eigsh

    jax.config.update("jax_enable_x64", True)
    layers, x, y = load_npz(npz)
    params = [(jnp.asarray(w, jnp.float64), jnp.asarray(b, jnp.float64)) for w, b in layers]
    batch = (jnp.asarray(x, jnp.float64), jnp.asarray(y))
    flat, unravel = ravel_pytree(params)
    n = flat.size

    @jax.jit
    def hvp(f, v, batch):
        g = jax.grad(lambda q: mlp_loss(unravel(q), batch))
        return jax.jvp(g, (f,), (v,))[1]

    start = time.perf_counter()
    op = LinearOperator(
        (n, n), matvec=lambda v: np.asarray(hvp(flat, v.ravel(), batch)), dtype=np.float64
    )
    v0 = np.random.default_rng(0).standard_normal(n)
    lam = np.sort(eigsh(op, k=2, which="LA", tol=1e-13, v0=v0, return_eigenvectors=False))
    trace = sum(float(jitted().layer_trace(params, batch, i)) for i in range(len(params)))
    res = {
        "loss": float(mlp_loss(params, batch)),
        "lambda1": float(lam[1]),
        "lambda2": float(lam[0]),
        "trace": trace,
        "num_params": int(n),
    }
    if n <= 6000:
        hvps = jax.jit(jax.vmap(hvp, in_axes=(None, 0, None)))
        chunk = 256

        def columns(i):  # columns i ... i + chunk of the dense Hessian (padded with zeros)
            e, rows = np.zeros((chunk, n)), min(chunk, n - i)
            e[np.arange(rows), i + np.arange(rows)] = 1.0
            return np.asarray(hvps(flat, e, batch))[:rows]

        dense = np.concatenate([columns(i) for i in range(0, n, chunk)])
        spectrum = np.linalg.eigvalsh(0.5 * (dense + dense.T))
        res.update(
            spectrum=spectrum.tolist(),
            dense_lambda1=float(spectrum[-1]),
            dense_trace=float(np.trace(dense)),
            lambda_min=float(spectrum[0]),
        )
    res["seconds"] = time.perf_counter() - start
    Path(out).write_text(json.dumps(res))


def load_reference(npz: Path) -> dict:
    path = npz.with_suffix(".ref.json")
    if not path.exists():
        print(f"  computing the float64 reference once -> {path.relative_to(ROOT)}", flush=True)
        env = {**os.environ, "JAX_ENABLE_X64": "1"}
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--reference", str(npz), str(path)],
            check=True,
            env=env,
        )
    return json.loads(path.read_text())


# ---- compile accounting ---------------------------------------------------------------------


class CompileLog:
    """Compilations seen through ``jax.monitoring``: count (XLA compiles) and wall seconds.

    Seconds are the union of the tracing, lowering and XLA-compile time spans (nested jits
    overlap and are counted once).
    """

    def __init__(self):
        self.spans, self.compiles = [], 0
        jax.monitoring.register_event_time_span_listener(self._span)
        jax.monitoring.register_event_duration_secs_listener(self._duration)

    def _span(self, event, start, end, **_):
        if event.startswith("/jax/core/compile/"):
            self.spans.append((start, end))

    def _duration(self, event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            self.compiles += 1

    def mark(self):
        return len(self.spans), self.compiles

    def since(self, mark) -> tuple[int, float]:
        spans = sorted(self.spans[mark[0] :])
        total, end = 0.0, -math.inf
        for s, e in spans:
            if e > end:
                total += e - max(s, end)
                end = e
        return self.compiles - mark[1], total


# ---- contention ------------------------------------------------------------------------------


def _jiffies(pid=None) -> int:
    """CPU time in clock ticks: the whole machine's busy time, or one process's (with children)."""
    try:
        if pid is None:
            f = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
            return sum(f) - f[3] - f[4]  # all but idle and iowait
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        return 0


class Contention:
    """Cores used by other processes (not this script or its worker) while timing."""

    def __init__(self, pids):
        self.pids, self.t0 = pids, time.perf_counter()
        self.busy0, self.own0 = _jiffies(), sum(_jiffies(p) for p in pids)

    def cores(self) -> float:
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = _jiffies() - self.busy0
        own = sum(_jiffies(p) for p in self.pids) - self.own0
        return max(busy - own, 0) / hz / (time.perf_counter() - self.t0)


class Gate:
    """Runs measurements while other processes are quiet, and retries those they disturbed.

    This machine is shared: another process's burst stalls a multi-threaded kernel far more
    than its CPU share (a descheduled thread holds up every barrier), which is what made
    PyHessian 10-70x slower in unguarded runs here. Before each measurement the gate waits (up
    to ``max_wait`` s) for a 0.25 s window in which others used < ``threshold`` cores; if they
    used more than ``2 * threshold`` during it, the measurement is repeated (up to 3 times, then
    kept and counted as disturbed). ``threshold=0`` turns the gate off.
    """

    def __init__(self, pids, threshold: float, max_wait: float = 20.0):
        self.pids, self.threshold, self.max_wait = pids, threshold, max_wait
        self.loads, self.retries, self.disturbed, self.waited = [], 0, 0, 0.0

    def __call__(self, run):
        for attempt in range(3):
            if self.threshold:
                start = time.perf_counter()
                while time.perf_counter() - start < self.max_wait:
                    meter = Contention(self.pids)
                    time.sleep(0.25)
                    if meter.cores() < self.threshold:
                        break
                self.waited += time.perf_counter() - start
            meter = Contention(self.pids)
            out = run()
            load = meter.cores()
            if not self.threshold or load <= 2 * self.threshold:
                break
            if attempt < 2:
                self.retries += 1
            else:
                self.disturbed += 1
        self.loads.append(load)
        return out


# ---- the measurements -------------------------------------------------------------------------


@functools.cache
def jitted():
    """The jitted helpers, made once per process (so that a second call finds their cache)."""
    return types.SimpleNamespace(
        grad_chain=jax.jit(_grad_chain, static_argnames="k"),
        hvp_chain=jax.jit(_hvp_chain, static_argnames="k"),
        power100=jax.jit(_power100),
        layer_trace=jax.jit(_layer_trace, static_argnames="layer"),
    )


def _tree_normalize(tree):
    inv = 1.0 / jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))
    return jax.tree.map(lambda x: x * inv, tree)


def _grad_chain(params, batch, k: int):
    """``k`` loss+grad evaluations in one program (a 1e-30 feedback keeps XLA from hoisting)."""
    x, y = batch

    def body(_, s):
        loss, g = jax.value_and_grad(mlp_loss)(params, (x + s, y))
        return 1e-30 * (loss + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(g)))

    return jax.lax.fori_loop(0, k, body, jnp.zeros((), x.dtype))


def _hvp_chain(params, batch, v, k: int):
    """``hessian_operator`` built once, then ``k`` products ``v ← Hv / ‖Hv‖``."""
    op = curvature.hessian_operator(mlp_loss, params, batch)
    return jax.lax.fori_loop(0, k, lambda _, v: _tree_normalize(op(v)), v)


def _power100(params, batch, v0):
    """jaxlab's power iteration forced to 100 products (tol=0), PyHessian's algorithm."""
    op = curvature.hessian_operator(mlp_loss, params, batch)
    return curvature.power_iteration(op, v0, max_steps=100, tol=0.0)


def jobs(params, batch, keys, v0s):
    """``(label, jaxlab call or None, PyHessian request or None, inner repeats)``.

    A jaxlab call takes the round ``r`` and returns host values (the result fetched; indexed in
    NumPy, since indexing a JAX array eagerly would compile a gather and count as a compile).
    """

    def eig(r):
        res = curvature.hessian_eigenvalues(mlp_loss, params, batch, key=keys[r])
        return {"value": float(np.asarray(res.eigenvalues)[0]), "hvps": int(res.num_matvecs)}

    def power(r):
        res = jitted().power100(params, batch, v0s[r])
        return {"value": float(np.asarray(res.eigenvalues)[0]), "hvps": int(res.num_matvecs)}

    def trace(r):
        est, se = curvature.hessian_trace(mlp_loss, params, batch, key=keys[r], num_probes=100)
        return {"value": float(est), "stderr": float(se), "probes": 100}

    def xtrace(r):
        est, se = curvature.hessian_trace(
            mlp_loss, params, batch, key=keys[r], num_probes=XTRACE_PRODUCTS, method="xtrace"
        )
        return {"value": float(est), "stderr": float(se), "probes": XTRACE_PRODUCTS}

    def slq(reortho):
        def run(r):
            nodes, weights = curvature.hessian_density(
                mlp_loss, params, batch, key=keys[r], num_steps=100, num_runs=1, reortho=reortho
            )
            return {
                "nodes": np.asarray(nodes)[0].tolist(),
                "weights": np.asarray(weights)[0].tolist(),
            }

        return run

    def grad(k):
        def run(r):
            jax.block_until_ready(jitted().grad_chain(params, batch, k))
            return {}

        return run

    def hvp(k):
        def run(r):
            jax.block_until_ready(jitted().hvp_chain(params, batch, v0s[r], k))
            return {}

        return run

    return [
        ("loss+grad x1", grad(1), {"op": "grad", "k": 1}, 10),
        (f"loss+grad x{HVP_CHAIN}", grad(HVP_CHAIN), {"op": "grad", "k": HVP_CHAIN}, 3),
        ("hvp x1", hvp(1), {"op": "hvp", "k": 1}, 5),
        (f"hvp x{HVP_CHAIN}", hvp(HVP_CHAIN), {"op": "hvp", "k": HVP_CHAIN}, 3),
        ("top eigenvalue", eig, {"op": "eig", "forced": True}, 1),
        ("pyhessian default eigenvalue", None, {"op": "eig", "forced": False}, 1),
        ("power iteration x100", power, None, 1),
        ("trace 100 probes", trace, {"op": "trace", "forced": True}, 1),
        ("pyhessian default trace", None, {"op": "trace", "forced": False}, 1),
        (f"trace xtrace {XTRACE_PRODUCTS}", xtrace, None, 1),
        ("slq full", slq("full"), {"op": "density"}, 1),
        ("slq blocked", slq("blocked"), None, 1),
        ("slq none", slq("none"), None, 1),
    ]


def run_model(name, worker, log, repeats: int, quiet: float, max_wait: float = 20.0) -> dict:
    sizes = MODELS[name]
    x, y = digits()
    steps, lr = TRAIN[name]
    params = train(sizes, x, y, steps, lr)
    npz = export(name, params, x, y)
    ref = load_reference(npz)
    layers, x, y = load_npz(npz)  # exactly the exported numbers on both sides
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]
    batch = (jnp.asarray(x), jnp.asarray(y))
    info = worker(op="load", npz=str(npz))
    loss = float(mlp_loss(params, batch))
    n = sum(p.size for p in jax.tree.leaves(params))
    print(
        f"\n== {name}: MLP {'-'.join(map(str, sizes))}, {n:,} parameters, loss {loss:.6f} "
        f"(torch {info['loss']:.6f}, float64 {ref['loss']:.6f}); λ₁ = {ref['lambda1']:.6f}, "
        f"λ₂ = {ref['lambda2']:.6f}, trace = {ref['trace']:.4f}"
        + (
            f" (dense: λ₁ = {ref['dense_lambda1']:.6f}, trace = {ref['dense_trace']:.4f})"
            if "dense_trace" in ref
            else ""
        ),
        flush=True,
    )
    keys = [jax.random.key(r) for r in range(repeats)]
    v0s = [
        jax.tree.map(
            lambda p, k: jax.random.normal(k, p.shape, p.dtype),
            params,
            jax.tree.unflatten(
                jax.tree.structure(params),
                list(jax.random.split(jax.random.key(1000 + r), len(jax.tree.leaves(params)))),
            ),
        )
        for r in range(repeats)
    ]
    jax.block_until_ready((keys, v0s))
    todo = jobs(params, batch, keys, v0s)

    gate = Gate([os.getpid(), worker.proc.pid], quiet, max_wait)
    first = {}  # compile: first call (wall, number of XLA compiles, compile seconds)
    for label, fn, _, _ in todo:
        if fn is None:
            continue

        def cold(fn=fn):
            jax.clear_caches()  # each compile measured cold, whatever ran before
            mark = log.mark()
            start = time.perf_counter()
            fn(0)
            wall = time.perf_counter() - start
            count, secs = log.since(mark)
            return {"wall": wall, "compiles": count, "compile_s": secs}

        first[label] = gate(cold)
    for _, fn, _, _ in todo:  # compile again what the later clear_caches() dropped
        if fn is not None:
            fn(0)

    times = {label: {"jaxlab": [], "pyhessian": []} for label, *_ in todo}
    results = {label: {"jaxlab": [], "pyhessian": []} for label, *_ in todo}
    recompiles = {label: 0 for label, *_ in todo}

    def pair(r, label, fn, req, inner):
        got = {}
        sides = [("jaxlab", fn), ("pyhessian", req)]
        for side, what in sides if r % 2 == 0 else sides[::-1]:
            if what is None:
                continue
            if side == "pyhessian":
                out = worker(**what, seed=r, inner=inner)
                got[side] = (out.pop("times"), out, 0)
                continue
            mark, ts = log.mark(), []
            gc.collect()
            for _ in range(inner):
                start = time.perf_counter()
                out = what(r)
                ts.append(time.perf_counter() - start)
            got[side] = (ts, out, log.since(mark)[0])
        return got

    for r in range(repeats):
        for label, fn, req, inner in todo:
            got = gate(functools.partial(pair, r, label, fn, req, inner))
            for side, (ts, out, compiles) in got.items():
                times[label][side] += ts
                results[label][side].append(out)
                recompiles[label] += compiles
    med = {
        label: {side: float(np.median(t)) if t else None for side, t in sides.items()}
        for label, sides in times.items()
    }
    return {
        "model": name,
        "sizes": sizes,
        "num_params": int(n),
        "loss": loss,
        "torch_loss": info["loss"],
        "density_error": info["density_error"],
        "reference": {k: v for k, v in ref.items() if k != "spectrum"},
        "median_s": med,
        "first_call": first,
        "recompiles": recompiles,
        "results": results,
        "spectrum": ref.get("spectrum"),
        "repeats": repeats,
        "foreign_cores": float(np.median(gate.loads)),
        "foreign_cores_max": float(np.max(gate.loads)),
        "retries": gate.retries,
        "disturbed": gate.disturbed,
        "waited_s": gate.waited,
        "measurements": len(gate.loads),
    }


# ---- report ----------------------------------------------------------------------------------


def summarize(m: dict) -> list[tuple]:
    """Rows ``(what, jaxlab, PyHessian, ratio text, goal text, met)`` for one model."""
    med, res, ref = m["median_s"], m["results"], m["reference"]
    lam, tr = ref["lambda1"], ref["trace"]
    spectrum = np.asarray(m["spectrum"]) if m["spectrum"] is not None else None

    def ms(x):
        return f"{1e3 * x:.2f} ms" if x is not None else "—"

    def rel(values, exact):
        return [abs(v - exact) / abs(exact) for v in values]

    def values(label, side, key="value"):
        return [o[key] for o in res[label][side]]

    rows, k, sides = [], HVP_CHAIN - 1, ("jaxlab", "pyhessian")
    unit = {}  # per call inside a chain: (t[k + 1] - t[1]) / k, free of the per-call overhead
    for what in ("loss+grad", "hvp"):
        one = {x: med[f"{what} x1"][x] for x in sides}
        unit[what] = {x: (med[f"{what} x{HVP_CHAIN}"][x] - one[x]) / k for x in sides}
        name = "loss+grad" if what == "loss+grad" else "HVP (build operator + 1 product)"
        rows.append((f"{name}, one call", ms(one["jaxlab"]), ms(one["pyhessian"]),
                     f"{one['pyhessian'] / one['jaxlab']:.2f}", "—", None))  # fmt: skip
    g, h = unit["loss+grad"], unit["hvp"]
    rows.append((f"loss+grad, per call in a chain of {HVP_CHAIN}", ms(g["jaxlab"]),
                 ms(g["pyhessian"]), f"{g['pyhessian'] / g['jaxlab']:.2f}", "—", None))  # fmt: skip
    rows.append((f"HVP, per product in a chain of {HVP_CHAIN}", ms(h["jaxlab"]), ms(h["pyhessian"]),
                 f"{h['pyhessian'] / h['jaxlab']:.2f}", "≥ 1.0 (G2)",
                 h["pyhessian"] / h["jaxlab"] >= 1.0))  # fmt: skip
    ratio = h["jaxlab"] / g["jaxlab"]
    rows.append(("HVP ÷ loss+grad, same framework (chains)", f"{ratio:.2f}",
                 f"{h['pyhessian'] / g['pyhessian']:.2f}", "", "jaxlab ≤ 2.0 (G1)",
                 ratio <= 2.0))  # fmt: skip

    e_j = rel(values("top eigenvalue", "jaxlab"), lam)
    e_p = rel(values("top eigenvalue", "pyhessian"), lam)
    hv_j = values("top eigenvalue", "jaxlab", "hvps")
    t_j, t_p = med["top eigenvalue"]["jaxlab"], med["top eigenvalue"]["pyhessian"]
    # If PyHessian's 100 iterations stay above 1e-4 error (λ₂/λ₁ close to 1), the ratio is a
    # lower bound of the speed-up at equal accuracy.
    bound = " (lower bound)" if max(e_p) > 1e-4 else ""
    rows.append((
        "λ₁: jaxlab default vs PyHessian 100 power it.",
        f"{ms(t_j)}, {min(hv_j)}–{max(hv_j)} HVPs, err ≤ {max(e_j):.1e}",
        f"{ms(t_p)}, 100 HVPs, err ≤ {max(e_p):.1e}",
        f"{t_p / t_j:.2f}{bound}", "≥ 5, jaxlab err ≤ 1e-4 (G3, G4)",
        t_p / t_j >= 5 and max(e_j) <= 1e-4,
    ))  # fmt: skip
    d_p = values("pyhessian default eigenvalue", "pyhessian")
    hv_p = values("pyhessian default eigenvalue", "pyhessian", "hvps")
    t_d = med["pyhessian default eigenvalue"]["pyhessian"]
    signed = [(v - lam) / lam for v in d_p]
    rows.append(
        (
            "λ₁: PyHessian default (tol 1e-3)",
            "",
            f"{ms(t_d)}, {min(hv_p)}–{max(hv_p)} HVPs, err {100 * min(signed):+.2f} to "
            f"{100 * max(signed):+.2f} %",
            f"{t_d / t_j:.2f}",
            "—",
            None,
        )
    )
    t_pw = med["power iteration x100"]["jaxlab"]
    e_pw = rel(values("power iteration x100", "jaxlab"), lam)
    rows.append(
        (
            "λ₁: 100 power iterations, both",
            f"{ms(t_pw)}, err ≤ {max(e_pw):.1e}",
            ms(t_p),
            f"{t_p / t_pw:.2f}",
            "—",
            None,
        )
    )

    def trace_text(label, side):
        v, se = values(label, side), values(label, side, "stderr")
        errs = [(x - tr) / tr for x in v]
        return f"err {100 * min(errs):+.1f} to {100 * max(errs):+.1f} %, se {np.median(se):.2f}"

    t_j, t_p = med["trace 100 probes"]["jaxlab"], med["trace 100 probes"]["pyhessian"]
    rows.append(
        (
            "trace, Hutchinson 100 Rademacher probes",
            f"{ms(t_j)}, {trace_text('trace 100 probes', 'jaxlab')}",
            f"{ms(t_p)}, {trace_text('trace 100 probes', 'pyhessian')}",
            f"{t_p / t_j:.2f}",
            "≥ 1.3 (G5)",
            t_p / t_j >= 1.3,
        )
    )
    # The same accuracy for fewer products: XTrace (exchangeable Hutch++ with the top of the
    # spectrum deflated) vs PyHessian's Hutchinson, compared on the median standard error.
    label = f"trace xtrace {XTRACE_PRODUCTS}"
    t_x = med[label]["jaxlab"]
    se_x = np.median(values(label, "jaxlab", "stderr"))
    se_p = np.median(values("trace 100 probes", "pyhessian", "stderr"))
    rows.append(
        (
            f"trace, equal accuracy: jaxlab XTrace {XTRACE_PRODUCTS} HVPs vs PyHessian 100 probes",
            f"{ms(t_x)}, {trace_text(label, 'jaxlab')}",
            f"{ms(t_p)}, {trace_text('trace 100 probes', 'pyhessian')}",
            f"{t_p / t_x:.2f}",
            "≥ 1.3 at ≤ PyHessian's se (G5)",
            t_p / t_x >= 1.3 and se_x <= se_p,
        )
    )
    probes = values("pyhessian default trace", "pyhessian", "probes")
    t_d = med["pyhessian default trace"]["pyhessian"]
    rows.append(
        (
            "trace: PyHessian default (tol 1e-3)",
            "",
            f"{ms(t_d)}, {min(probes)}–{max(probes)} probes, "
            f"{trace_text('pyhessian default trace', 'pyhessian')}",
            "",
            "—",
            None,
        )
    )

    def slq_text(label, side):
        outs = res[label][side]
        top = [abs(max(o["nodes"]) - lam) / lam for o in outs]
        text = f"λ₁ node err {np.median(top):.0e}"
        if spectrum is not None:
            w = [
                wasserstein1(
                    np.asarray(o["nodes"]),
                    np.asarray(o["weights"]),
                    spectrum,
                    np.ones_like(spectrum),
                )
                / (spectrum[-1] - spectrum[0])
                for o in outs
            ]
            text += f", W1 {100 * np.median(w):.2f} % of width"
        return text

    t_p = med["slq full"]["pyhessian"]
    p_text = f"{ms(t_p)}, {slq_text('slq full', 'pyhessian')}"
    for label, goal, target in (
        ("slq full", "≥ 1.0 (G7)", 1.0),
        ("slq blocked", "≥ 1.0 (G7)", 1.0),
        ("slq none", "≥ 1.8 (G7)", 1.8),
    ):
        t_j = med[label]["jaxlab"]
        rows.append(
            (
                f"SLQ 100 steps, 1 run, reortho={label.split()[1]!r}",
                f"{ms(t_j)}, {slq_text(label, 'jaxlab')}",
                p_text if label == "slq full" else "(same)",
                f"{t_p / t_j:.2f}",
                goal,
                t_p / t_j >= target,
            )
        )
    for label, f in m["first_call"].items():
        steady = med[label]["jaxlab"]
        rows.append(
            (
                f"compile: {label}",
                f"{f['compile_s']:.2f} s ({f['compiles']} XLA compiles; first call "
                f"{f['wall']:.2f} s, then {ms(steady)}); recompiles in later calls: "
                f"{m['recompiles'][label]}",
                "",
                "",
                "≤ 1.5 s, 0 recompiles (G10)",
                f["compile_s"] <= 1.5 and m["recompiles"][label] == 0,
            )
        )
    return rows


def print_table(m: dict) -> None:
    print(
        f"\n{m['model']}: {m['num_params']:,} parameters, median of {m['repeats']} rounds; other "
        f"processes used {m['foreign_cores']:.2f} (max {m['foreign_cores_max']:.2f}) of "
        f"{os.cpu_count()} cores during the {m['measurements']} measurements kept; "
        f"{m['retries']} retried, {m['disturbed']} kept disturbed, {m['waited_s']:.0f} s waited"
    )
    header = ("what", "jaxlab", "PyHessian", "P ÷ J", "goal", "met")
    rows = [header] + [
        (*r[:5], "—" if r[5] is None else ("yes" if r[5] else "NO")) for r in summarize(m)
    ]
    for r in rows:
        print(" | ".join(str(c) for c in r))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small,large", help="comma-separated: small,large")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bench-python", type=Path, default=BENCH_PYTHON)
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.1,
        help="gate: other processes' cores allowed around a measurement (0: off)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=20.0,
        help="gate: seconds to wait for a quiet window before each attempt",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="threads per framework (0: their defaults)"
    )
    parser.add_argument("--pyhessian-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference", nargs=2, metavar=("NPZ", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pyhessian_worker:
        return pyhessian_worker()
    if args.reference:
        return reference(*args.reference)

    start = time.perf_counter()
    if args.threads:  # before JAX starts its backend; the worker and the reference inherit it
        os.environ["BENCH_THREADS"] = str(args.threads)
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_cpu_multi_thread_eigen={str(args.threads > 1).lower()}"
            + f" intra_op_parallelism_threads={args.threads}"
        )
    worker = PyHessianWorker(args.bench_python)
    log = CompileLog()
    device = jax.devices()[0]
    print(
        f"{machine()}; jax {jax.__version__} on {device.platform}, optax {optax.__version__}, "
        f"numpy {np.__version__} | torch {worker.info['torch']} "
        f"({worker.info['threads']} threads), numpy {worker.info['numpy']}, PyHessian 0.1; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    out = []
    try:
        for name in args.models.split(","):
            m = run_model(name, worker, log, args.repeats, args.quiet, args.max_wait)
            if m["density_error"]:
                print(f"PyHessian's own density(): {m['density_error']} -> torch.eig patched")
            print_table(m)
            out.append(m)
    finally:
        worker.close()
    path = OUT_DIR / "results.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"\nraw figures: {path.relative_to(ROOT)}; total {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    main()
