"""The symbolic worker: sympy in a separate process, killed when it runs out of time.

The grader decides almost every answer inline (bounded parsing and exact arithmetic); what it
cannot (a nonlinear inequality, an equation with several solutions, an expression undefined at
all test points) goes here. The worker receives the parsed AST (plain data: never model text,
so nothing it receives can execute anything), builds sympy objects from a whitelist of node
kinds, and answers one JSON line per request.

Why a process: sympy calls cannot be interrupted from another thread, and ``signal.alarm``
works only in the main thread of the main interpreter. A process can be killed from any thread,
in any process (a DataLoader worker, a multiprocessing pool worker: the worker is started with
:mod:`subprocess`, which daemonic processes may use, unlike :mod:`multiprocessing`).

Client side (:class:`WorkerPool`): a few workers per process, handed out under a lock; a request
that exceeds its time is answered with :class:`WorkerTimeout` and the worker is killed and
replaced (the replacement starts at once, in the background, and is handed to the next caller).
Starting a worker imports sympy (about a second). The first start in a process is bounded
separately by ``start_timeout_s`` and not charged to the grades waiting for it (otherwise the
first symbolic grades of every process would time out); every later wait, including for a
replacement after a kill, counts against the caller's own limit, so after the first start no
call outlives its limit by more than the time to notice it. ``rewards.math.warm_up()`` pays the
first start ahead of time. After ``fork`` the child forgets the parent's workers and starts its
own. POSIX only (``select`` on pipes).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_ROOT = str(Path(__file__).resolve().parent.parent)
_READY = b'{"ready": true}\n'
#: Address-space cap for a worker: a sympy blow-up fails inside the worker, not in the machine.
WORKER_MEMORY_BYTES = 2 * 1024**3


class WorkerTimeout(Exception):
    """The worker did not answer within the time given; it has been killed."""


class WorkerUnavailable(RuntimeError):
    """No worker could be started (no ``sys.executable``, or it failed to come up)."""


# -- server ----------------------------------------------------------------------------------
def _build(node: list, sp: object, symbols: dict) -> object:
    """A sympy object from a JSON AST node (whitelisted kinds only)."""
    kind = node[0]
    b = lambda n: _build(n, sp, symbols)  # noqa: E731
    if kind == "num":
        digits, frac, exp = str(node[1]), str(node[2]), int(node[3])
        if not (digits + frac).isdigit() or abs(exp) > 10_000 or len(digits + frac) > 5_000:
            raise ValueError("bad number")
        value = sp.Rational(int(digits + frac), 10 ** len(frac)) if frac else sp.Integer(int(digits))
        return value * sp.Integer(10) ** exp if exp else value
    if kind == "var":
        name = str(node[1])
        if not name.replace("_", "").isalnum() or len(name) > 16:
            raise ValueError("bad variable name")
        if name not in symbols:
            symbols[name] = sp.Symbol(name, real=True)
        return symbols[name]
    if kind == "const":
        return {"pi": sp.pi, "e": sp.E}[node[1]]
    if kind == "inf":
        return sp.oo
    if kind == "add":
        return sp.Add(*[b(x) for x in node[1]])
    if kind == "neg":
        return -b(node[1])
    if kind == "mul":
        return sp.Mul(*[b(x) for x in node[1]])
    if kind == "recip":
        return 1 / b(node[1])
    if kind == "pow":
        return sp.Pow(b(node[1]), b(node[2]))
    if kind == "root":
        return sp.root(b(node[2]), b(node[1]))
    if kind == "func":
        fn = {
            "sin": sp.sin,
            "cos": sp.cos,
            "tan": sp.tan,
            "cot": sp.cot,
            "sec": sp.sec,
            "csc": sp.csc,
            "asin": sp.asin,
            "acos": sp.acos,
            "atan": sp.atan,
            "sinh": sp.sinh,
            "cosh": sp.cosh,
            "tanh": sp.tanh,
            "exp": sp.exp,
            "ln": sp.log,
        }[node[1]]
        return fn(b(node[2]))
    if kind == "log":
        return sp.log(b(node[2])) if node[1] is None else sp.log(b(node[2]), b(node[1]))
    if kind == "abs":
        return sp.Abs(b(node[1]))
    if kind == "floor":
        return sp.floor(b(node[1]))
    if kind == "ceil":
        return sp.ceiling(b(node[1]))
    if kind == "pct":
        return b(node[1]) / 100
    if kind == "deg":
        return b(node[1])
    if kind == "fact":
        return sp.factorial(b(node[1]))
    if kind == "binom":
        return sp.binomial(b(node[1]), b(node[2]))
    raise ValueError(f"unsupported node {kind!r}")


_REL = {"<": "Lt", ">": "Gt", "<=": "Le", ">=": "Ge", "=": "Eq", "!=": "Ne"}


def _solution_set(node: list, var: object, sp: object, symbols: dict) -> object:
    kind = node[0]
    if kind == "rel":
        ops, items = node[1], node[2]
        result = sp.S.Reals
        for i, op in enumerate(ops):
            rel = getattr(sp, _REL[op])(_build(items[i], sp, symbols), _build(items[i + 1], sp, symbols))
            result = sp.Intersection(result, sp.solveset(rel, var, domain=sp.S.Reals))
        return result
    if kind == "set":
        return sp.FiniteSet(*[_build(x, sp, symbols) for x in node[1]])
    if kind == "union":
        return sp.Union(*[_solution_set(x, var, sp, symbols) for x in node[1]])
    if kind == "interval":
        lo, hi = _build(node[2], sp, symbols), _build(node[3], sp, symbols)
        return sp.Interval(lo, hi, left_open=not node[1], right_open=not node[4])
    raise ValueError(f"not a set: {kind!r}")


def _handle(request: dict, sp: object) -> dict:
    symbols: dict = {}
    op = request.get("op")
    if op == "ping":
        return {"ok": True}
    if op == "expr_equal":
        gold = _build(request["gold"], sp, symbols)
        pred = _build(request["pred"], sp, symbols)
        if request.get("proportional"):
            ratio = sp.simplify(gold / pred)
            return {"equal": bool(ratio.free_symbols == set() and ratio != 0 and ratio.is_finite)}
        return {"equal": bool(sp.simplify(gold - pred) == 0)}
    if op == "relation_equal":
        var = _build(["var", request["var"]], sp, symbols)
        gold = _solution_set(request["gold"], var, sp, symbols)
        pred = _solution_set(request["pred"], var, sp, symbols)
        same = sp.Complement(gold, pred) == sp.S.EmptySet and sp.Complement(pred, gold) == sp.S.EmptySet
        return {"equal": bool(same)}
    raise ValueError(f"unknown op {op!r}")


_WARM_UP = (
    {
        "op": "relation_equal",
        "var": "x",
        "gold": ["rel", ["<"], [["pow", ["var", "x"], ["num", "2", "", 0]], ["num", "4", "", 0]]],
        "pred": ["interval", False, ["neg", ["num", "2", "", 0]], ["num", "2", "", 0], False],
    },
    {"op": "expr_equal", "gold": ["func", "sin", ["var", "x"]], "pred": ["func", "cos", ["var", "x"]]},
    {
        "op": "relation_equal",
        "var": "x",
        "gold": ["rel", ["="], [["pow", ["var", "x"], ["num", "2", "", 0]], ["num", "4", "", 0]]],
        "pred": ["set", [["num", "2", "", 0], ["neg", ["num", "2", "", 0]]]],
    },
)


def serve() -> None:
    """Worker main loop: one JSON request per line on stdin, one JSON answer per line on stdout."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # not on Linux or not allowed: the parent's kill on timeout still bounds the time
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    import sympy

    # sympy imports much of itself lazily: one small request of each kind now keeps the first
    # real request of this worker from paying for it inside a grade's time limit.
    for warm in _WARM_UP:
        _handle(warm, sympy)
    out.write(_READY)
    for line in sys.stdin.buffer:
        try:
            answer = _handle(json.loads(line), sympy)
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent as data
            answer = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        out.write(json.dumps(answer).encode() + b"\n")


