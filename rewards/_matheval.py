"""Bounded evaluation of the answer AST to numbers (second stage of :mod:`rewards.math`).

A value is a pair ``(v, inexact)``: ``v`` is an exact :class:`fractions.Fraction` while the
arithmetic stays rational and small, otherwise an mpmath number at :data:`PRECISION_BITS` bits
(``mpf``/``mpc``, from a per-thread mpmath context, because mpmath functions change their
context's precision temporarily and a shared one would race between threads). ``inexact`` is
true when a decimal literal (``0.33``) went into it: such values match by relative error
(``rel_tol``); exact ones must match exactly (rationals) or to near machine-independent
precision (irrationals, ``1e-25`` relative at 128 bits).

Every operation checks its size first: exact numbers above ``max_int_bits`` become
approximations, approximations above ``2**max_magnitude_bits`` are an :class:`EvalError`,
factorials above ``max_factorial`` too, and so are trigonometric arguments too large to
reduce cheaply. A node counter checks the deadline every few operations, so a call cannot run
past its time limit by more than one bounded operation.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from fractions import Fraction

from mpmath.ctx_mp import MPContext
from mpmath.ctx_mp_python import _mpc

#: the complex type of every mpmath context: values cached by one thread (a gold's points) are
#: used by others, and each context has its own ``ctx.mpc`` subclass, so isinstance checks use this
MPC = _mpc
PRECISION_BITS = 128
#: exact-but-irrational values (sqrt, pi) computed at PRECISION_BITS agree to this relative error
EXACT_REL_TOL = 1e-25
#: ... and values this close to zero count as zero (sin(pi) evaluates to ~1e-39)
EXACT_ABS_TOL = 1e-30
_DEADLINE_CHECK_EVERY = 16
_MAX_ROOT_INDEX = 64
# Trigonometric argument reduction needs about log2|x| extra bits: keep it cheap.
_MAX_TRIG_ARG_BITS = 256
_MAX_EXP_ARG = 1 << 20
_PERIODIC = frozenset({"sin", "cos", "tan", "cot", "sec", "csc", "sinh", "cosh", "tanh"})
_MAX_EXACT_LOG_BITS = 20_000
_MAX_LITERAL_DIGITS = 4_000


class EvalError(ValueError):
    """The expression has no finite value within the limits (a reason, not a crash)."""


class GradeTimeout(Exception):
    """The per-call deadline passed (raised cooperatively by the evaluator and parser)."""


_local = threading.local()


def mp() -> MPContext:
    """This thread's mpmath context (created once per thread, precision never changed here)."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = MPContext()
        ctx.prec = PRECISION_BITS
        _local.ctx = ctx
    return ctx


@dataclass(frozen=True)
class Limits:
    """Size limits for evaluation (copied from :class:`rewards.math.GradeOptions`)."""

    max_int_bits: int = 16_384
    max_exponent: int = 10_000
    max_magnitude_bits: int = 1_000_000
    max_factorial: int = 1_000


