"""What an answer means and when two answers mean the same (third stage of :mod:`rewards.math`).

:func:`meaning` turns an AST into one of a few answer kinds (:class:`Scalar`, :class:`Seq`
for tuples, :class:`SetAnswer`, :class:`Intervals`, :class:`Matrix`, :class:`Relation`,
:class:`Membership`); :func:`Comparator.equal` compares a prediction with the gold, driven by
the gold's kind. Expressions with variables are compared at fixed rational points (exact
rational arithmetic wherever the expression is rational), equations by proportionality of
``lhs - rhs``, one-variable inequalities by their solution intervals (solved exactly when linear).
What cannot be decided that way (a nonlinear inequality, an expression undefined at the test
points) goes to the symbolic worker through ``symbolic``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import product as cartesian

from rewards._matheval import MPC, EvalError, Evaluator

Node = tuple

#: ± expands to at most this many alternatives (2**3): "x = \frac{-b \pm \sqrt{d}}{2a}" has two
MAX_PM_ALTERNATIVES = 8

# Test points for expressions with variables: rationals, so polynomial and rational answers
# stay exact; one negative value so that |x| and x, or sqrt(x^2) and x, differ.
_POINT_BASE = (Fraction(7, 5), Fraction(23, 9), Fraction(-13, 11), Fraction(5, 17), Fraction(37, 13))
# Points for the linearity test of one-variable relations (h(t) = a t + b at all of them).
_LINE_POINTS = (Fraction(1), Fraction(2), Fraction(3), Fraction(7, 3), Fraction(-97, 61))
MIN_VALID_POINTS = 2
#: sets up to this size are matched pairwise (any kind of element); larger sets of numbers by sorting
_GREEDY_MATCH_MAX = 32
_INFINITIES = {("inf",): 1, ("neg", ("inf",)): -1}


# -- answer kinds ----------------------------------------------------------------------------
@dataclass(eq=False)
class Scalar:
    node: Node
    vars: frozenset[str]
    value: tuple[object, bool] | None = None
    #: for a gold "50%": the bare number 50, also accepted
    alt: tuple[object, bool] | None = None
    points: dict[int, tuple[object, bool] | None] = field(default_factory=dict)


@dataclass(eq=False)
class Seq:
    items: tuple
    bracket: str  # "paren" | "brack"


@dataclass(eq=False)
class SetAnswer:
    items: tuple
    bare: bool  # written without braces ("1, 2" or "x = 1 or x = 2")


@dataclass(eq=False)
class Intervals:
    # (lo, lo_closed, hi, hi_closed); an endpoint is (sign, value): sign -1/+1 for -inf/+inf
    parts: tuple


@dataclass(eq=False)
class Matrix:
    rows: tuple


@dataclass(eq=False)
class Relation:
    ops: tuple[str, ...]
    items: tuple
    vars: frozenset[str]


@dataclass(eq=False)
class Membership:
    var: str
    intervals: Intervals


Meaning = Scalar | Seq | SetAnswer | Intervals | Matrix | Relation | Membership

METHODS = {
    Scalar: "numeric",
    Seq: "tuple",
    SetAnswer: "set",
    Intervals: "interval",
    Matrix: "matrix",
    Relation: "equation",
    Membership: "interval",
}


def free_vars(node: object) -> frozenset[str]:
    """Variable names in a node (iterative, so deep trees cost no recursion)."""
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple):
            if len(n) == 2 and n[0] == "var" and isinstance(n[1], str):
                out.add(n[1])
            else:
                stack.extend(x for x in n if isinstance(x, tuple))
    return frozenset(out)


def _contains_pm(node: object) -> bool:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple):
            if n and n[0] == "pm":
                return True
            stack.extend(x for x in n if isinstance(x, tuple))
    return False


def expand_pm(node: object) -> list:
    """All readings of a node with ± (``a ± b`` -> ``a + b``, ``a - b``)."""
    if not isinstance(node, tuple) or not _contains_pm(node):
        return [node]
    if node[0] == "pm":
        a, b, sign = node[1], node[2], node[3]
        out = []
        for left in expand_pm(a):
            for right in expand_pm(b):
                plus = ("add", (left, right))
                minus = ("add", (left, ("neg", right)))
                out.extend([plus, minus] if sign == "+-" else [minus, plus])
        return out
    choices = [expand_pm(x) for x in node]
    total = 1
    for c in choices:
        total *= len(c)
        if total > MAX_PM_ALTERNATIVES:
            raise EvalError("too many ± alternatives")
    return [tuple(combo) for combo in cartesian(*choices)]


def _is_var(node: Node) -> bool:
    return node[0] == "var"


def _minus(a: Node, b: Node) -> Node:
    return ("add", (a, ("neg", b)))


_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "!=": "!="}


class Comparator:
    """Builds meanings and compares them; one instance per grade call (holds the evaluator)."""

    def __init__(
        self,
        ev: Evaluator,
        rel_tol: float,
        symbolic: Callable[[dict], bool | None] | None,
        points: int = len(_POINT_BASE),
    ) -> None:
        self.ev = ev
        self.rel_tol = Fraction(repr(rel_tol))
        self.symbolic = symbolic
        self.n_points = min(points, len(_POINT_BASE))
        self.used_symbolic = False

    # -- meaning -----------------------------------------------------------------------------
    def meaning(self, node: Node, *, gold: bool = False) -> Meaning:
        """The answer kind of an AST node; :class:`EvalError` when a constant has no value."""
        if _contains_pm(node):
            if (
                node[0] == "rel"
                and node[1] == ("=",)
                and _is_var(node[2][0])
                and not _contains_pm(node[2][0])
            ):
                lhs = node[2][0]
                alts = expand_pm(node[2][1])
                return SetAnswer(tuple(self.meaning(("rel", ("=",), (lhs, a))) for a in alts), bare=True)
            return SetAnswer(tuple(self.meaning(a) for a in expand_pm(node)), bare=True)
        kind = node[0]
        if kind == "list":
            return SetAnswer(tuple(self.meaning(x) for x in node[1]), bare=True)
        if kind == "set":
            return SetAnswer(tuple(self.meaning(x) for x in node[1]), bare=False)
        if kind == "empty":
            return SetAnswer((), bare=False)
        if kind in ("paren", "brack"):
            if len(node[1]) == 2 and any(x in (("inf",), ("neg", ("inf",))) for x in node[1]):
                return self.intervals_of(node)  # (2, \infty) can only be an interval
            return Seq(tuple(self.meaning(x) for x in node[1]), kind)
        if kind in ("interval", "union", "reals"):
            return self.intervals_of(node)
        if kind == "matrix":
            return Matrix(tuple(tuple(self.meaning(x) for x in row) for row in node[1]))
        if kind == "rel":
            ops, items = node[1], node[2]
            if ops == ("in",) and _is_var(items[0]):
                return Membership(items[0][1], self.intervals_of(items[1]))
            if "in" in ops:
                raise EvalError("unsupported use of \\in")
            return Relation(ops, items, free_vars(node))
        if node in _INFINITIES:
            # a limit or sum can be infinite: infinity equals only the same infinity
            return Scalar(node, frozenset(), (_INFINITIES[node] * self.ev.ctx.inf, False))
        vars_ = free_vars(node)
        value = alt = None
        if not vars_:
            value = self.ev.ev(node)
            if gold and kind == "pct":
                alt = self.ev.ev(node[1])
        return Scalar(node, vars_, value, alt)

    def _endpoint(self, node: Node) -> tuple[int, object]:
        if node == ("inf",):
            return (1, None)
        if node == ("neg", ("inf",)):
            return (-1, None)
        if free_vars(node):
            raise EvalError("an interval endpoint must be a number")
        v, x = self.ev.ev(node)
        return (0, (self.ev.real(v), x))

    def intervals_of(self, node: Node) -> Intervals:
        """The union of intervals a node denotes (interval, pair, union, R, finite set)."""
        kind = node[0]
        if kind == "reals":
            return Intervals((((-1, None), False, (1, None), False),))
        if kind == "empty":
            return Intervals(())
        if kind == "union":
            parts: list = []
            for item in node[1]:
                parts.extend(self.intervals_of(item).parts)
            return Intervals(self._normalize(parts))
        if kind == "interval":
            lo_closed, lo, hi, hi_closed = node[1], node[2], node[3], node[4]
        elif kind in ("paren", "brack") and len(node[1]) == 2:
            lo, hi = node[1]
            lo_closed = hi_closed = kind == "brack"
        elif kind == "set":
            points = [self._endpoint(x) for x in node[1]]
            return Intervals(self._normalize([(p, True, p, True) for p in points]))
        else:
            raise EvalError("not an interval")
        a, b = self._endpoint(lo), self._endpoint(hi)
        if a[0] == 1 or b[0] == -1:
            raise EvalError("interval with reversed infinite endpoint")
        if (
            a[0] == 0
            and b[0] == 0
            and (
                self._less(b, a)
                or (self.ev.equal(a[1], b[1], self.rel_tol) and not (lo_closed and hi_closed))
            )
        ):
            raise EvalError("empty or reversed interval")
        return Intervals(((a, lo_closed and a[0] == 0, b, hi_closed and b[0] == 0),))

    def _less(self, a: tuple[int, object], b: tuple[int, object]) -> bool:
        if a[0] != 0 or b[0] != 0:
            return a[0] < b[0]
        x, y = a[1][0], b[1][0]
        if isinstance(x, Fraction) and isinstance(y, Fraction):
            return x < y
        return bool(self.ev.to_mp(x) < self.ev.to_mp(y))

    def _same_point(self, a: tuple[int, object], b: tuple[int, object]) -> bool:
        if a[0] != 0 or b[0] != 0:
            return a[0] == b[0]
        return self.ev.equal(a[1], b[1], self.rel_tol)

    def _normalize(self, parts: list) -> tuple:
        """Sort and merge overlapping or touching intervals: (1,2] U (2,3) is (1,3)."""
        if not parts:
            return ()
        # insertion sort by lower endpoint (few parts; avoids a key function over mixed types)
        ordered: list = []
        for p in parts:
            self.ev.tick()  # up to max_elements parts: quadratic, so it watches the deadline
            k = len(ordered)
            while k > 0 and self._less(p[0], ordered[k - 1][0]):
                k -= 1
            ordered.insert(k, p)
        merged = [ordered[0]]
        for lo, lo_c, hi, hi_c in ordered[1:]:
            mlo, mlo_c, mhi, mhi_c = merged[-1]
            touching = self._same_point(lo, mhi) and (lo_c or mhi_c)
            if self._less(lo, mhi) or touching:
                if self._less(mhi, hi):
                    merged[-1] = (mlo, mlo_c, hi, hi_c)
                elif self._same_point(mhi, hi):
                    merged[-1] = (mlo, mlo_c, mhi, mhi_c or hi_c)
                if self._same_point(lo, mlo):
                    merged[-1] = (merged[-1][0], mlo_c or lo_c, merged[-1][2], merged[-1][3])
            else:
                merged.append((lo, lo_c, hi, hi_c))
        return tuple(merged)

    # -- numbers and expressions -------------------------------------------------------------
    def point(self, k: int, names: list[str]) -> dict[str, Fraction]:
        return {
            name: _POINT_BASE[(k + 2 * j) % len(_POINT_BASE)] + Fraction(j, 19)
            for j, name in enumerate(names)
        }

    def _at(self, s: Scalar, k: int, names: list[str]) -> tuple[object, bool] | None:
        if k in s.points:
            return s.points[k]
        try:
            v = self.ev.ev(s.node, self.point(k, names))
        except EvalError:
            v = None
        s.points[k] = v
        return v

    def scalar_equal(self, pred: Scalar, gold: Scalar) -> bool:
        if not gold.vars:
            if pred.vars:
                return False  # a free symbol where a number is expected
            if self.ev.equal(pred.value, gold.value, self.rel_tol):
                return True
            return gold.alt is not None and self.ev.equal(pred.value, gold.alt, self.rel_tol)
        if not pred.vars <= gold.vars:
            return False
        names = sorted(gold.vars)
        valid = gold_defined = 0
        for k in range(self.n_points):
            g = self._at(gold, k, names)
            if g is None or isinstance(g[0], MPC):
                # outside the gold's real domain (2\ln x at x < 0): answers only need to agree
                # where the gold has a real value, so \ln(x^2) is accepted for 2\ln x
                continue
            gold_defined += 1
            try:
                p = self.ev.ev(pred.node, self.point(k, names))
            except EvalError:
                continue
            if not self.ev.equal(p, g, self.rel_tol):
                return False
            valid += 1
        if valid >= MIN_VALID_POINTS:
            return True
        if gold_defined >= MIN_VALID_POINTS:
            # the gold has values where the answer has none (x^{10^{10}}, \ln(-x^2-1)): the answer
            # is not the same function, and sympy would only spend the time limit finding that out
            return False
        return self._ask({"op": "expr_equal", "gold": gold.node, "pred": pred.node})

    def _ask(self, request: dict) -> bool:
        if self.symbolic is None:
            return False
        self.used_symbolic = True
        return bool(self.symbolic(request))

    def _value(self, node: Node, env: dict[str, Fraction]) -> tuple[object, bool] | None:
        try:
            return self.ev.ev(node, env)
        except EvalError:
            return None

    def _is_zero(self, v: tuple[object, bool]) -> bool:
        return self.ev.equal(v, (Fraction(0), False), self.rel_tol)

    def proportional(self, f: Node, g: Node, names: list[str], *, positive: bool) -> bool | None:
        """Whether ``f = c * g`` for a constant ``c`` (non-zero; positive when asked) at the test
        points; ``None`` when fewer than two points are usable."""
        ratio = None
        valid = 0
        for k in range(self.n_points):
            env = self.point(k, names)
            fv, gv = self._value(f, env), self._value(g, env)
            if fv is None or gv is None:
                continue
            fz, gz = self._is_zero(fv), self._is_zero(gv)
            if fz and gz:
                continue
            if fz != gz:
                return False
            r = (self.ev.mul(fv[0], self.ev.recip(gv[0])), fv[1] or gv[1])
            if ratio is None:
                ratio = r
                if positive:
                    rv = r[0]
                    if not isinstance(rv, Fraction) and isinstance(rv, MPC):
                        return False
                    if rv <= 0:
                        return False
            elif not self.ev.equal(r, ratio, self.rel_tol):
                return False
            valid += 1
        return True if valid >= MIN_VALID_POINTS else None

    # -- relations ---------------------------------------------------------------------------
    def _linear(self, h: Node, var: str) -> tuple[object, object] | None:
        """``(slope, value_at_1)`` when ``h`` is linear in ``var`` at the test points, else None."""
        vals = []
        for t in _LINE_POINTS:
            v = self._value(h, {var: t})
            if v is None:
                return None
            vals.append(v)
        ev = self.ev
        slope = ev.add(vals[1][0], -vals[0][0])
        inexact = any(v[1] for v in vals)
        for t, v in zip(_LINE_POINTS[2:], vals[2:], strict=True):
            predicted = ev.add(vals[0][0], ev.mul(slope, t - 1))
            if not ev.equal((v[0], inexact), (predicted, False), self.rel_tol):
                return None
        return slope, vals[0][0]

    def _solve_link(self, a: Node, op: str, b: Node, var: str) -> Intervals | None:
        lin = self._linear(_minus(a, b), var)
        if lin is None:
            return None
        slope, at1 = lin
        ev = self.ev
        if isinstance(slope, MPC) or isinstance(at1, MPC):
            return None
        if (slope == 0) if isinstance(slope, Fraction) else abs(slope) <= 1e-30:
            holds = {
                "<": at1 < 0,
                ">": at1 > 0,
                "<=": at1 <= 0,
                ">=": at1 >= 0,
                "=": at1 == 0,
                "!=": at1 != 0,
            }[op]
            return Intervals((((-1, None), False, (1, None), False),)) if holds else Intervals(())
        root = ev.add(Fraction(1), -ev.mul(at1, ev.recip(slope)))
        if slope < 0:
            op = _FLIP[op]
        r = (0, (ev.real(root), False))
        neg, pos = (-1, None), (1, None)
        table = {
            "<": ((neg, False, r, False),),
            "<=": ((neg, False, r, True),),
            ">": ((r, False, pos, False),),
            ">=": ((r, True, pos, False),),
            "=": ((r, True, r, True),),
            "!=": ((neg, False, r, False), (r, False, pos, False)),
        }
        return Intervals(table[op])

    def _intersect(self, a: Intervals, b: Intervals) -> Intervals:
        out = []
        for alo, alc, ahi, ahc in a.parts:
            for blo, blc, bhi, bhc in b.parts:
                if self._less(alo, blo):
                    lo, lc = blo, blc
                elif self._less(blo, alo):
                    lo, lc = alo, alc
                else:
                    lo, lc = alo, alc and blc
                if self._less(ahi, bhi):
                    hi, hc = ahi, ahc
                elif self._less(bhi, ahi):
                    hi, hc = bhi, bhc
                else:
                    hi, hc = ahi, ahc and bhc
                if self._less(lo, hi) or (self._same_point(lo, hi) and lc and hc and lo[0] == 0):
                    out.append((lo, lc, hi, hc))
        return Intervals(self._normalize(out))

    def solve(self, rel: Relation, var: str) -> Intervals | None:
        """Solution set of a one-variable relation chain when every link is linear, else None."""
        result = Intervals((((-1, None), False, (1, None), False),))
        for i, op in enumerate(rel.ops):
            part = self._solve_link(rel.items[i], op, rel.items[i + 1], var)
            if part is None:
                return None
            result = self._intersect(result, part)
        return result

    def intervals_equal(self, a: Intervals, b: Intervals) -> bool:
        if len(a.parts) != len(b.parts):
            return False
        for (alo, alc, ahi, ahc), (blo, blc, bhi, bhc) in zip(a.parts, b.parts, strict=True):
            if not (self._same_point(alo, blo) and self._same_point(ahi, bhi)):
                return False
            if alc != blc or ahc != bhc:
                return False
        return True

    def _relation_sets(self, pred: Meaning, gold: Relation, var: str) -> bool:
        gold_set = self.solve(gold, var)
        if isinstance(pred, Relation):
            if not pred.vars <= {var}:
                return False
            pred_set = self.solve(pred, var)
        elif isinstance(pred, Intervals):
            pred_set = pred
        elif isinstance(pred, Membership):
            if pred.var != var:
                return False
            pred_set = pred.intervals
        elif isinstance(pred, Seq) and len(pred.items) == 2:
            pred_set = self._seq_as_interval(pred)  # [1, 5] for 1 <= x <= 5
            if pred_set is None:
                return False
        else:
            return False
        if gold_set is not None and pred_set is not None:
            return self.intervals_equal(pred_set, gold_set)
        pred_node = _as_set_node(pred if pred_set is None else pred_set)
        return self._ask({"op": "relation_equal", "gold": _rel_node(gold), "pred": pred_node, "var": var})

    def relation_equal(self, pred: Meaning, gold: Relation) -> bool:
        equation = all(op == "=" for op in gold.ops)
        names = sorted(gold.vars)
        if equation and len(gold.items) == 2:
            lhs, rhs = gold.items
            # "x = 3" or "y = 2x + 1": the value alone is accepted
            if _is_var(lhs) and lhs[1] not in free_vars(rhs) and isinstance(pred, Scalar):
                value = self.meaning(rhs, gold=True)
                return isinstance(value, Scalar) and self.scalar_equal(pred, value)
            if isinstance(pred, Relation) and all(op == "=" for op in pred.ops) and len(pred.items) == 2:
                if not pred.vars <= gold.vars:
                    return False
                f, g = _minus(lhs, rhs), _minus(*pred.items)
                same = self.proportional(f, g, names, positive=False)
                if same:
                    return True
                if len(names) == 1:
                    return self._relation_sets(pred, gold, names[0])
                return (
                    bool(same)
                    if same is not None
                    else self._ask({"op": "expr_equal", "gold": f, "pred": g, "proportional": True})
                )
            if isinstance(pred, SetAnswer) and len(names) == 1:
                values = [_value_of_equation(x, names[0]) for x in pred.items]
                if any(v is None for v in values):
                    return False
                gold_set = self.solve(gold, names[0])
                if gold_set is not None:  # linear gold: its solution is known without sympy
                    return self.intervals_equal(self.intervals_of(("set", tuple(values))), gold_set)
                return self._ask(
                    {
                        "op": "relation_equal",
                        "gold": _rel_node(gold),
                        "pred": ("set", tuple(values)),
                        "var": names[0],
                    }
                )
            return False
        if equation:
            return False
        if len(names) == 1:
            return self._relation_sets(pred, gold, names[0])
        # several variables: y > 2x + 1 equals 2x - y < -1 (positive multiple, same strictness)
        if not isinstance(pred, Relation) or len(gold.ops) != 1 or len(pred.ops) != 1:
            return False
        gf, gstrict = _oriented(gold)
        pf, pstrict = _oriented(pred)
        if gstrict != pstrict or "=" in (gold.ops[0], pred.ops[0]) or "!=" in (gold.ops[0], pred.ops[0]):
            return False
        return bool(self.proportional(gf, pf, names, positive=True))

    # -- dispatch ----------------------------------------------------------------------------
    def equal(self, pred: Meaning, gold: Meaning) -> bool:
        """Whether ``pred`` means the same as ``gold`` (the gold's kind decides the rules)."""
        self.ev.tick()
        if isinstance(gold, Scalar):
            if isinstance(pred, Scalar):
                return self.scalar_equal(pred, gold)
            if isinstance(pred, Relation):
                value = _equation_value(pred, gold.vars)
                if value is None:
                    return False
                answer = self.meaning(value)  # "x = \{1, 2\}" is not a number
                return isinstance(answer, Scalar) and self.scalar_equal(answer, gold)
            return False
        if isinstance(gold, Relation):
            return self.relation_equal(pred, gold)
        if isinstance(gold, Intervals):
            if isinstance(pred, Membership):
                pred = pred.intervals
            if isinstance(pred, Seq) and len(pred.items) == 2:
                pred = self._seq_as_interval(pred)
            return isinstance(pred, Intervals) and self.intervals_equal(pred, gold)
        if isinstance(gold, Membership):
            if isinstance(pred, Membership):
                return pred.var == gold.var and self.intervals_equal(pred.intervals, gold.intervals)
            return self.equal(pred, gold.intervals)
        if isinstance(gold, Seq):
            return self.seq_equal(pred, gold)
        if isinstance(gold, SetAnswer):
            return self.set_equal(pred, gold)
        if isinstance(gold, Matrix):
            return self.matrix_equal(pred, gold)
        return False

    def _seq_as_interval(self, seq: Seq) -> Intervals | None:
        try:
            return self.intervals_of((seq.bracket, tuple(_node_of(x) for x in seq.items)))
        except EvalError:
            return None

    def seq_equal(self, pred: Meaning, gold: Seq) -> bool:
        if isinstance(pred, Membership):
            pred = pred.intervals  # x \in [1, 5] for [1, 5]
        if isinstance(pred, Intervals) and len(gold.items) == 2:
            as_interval = self._seq_as_interval(gold)
            return as_interval is not None and self.intervals_equal(pred, as_interval)
        if isinstance(pred, Matrix):
            flat = _vector(pred)
            if flat is None:
                return False
            pred = Seq(flat, gold.bracket)
        if isinstance(pred, SetAnswer) and pred.bare:
            pred = Seq(pred.items, gold.bracket)  # "1, 2" for "(1, 2)": order still counts
        if not isinstance(pred, Seq) or len(pred.items) != len(gold.items):
            return False
        if len(gold.items) == 2 and pred.bracket != gold.bracket:
            return False  # (1, 2) and [1, 2] differ as intervals
        return all(self.equal(p, g) for p, g in zip(pred.items, gold.items, strict=True))

    def _equation_values(self, items: tuple) -> tuple:
        """``x = 1, x = 2`` -> ``1, 2`` when every item assigns one variable a constant."""
        names = set()
        for m in items:
            if not (isinstance(m, Relation) and m.ops == ("=",) and _is_var(m.items[0])):
                return items
            if free_vars(m.items[1]):
                return items
            names.add(m.items[0][1])
        if len(names) != 1:
            return items
        return tuple(self.meaning(m.items[1]) for m in items)

    def set_equal(self, pred: Meaning, gold: SetAnswer) -> bool:
        gold_items = self._equation_values(gold.items)
        if isinstance(pred, SetAnswer):
            pred_items = self._equation_values(pred.items)
        elif isinstance(pred, Seq) and gold.bare:
            pred_items = pred.items
        elif len(gold_items) == 1:
            pred_items = self._equation_values((pred,))
        else:
            return False
        if len(pred_items) != len(gold_items):
            return False
        if (
            len(gold_items) > _GREEDY_MATCH_MAX
            and self._all_numbers(gold_items)
            and self._all_numbers(pred_items)
        ):
            # large sets of numbers: sort both by value and compare in pairs (n log n, not n^2)
            ordered_g = sorted(gold_items, key=self._sort_key)
            ordered_p = sorted(pred_items, key=self._sort_key)
            return all(self.scalar_equal(p, g) for p, g in zip(ordered_p, ordered_g, strict=True))
        unmatched = list(pred_items)
        for g in gold_items:
            for i, p in enumerate(unmatched):
                if self.equal(p, g):
                    del unmatched[i]
                    break
            else:
                return False
        return not unmatched

    @staticmethod
    def _all_numbers(items: tuple) -> bool:
        return all(isinstance(m, Scalar) and m.value is not None for m in items)

    def _sort_key(self, m: Scalar) -> tuple[float, float]:
        z = complex(self.ev.to_mp(m.value[0]))
        return (z.real, z.imag)

    def matrix_equal(self, pred: Meaning, gold: Matrix) -> bool:
        if isinstance(pred, Seq):
            flat = _vector(gold)
            return flat is not None and self.seq_equal(pred, Seq(flat, pred.bracket))
        if not isinstance(pred, Matrix):
            return False
        if len(pred.rows) != len(gold.rows) or len(pred.rows[0]) != len(gold.rows[0]):
            return False
        return all(
            self.equal(p, g)
            for prow, grow in zip(pred.rows, gold.rows, strict=True)
            for p, g in zip(prow, grow, strict=True)
        )


def _vector(m: Matrix) -> tuple | None:
    if len(m.rows) == 1:
        return m.rows[0]
    if all(len(r) == 1 for r in m.rows):
        return tuple(r[0] for r in m.rows)
    return None


def _node_of(m: Meaning) -> Node:
    if isinstance(m, Scalar):
        return m.node
    raise EvalError("not a number")


def _equation_value(rel: Relation, gold_vars: frozenset[str]) -> Node | None:
    """The value a chain of equalities ends in: ``x = 3`` -> 3, ``2 + 1 = 3`` -> 3, ``3 = x`` -> 3."""
    if any(op != "=" for op in rel.ops):
        return None
    first, last = rel.items[0], rel.items[-1]
    if _is_var(last) and last[1] not in gold_vars and len(rel.items) == 2:
        return first
    if _is_var(first) and first[1] in gold_vars:
        return None  # "x = 2x" for a gold in x is not an assignment
    return last


def _value_of_equation(m: Meaning, var: str) -> Node | None:
    if isinstance(m, Scalar):
        return m.node
    if isinstance(m, Relation) and m.ops == ("=",) and m.items[0] == ("var", var):
        return m.items[1]
    return None


def _oriented(rel: Relation) -> tuple[Node, bool]:
    """``a op b`` as ``h > 0`` or ``h >= 0``: (h, strict)."""
    a, b = rel.items
    op = rel.ops[0]
    if op in (">", ">="):
        return _minus(a, b), op == ">"
    return _minus(b, a), op == "<"


def _rel_node(rel: Relation) -> Node:
    return ("rel", rel.ops, rel.items)


def _as_set_node(m: Meaning) -> Node:
    if isinstance(m, Relation):
        return _rel_node(m)
    if isinstance(m, Membership):
        return _intervals_node(m.intervals)
    if isinstance(m, Intervals):
        return _intervals_node(m)
    raise EvalError("not a set")


def _intervals_node(iv: Intervals) -> Node:
    def end(e: tuple[int, object]) -> Node:
        if e[0] == 1:
            return ("inf",)
        if e[0] == -1:
            return ("neg", ("inf",))
        v = e[1][0]
        if isinstance(v, Fraction) and max(v.numerator.bit_length(), v.denominator.bit_length()) > 12_000:
            raise EvalError("interval endpoint too large")  # str() of it would exceed 4300 digits
        if isinstance(v, Fraction):
            return (
                "mul",
                (("num", str(abs(v.numerator)), "", 0), ("recip", ("num", str(v.denominator), "", 0))),
            )
        raise EvalError("irrational endpoint")

    def signed(e: tuple[int, object]) -> Node:
        node = end(e)
        if e[0] == 0 and e[1][0] < 0:
            return ("neg", node)
        return node

    return ("union", tuple(("interval", lc, signed(lo), signed(hi), hc) for lo, lc, hi, hc in iv.parts))