# -- client ----------------------------------------------------------------------------------
class _Worker:
    def __init__(self) -> None:
        if not sys.executable:
            raise WorkerUnavailable("sys.executable is empty: cannot start the symbolic worker")
        code = f"import sys; sys.path.insert(0, {_ROOT!r}); from rewards._symworker import serve; serve()"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.buffer = b""
        self.ready = False

    def _read_line(self, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise WorkerUnavailable("symbolic worker exited")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether the worker finished starting within ``timeout_s`` (it keeps starting if not)."""
        if not self.ready:
            self.ready = self._read_line(time.monotonic() + max(timeout_s, 0.0)) is not None
        return self.ready

    def request(self, payload: bytes, timeout_s: float) -> dict:
        self.proc.stdin.write(payload)
        self.proc.stdin.flush()
        line = self._read_line(time.monotonic() + timeout_s)
        if line is None:
            raise WorkerTimeout
        return json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


class WorkerPool:
    """Up to ``max_workers`` symbolic workers for this process, shared by all threads."""

    def __init__(self, max_workers: int = 2, start_timeout_s: float = 60.0) -> None:
        self.max_workers = max_workers
        self.start_timeout_s = start_timeout_s
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.close)

    def _reset(self) -> None:
        # In a forked child the parent's workers are the parent's: forget them (never kill them).
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0
        self._first_start = True  # no worker has been ready in this process yet
        self._starting = 0  # callers waiting for that first start right now
        self._pid = os.getpid()

    def _acquire(self, deadline: float) -> tuple[_Worker, float]:
        """A worker for one request, and the seconds spent waiting for this process's first
        worker to start (credited to the caller: that one-time start-up is not part of a grade's
        time limit; every later wait is)."""
        credit = 0.0
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop(), credit
                if self._count < self.max_workers:
                    self._count += 1
                    break
                first = self._first_start and self._starting > 0
                remaining = deadline + credit - time.monotonic()
                if first:
                    remaining = max(remaining, 0.0) + self.start_timeout_s
                if remaining <= 0:
                    raise WorkerTimeout
                t0 = time.monotonic()
                notified = self._cond.wait(remaining)
                if first:
                    credit += time.monotonic() - t0
                elif not notified:
                    raise WorkerTimeout
        try:
            return _Worker(), credit
        except Exception:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker | None) -> None:
        with self._cond:
            if worker is None:
                self._count -= 1
            else:
                self._idle.append(worker)
            self._cond.notify()

    def _discard(self, worker: _Worker) -> None:
        """Kill a worker and start its replacement in the background (so the caller whose time
        ran out returns at once, and the replacement imports sympy while nobody waits)."""
        worker.proc.kill()  # the signal now; reaping it (tens of ms for a big process) in the thread
        threading.Thread(
            target=self._replace, args=(worker,), name="pebr-symworker-restart", daemon=True
        ).start()

    def _replace(self, dead: _Worker) -> None:
        dead.kill()
        replacement = None
        try:
            replacement = _Worker()
        except (OSError, WorkerUnavailable) as exc:
            logger.warning("could not restart the symbolic worker: %s", exc)
        self._release(replacement)

    def _wait_started(self, worker: _Worker, deadline: float, start_timeout_s: float) -> float:
        """Wait for a worker that is still importing sympy. The first start in this process may
        take up to ``start_timeout_s`` and is credited (returned); a restart after a kill must
        fit in the caller's own time, else :class:`WorkerTimeout` (the worker keeps starting)."""
        with self._cond:
            first = self._first_start
            self._starting += first
        t0 = time.monotonic()
        try:
            limit = start_timeout_s if first else deadline - t0
            ready = worker.wait_ready(limit)
        finally:
            with self._cond:
                self._starting -= first
                if worker.ready:
                    self._first_start = False
                self._cond.notify_all()
        if ready:
            return time.monotonic() - t0 if first else 0.0
        if first:
            raise WorkerUnavailable(f"symbolic worker did not start within {start_timeout_s} s")
        self._release(worker)  # healthy, only not ready yet: the next caller gets it
        raise WorkerTimeout

    def call(self, request: dict, timeout_s: float, start_timeout_s: float | None = None) -> dict:
        """Send one request; :class:`WorkerTimeout` when it takes longer than ``timeout_s``
        (not counting the first start-up of a worker in this process, which may take up to
        ``start_timeout_s``, default the pool's)."""
        start_timeout = self.start_timeout_s if start_timeout_s is None else start_timeout_s
        payload = json.dumps(request).encode() + b"\n"
        deadline = time.monotonic() + timeout_s
        worker, credit = self._acquire(deadline)
        deadline += credit
        if not worker.ready:
            try:
                deadline += self._wait_started(worker, deadline, start_timeout)
            except (WorkerUnavailable, OSError):
                self._discard(worker)
                raise
            # WorkerTimeout: the worker was handed back, still starting, for the next caller
        start = time.monotonic()
        if deadline <= start:
            self._release(worker)
            raise WorkerTimeout
        try:
            answer = worker.request(payload, deadline - start)
        except (WorkerTimeout, WorkerUnavailable, OSError, ValueError):
            self._discard(worker)  # busy past the deadline, dead, or garbled: replace it
            raise
        logger.debug("symbolic %s answered in %.3f s", request.get("op"), time.monotonic() - start)
        self._release(worker)
        return answer

    def close(self) -> None:
        """Stop this process's workers (at exit, or to free memory)."""
        if os.getpid() != self._pid:
            return
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.kill()


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def pool() -> WorkerPool:
    """This process's worker pool (created on first use; importing this module starts nothing)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool()
        return _pool