class Evaluator:
    """Evaluates AST nodes under :class:`Limits` and a deadline; ``env`` maps variables to values."""

    def __init__(self, limits: Limits, deadline: float) -> None:
        self.lim = limits
        self.deadline = deadline
        self.count = 0
        self.ctx = mp()

    def tick(self) -> None:
        self.count += 1
        if self.count % _DEADLINE_CHECK_EVERY == 0 and time.monotonic() > self.deadline:
            raise GradeTimeout

    # -- number helpers ----------------------------------------------------------------------
    def to_mp(self, v: object) -> object:
        if isinstance(v, Fraction):
            if v.denominator == 1:
                return self.ctx.mpf(v.numerator)
            return self.ctx.mpf(v.numerator) / v.denominator
        return v

    def fit(self, v: object) -> object:
        """Keep a value within limits: big fractions become approximations; approximations must
        be finite and not astronomically large."""
        ctx = self.ctx
        if isinstance(v, Fraction):
            if max(v.numerator.bit_length(), v.denominator.bit_length()) <= self.lim.max_int_bits:
                return v
            v = self.to_mp(v)
        if isinstance(v, int):
            return self.fit(Fraction(v))
        if ctx.isnan(v) or ctx.isinf(v):
            raise EvalError("not a finite number")
        if v != 0:
            parts = (v.real, v.imag) if isinstance(v, MPC) else (v,)
            for part in parts:
                if part != 0 and abs(ctx.mag(part)) > self.lim.max_magnitude_bits:
                    raise EvalError("number too large")
            if isinstance(v, MPC) and v.imag == 0:
                v = v.real
        return v

    def log2_abs(self, v: object) -> float:
        if isinstance(v, Fraction):
            return _log2_fraction(abs(v))
        return float(self.ctx.log(abs(v), 2))

    # -- arithmetic --------------------------------------------------------------------------
    def add(self, a: object, b: object) -> object:
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            return self.fit(a + b)
        return self.fit(self.to_mp(a) + self.to_mp(b))

    def mul(self, a: object, b: object) -> object:
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            return self.fit(a * b)
        return self.fit(self.to_mp(a) * self.to_mp(b))

    def recip(self, a: object) -> object:
        if a == 0:
            raise EvalError("division by zero")
        if isinstance(a, Fraction):
            return 1 / a
        return self.fit(1 / a)

    def power(self, a: object, b: object) -> object:
        ctx = self.ctx
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            if b.denominator == 1:
                n = b.numerator
                if a == 0:
                    if n < 0:
                        raise EvalError("division by zero")
                    return Fraction(0) if n > 0 else Fraction(1)
                if a == 1:
                    return a
                if a == -1:
                    return Fraction(1 if n % 2 == 0 else -1)
                bits = abs(n) * max(a.numerator.bit_length(), a.denominator.bit_length())
                if abs(n) <= self.lim.max_exponent and bits <= self.lim.max_int_bits:
                    return a**n
            elif a > 0 and b.denominator <= _MAX_ROOT_INDEX:
                root = _exact_root(a, b.denominator)
                if root is not None:
                    return self.power(root, Fraction(b.numerator))
        if a == 0:
            if isinstance(b, Fraction) and b > 0:
                return Fraction(0)
            raise EvalError("zero to a non-positive or complex power")
        # Estimate log2|a**b| before computing it: a power tower fails here, not in mpmath.
        size = abs(complex(self.to_mp(b))) * abs(self.log2_abs(a))
        if size > self.lim.max_magnitude_bits:
            raise EvalError("number too large")
        return self.fit(ctx.power(self.to_mp(a), self.to_mp(b)))

    def root(self, index: object, a: object) -> object:
        if not isinstance(index, Fraction) or index.denominator != 1 or index < 2:
            raise EvalError("root index must be an integer >= 2")
        if index > _MAX_ROOT_INDEX:
            raise EvalError("root index too large")
        if isinstance(a, Fraction) and a < 0 and index % 2 == 1:
            # odd roots of negative numbers are real: \sqrt[3]{-8} = -2
            return -self.power(-a, 1 / index)
        return self.power(a, 1 / index)

    def function(self, name: str, a: object) -> object:
        ctx = self.ctx
        if name in _PERIODIC and a != 0 and self.log2_abs(a) > _MAX_TRIG_ARG_BITS:
            raise EvalError(f"argument of {name} too large")
        if name == "exp":
            if abs(complex(self.to_mp(a))) > _MAX_EXP_ARG:
                raise EvalError("argument of exp too large")
            return self.fit(ctx.exp(self.to_mp(a)))
        if a == 0 and name in ("sin", "tan", "asin", "atan", "sinh", "tanh"):
            return Fraction(0)
        if a == 0 and name in ("cos", "cosh"):
            return Fraction(1)
        fn = {
            "sin": ctx.sin,
            "cos": ctx.cos,
            "tan": ctx.tan,
            "cot": ctx.cot,
            "sec": ctx.sec,
            "csc": ctx.csc,
            "asin": ctx.asin,
            "acos": ctx.acos,
            "atan": ctx.atan,
            "sinh": ctx.sinh,
            "cosh": ctx.cosh,
            "tanh": ctx.tanh,
            "ln": ctx.ln,
        }.get(name)
        if fn is None:
            raise EvalError(f"unknown function {name}")
        if name in ("ln",) and a == 0:
            raise EvalError("logarithm of zero")
        if name in ("cot", "csc") and a == 0:
            raise EvalError(f"{name} of zero")
        return self.fit(fn(self.to_mp(a)))

    def log(self, base: object | None, a: object) -> object:
        if a == 0:
            raise EvalError("logarithm of zero")
        if base is None:
            return self.function("ln", a)
        if base == 0 or base == 1:
            raise EvalError("invalid logarithm base")
        if isinstance(a, Fraction) and isinstance(base, Fraction) and a > 0 and base > 0:
            exact = _exact_log(a, base)
            if exact is not None:
                return exact
        return self.fit(self.ctx.log(self.to_mp(a)) / self.ctx.log(self.to_mp(base)))

    def integer(self, a: object, what: str) -> int:
        if not isinstance(a, Fraction) or a.denominator != 1:
            raise EvalError(f"{what} needs an integer")
        return a.numerator

    # -- the tree ----------------------------------------------------------------------------
    def number(self, node: tuple) -> tuple[object, bool]:
        digits, frac, exp = node[1], node[2], node[3]
        if len(digits) + len(frac) > _MAX_LITERAL_DIGITS:
            # also keeps int() under Python's limit on decimal string conversion (4300 digits)
            raise EvalError("number literal too long")
        mantissa = Fraction(int(digits + frac), 10 ** len(frac)) if frac else Fraction(int(digits))
        if exp:
            if abs(exp) * 4 > self.lim.max_int_bits:
                size = abs(exp) * math.log2(10)
                if size > self.lim.max_magnitude_bits:
                    raise EvalError("number too large")
                return self.fit(self.to_mp(mantissa) * self.ctx.power(10, exp)), bool(frac)
            mantissa = mantissa * Fraction(10) ** exp
        return self.fit(mantissa), bool(frac)

    def ev(self, node: tuple, env: dict[str, Fraction] | None = None) -> tuple[object, bool]:
        """``(value, inexact)`` of a scalar node; :class:`EvalError` when it has none."""
        self.tick()
        kind = node[0]
        if kind == "num":
            return self.number(node)
        if kind == "var":
            if env is None or node[1] not in env:
                raise EvalError(f"free variable {node[1]}")
            return env[node[1]], False
        if kind == "const":
            return (self.ctx.pi if node[1] == "pi" else self.ctx.e), False
        if kind == "add":
            total, inexact = Fraction(0), False
            for term in node[1]:
                v, x = self.ev(term, env)
                total, inexact = self.add(total, v), inexact or x
            return total, inexact
        if kind == "neg":
            v, x = self.ev(node[1], env)
            return -v, x
        if kind == "mul":
            prod, inexact = Fraction(1), False
            for factor in node[1]:
                v, x = self.ev(factor, env)
                prod, inexact = self.mul(prod, v), inexact or x
            return prod, inexact
        if kind == "recip":
            v, x = self.ev(node[1], env)
            return self.recip(v), x
        if kind == "pow":
            b, xb = self.ev(node[1], env)
            e, xe = self.ev(node[2], env)
            return self.power(b, e), xb or xe
        if kind == "root":
            n, xn = self.ev(node[1], env)
            v, x = self.ev(node[2], env)
            return self.root(n, v), x or xn
        if kind == "func":
            arg = node[2]
            if arg[0] == "deg" and node[1] in ("sin", "cos", "tan", "cot", "sec", "csc"):
                v, x = self.ev(arg[1], env)
                v = self.mul(v, self.ctx.pi / 180)
            else:
                v, x = self.ev(arg, env)
            return self.function(node[1], v), x
        if kind == "log":
            base = None
            xb = False
            if node[1] is not None:
                base, xb = self.ev(node[1], env)
            v, x = self.ev(node[2], env)
            return self.log(base, v), x or xb
        if kind == "fact":
            v, x = self.ev(node[1], env)
            n = self.integer(v, "factorial")
            if n < 0 or n > self.lim.max_factorial:
                raise EvalError(f"factorial of {n} is out of range")
            return self.fit(Fraction(math.factorial(n))), x
        if kind == "binom":
            nv, xn = self.ev(node[1], env)
            kv, xk = self.ev(node[2], env)
            n, k = self.integer(nv, "binomial"), self.integer(kv, "binomial")
            if not 0 <= n <= self.lim.max_factorial:
                raise EvalError("binomial out of range")
            return self.fit(Fraction(math.comb(n, k) if k >= 0 else 0)), xn or xk
        if kind == "pct":
            v, x = self.ev(node[1], env)
            return self.mul(v, Fraction(1, 100)), x
        if kind == "deg":
            return self.ev(node[1], env)
        if kind == "abs":
            v, x = self.ev(node[1], env)
            return (abs(v) if isinstance(v, Fraction) else self.fit(abs(v))), x
        if kind in ("floor", "ceil"):
            v, x = self.ev(node[1], env)
            if not isinstance(v, Fraction):
                if isinstance(v, MPC):
                    raise EvalError(f"{kind} of a complex number")
                v = Fraction(int(self.ctx.floor(v) if kind == "floor" else self.ctx.ceil(v)))
            return Fraction(math.floor(v) if kind == "floor" else math.ceil(v)), x
        if kind == "inf":
            raise EvalError("infinity is not a number")
        if kind == "pm":
            raise EvalError("± inside an expression")
        raise EvalError(f"a {kind} is not a number")

    # -- comparison --------------------------------------------------------------------------
    def equal(self, pred: tuple[object, bool], gold: tuple[object, bool], rel_tol: Fraction) -> bool:
        """Exact for exact values; relative error at most ``rel_tol`` (of the gold) as soon as one
        side came from a decimal literal."""
        p, xp = pred
        g, xg = gold
        p_inf = not isinstance(p, Fraction) and self.ctx.isinf(p)
        if p_inf or (not isinstance(g, Fraction) and self.ctx.isinf(g)):
            return p_inf and p == g
        if xp or xg:
            if isinstance(p, Fraction) and isinstance(g, Fraction):
                return abs(p - g) <= rel_tol * abs(g)
            return bool(abs(self.to_mp(p) - self.to_mp(g)) <= self.to_mp(rel_tol) * abs(self.to_mp(g)))
        if isinstance(p, Fraction) and isinstance(g, Fraction):
            return p == g
        pm, gm = self.to_mp(p), self.to_mp(g)
        diff = abs(pm - gm)
        return bool(diff <= EXACT_REL_TOL * max(abs(pm), abs(gm)) or diff <= EXACT_ABS_TOL)

    def real(self, v: object) -> object:
        """A real value for ordering (interval endpoints); :class:`EvalError` for complex ones."""
        if isinstance(v, Fraction):
            return v
        if isinstance(v, MPC):
            raise EvalError("complex number where a real one is needed")
        return v


def _log2_fraction(f: Fraction) -> float:
    """log2 of a positive fraction of any size (floats alone overflow above 2**1024)."""
    if f == 0:
        return 0.0
    n, d = f.numerator, f.denominator
    sn, sd = max(n.bit_length() - 60, 0), max(d.bit_length() - 60, 0)
    return math.log2(n >> sn) - math.log2(d >> sd) + sn - sd


def iroot(n: int, k: int) -> int:
    """Floor of the k-th root of a non-negative integer (Newton's method on integers)."""
    if n < 2:
        return n
    x = 1 << ((n.bit_length() + k - 1) // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _exact_root(a: Fraction, k: int) -> Fraction | None:
    """``a ** (1/k)`` when it is rational (a > 0), else ``None``."""
    num, den = iroot(a.numerator, k), iroot(a.denominator, k)
    if num**k == a.numerator and den**k == a.denominator:
        return Fraction(num, den)
    return None


def _exact_log(a: Fraction, base: Fraction) -> Fraction | None:
    """``log_base(a)`` when it is an integer or a simple fraction (log_2 8 = 3, log_4 2 = 1/2)."""
    if base <= 0 or base == 1 or a <= 0:
        return None
    guess = math.log(a.numerator) - math.log(a.denominator)
    guess /= math.log(base.numerator) - math.log(base.denominator)
    for q in (1, 2, 3, 4, 6):
        p = round(guess * q)
        if abs(guess * q - p) > 1e-9:
            continue
        size = abs(p) * max(base.numerator.bit_length(), base.denominator.bit_length())
        if size > _MAX_EXACT_LOG_BITS:
            return None
        # base**(p/q) == a  <=>  base**p == a**q
        if base**p == a**q:
            return Fraction(p, q)
    return None
