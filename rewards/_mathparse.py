"""Parser for math answers: tokens from :mod:`rewards._mathlex` to a small tuple AST.

The AST is plain data (tuples of strings, ints and tuples), so it can be cached, compared,
and sent to the symbolic worker as JSON. Node shapes::

    ("num", digits, fraction_digits, exponent)   decimal literal: digits.fraction * 10**exponent
    ("var", name)  ("const", "pi"|"e")  ("inf",)  ("reals",)  ("empty",)
    ("add", terms)  ("neg", x)  ("mul", factors)  ("recip", x)  ("pow", base, exp)
    ("root", index, x)  ("func", name, x)  ("log", base | None, x)  ("fact", x)  ("binom", n, k)
    ("pct", x)  ("deg", x)  ("abs", x)  ("floor", x)  ("ceil", x)  ("pm", a, b, sign)
    ("paren", items)  ("brack", items)  ("interval", lo_closed, lo, hi, hi_closed)
    ("set", items)  ("list", items)  ("union", items)  ("matrix", rows)  ("rel", ops, items)

Recursion depth is bounded by the lexer's nesting check plus ``max_depth`` here; node count by
the token count.
"""

from __future__ import annotations

from rewards._mathlex import (
    AMP,
    BAR,
    BINOM,
    CAP,
    COMMA,
    CONST,
    CUP,
    DEG,
    EMPTY,
    ENV_BEGIN,
    ENV_END,
    FRAC,
    FUNC,
    LANGLE,
    LB,
    LCEIL,
    LFLOOR,
    LG,
    LP,
    LSET,
    MULT,
    NUM,
    OP,
    OR,
    PERCENT,
    PM,
    RANGLE,
    RB,
    RCEIL,
    REALS,
    REL,
    RFLOOR,
    RG,
    ROWSEP,
    RP,
    RSET,
    SEMI,
    SQRT,
    STYLE,
    TEXTWORD,
    VAR,
    WORD,
    ParseError,
    Token,
)

Node = tuple

#: Short unit names that count as units even without a space before them ("5cm").
KNOWN_UNITS = frozenset(
    [
        "cm",
        "mm",
        "km",
        "nm",
        "um",
        "dm",
        "m2",
        "cm2",
        "kg",
        "mg",
        "g",
        "lb",
        "lbs",
        "oz",
        "ft",
        "yd",
        "mi",
        "mph",
        "kph",
        "kmh",
        "in",
        "sq",
        "hr",
        "hrs",
        "h",
        "min",
        "mins",
        "sec",
        "secs",
        "s",
        "ms",
        "ml",
        "mL",
        "l",
        "L",
        "cc",
        "rad",
        "deg",
        "degrees",
        "units",
        "unit",
        "m",
        "cal",
        "kcal",
        "kj",
        "kJ",
        "kw",
        "kW",
        "kwh",
        "kWh",
        "mA",
        "V",
        "W",
        "Hz",
        "kHz",
        "MHz",
        "GHz",
        "Pa",
        "kPa",
        "N",
        "J",
        "K",
        "C",
        "F",
        "yuan",
        "dollars",
        "cents",
        "usd",
        "USD",
    ]
)
#: Single letters read as units only after a number and a space ("5 m", not "5m").
LETTER_UNITS = frozenset(["m", "g", "s", "h", "l", "L", "V", "W", "N", "J", "K", "A"])
#: Words in front of an answer that do not change it ("approximately 5").
FILLER_WORDS = frozenset(
    [
        "approximately",
        "approx",
        "about",
        "around",
        "roughly",
        "nearly",
        "exactly",
        "only",
        "just",
        "is",
        "are",
        "was",
        "equals",
        "equal",
        "to",
        "be",
        "total",
        "there",
        "it",
        "we",
        "get",
        "gives",
        "have",
        "so",
        "thus",
        "therefore",
        "hence",
        "answer",
        "final",
        "the",
        "of",
        "value",
        "result",
    ]
)
MATRIX_ENVS = frozenset({"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", "array"})
TRIG_INVERSE = {"sin": "asin", "cos": "acos", "tan": "atan"}
_ENDS_EXPRESSION = {NUM, VAR, CONST, RP, RB, RG, RSET, DEG, PERCENT, WORD, RANGLE, BAR, MULT}


def _is_unit(tokens: list[Token], k: int) -> bool:
    t = tokens[k]
    if t.kind == TEXTWORD:
        return True
    if t.kind == WORD:
        return t.value in KNOWN_UNITS or t.value.lower() in KNOWN_UNITS or (len(t.value) >= 4 and t.space)
    if t.kind == VAR and t.value in LETTER_UNITS and k > 0:
        before = tokens[k - 1]
        if t.space and before.kind in (NUM, RP, RG, DEG, PERCENT):
            return True  # "5 m"
        # the second unit of "m/s", "km/h"
        return before.kind == OP and before.value in ("/", "*") and k > 1 and _is_unit(tokens, k - 2)
    return False


def _is_caret(t: Token) -> bool:
    return t.kind == OP and t.value == "^"


def strip_units(tokens: list[Token]) -> tuple[list[Token], bool]:
    """Remove a trailing unit ("5 cm^2", "3 \\text{ apples}", "10 m/s") and leading filler words.

    Returns the tokens and whether a unit was removed. Only a suffix of unit words (with
    exponents and ``/``, ``*`` between them) goes; what remains must end like an expression.
    """
    start = 0
    while start < len(tokens) and tokens[start].kind in (WORD, TEXTWORD):
        if str(tokens[start].value).lower() not in FILLER_WORDS:
            break
        start += 1
    while start < len(tokens) and tokens[start].kind == REL and tokens[start].value == "=":
        start += 1  # "= 5", "\approx 3.14"
    end = len(tokens)
    removed = False
    while end > start:
        t = tokens[end - 1]
        if _is_unit(tokens, end - 1) and end - 1 > start:
            end -= 1
            removed = True
            continue
        # cm^2, cm^{2}
        if t.kind == NUM and end - 3 > start and _is_caret(tokens[end - 2]) and _is_unit(tokens, end - 3):
            end -= 2
            continue
        if (
            t.kind == RG
            and end - 5 > start
            and tokens[end - 3].kind == NUM
            and tokens[end - 4].kind == LG
            and _is_caret(tokens[end - 5])
            and _is_unit(tokens, end - 6)
        ):
            end -= 4
            continue
        if (
            t.kind == RP
            and end - 3 > start
            and tokens[end - 3].kind == LP
            and (tokens[end - 2].kind in (WORD, TEXTWORD) or _is_unit(tokens, end - 2))
        ):
            end -= 3  # "7 (apples)"
            removed = True
            continue
        if (
            removed
            and t.kind == OP
            and t.value in ("/", "*")
            and end - 2 > start
            and _is_unit(tokens, end - 2)
        ):
            end -= 1
            continue
        break
    if removed and tokens[end - 1].kind not in _ENDS_EXPRESSION:
        return tokens[start:], False
    return tokens[start:end], removed


class Parser:
    """Recursive descent over a token list; one instance per parse."""

    def __init__(self, tokens: list[Token], *, max_depth: int, max_elements: int) -> None:
        self.toks = tokens
        self.pos = 0
        self.depth = 0
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.abs_open = 0

    # -- helpers -----------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token | None:
        p = self.pos + offset
        return self.toks[p] if p < len(self.toks) else None

    def next(self) -> Token:
        if self.pos >= len(self.toks):
            raise ParseError("unexpected end of answer")
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def at(self, kind: str, value: object = None) -> bool:
        t = self.peek()
        return t is not None and t.kind == kind and (value is None or t.value == value)

    def accept(self, kind: str, value: object = None) -> bool:
        if self.at(kind, value):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, what: str) -> Token:
        t = self.peek()
        if t is None or t.kind != kind:
            raise ParseError(f"expected {what}")
        self.pos += 1
        return t

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise ParseError(f"expression nested deeper than {self.max_depth}")

    def leave(self) -> None:
        self.depth -= 1

    def parse(self) -> Node:
        if not self.toks:
            raise ParseError("empty answer")
        node = self.top()
        if self.pos != len(self.toks):
            t = self.toks[self.pos]
            raise ParseError(
                f"unexpected {t.kind} {t.value!r}" if t.value is not None else f"unexpected {t.kind}"
            )
        return node

    # -- grammar -----------------------------------------------------------------------------
    def top(self) -> Node:
        items = [self.relation()]
        while self.at(COMMA) or self.at(SEMI) or self.at(OR):
            self.next()
            if self.peek() is None or self.peek().kind in (RP, RB, RG, RSET):
                break  # trailing separator
            items.append(self.relation())
            if len(items) > self.max_elements:
                raise ParseError(f"more than {self.max_elements} elements")
        return items[0] if len(items) == 1 else ("list", tuple(items))

    def relation(self) -> Node:
        first = self.union()
        ops: list[str] = []
        items = [first]
        while self.at(REL):
            ops.append(str(self.next().value))
            items.append(self.union())
        return ("rel", tuple(ops), tuple(items)) if ops else first

    def union(self) -> Node:
        first = self.sum()
        if not (self.at(CUP) or self.at(CAP)):
            return first
        items = [first]
        while self.at(CUP) or self.at(CAP):
            if self.next().kind == CAP:
                raise ParseError("intersections are not supported")
            items.append(self.sum())
        return ("union", tuple(items))

    def sum(self) -> Node:
        terms = [self.product()]
        while True:
            t = self.peek()
            if t is None:
                break
            if t.kind == OP and t.value == "+":
                self.next()
                terms.append(self.product())
            elif t.kind == OP and t.value == "-":
                self.next()
                terms.append(("neg", self.product()))
            elif t.kind == PM:
                self.next()
                left = terms[0] if len(terms) == 1 else ("add", tuple(terms))
                terms = [("pm", left, self.product(), t.value)]
            else:
                break
            if len(terms) > self.max_elements:
                raise ParseError(f"more than {self.max_elements} terms")
        return terms[0] if len(terms) == 1 else ("add", tuple(terms))

    def _starts_implicit_factor(self, prev: Node) -> bool:
        t = self.peek()
        if t is None:
            return False
        if t.kind == NUM:
            return False  # "2 3" is not a product
        if t.kind == BAR:
            return self.abs_open == 0
        if t.kind == LB:
            return False  # "x[1,2]" is not a product
        return t.kind in (VAR, CONST, FUNC, LP, LG, FRAC, SQRT, BINOM, WORD, STYLE, LFLOOR, LCEIL)

    def product(self) -> Node:
        factors = [self.unary()]
        while True:
            t = self.peek()
            if t is None:
                break
            if t.kind == OP and t.value == "*":
                self.next()
                factors.append(self.unary())
            elif t.kind == OP and t.value == "/":
                self.next()
                factors.append(("recip", self.unary()))
            elif t.kind == FRAC and self._is_mixed_number(factors):
                fraction = self.power()
                factors = [("add", (factors[0], fraction))]
            elif self._starts_implicit_factor(factors[-1]):
                factors.append(self.power())
            else:
                break
            if len(factors) > self.max_elements:
                raise ParseError(f"more than {self.max_elements} factors")
        return factors[0] if len(factors) == 1 else ("mul", tuple(factors))

    def _is_mixed_number(self, factors: list[Node]) -> bool:
        """``2\\frac{1}{2}`` is two and a half: an integer literal right before a fraction of two
        integer literals."""
        if len(factors) != 1 or factors[0][0] != "num" or factors[0][2] or factors[0][3]:
            return False
        toks = self.toks[self.pos : self.pos + 7]
        kinds = [t.kind for t in toks]
        if kinds[:7] == [FRAC, LG, NUM, RG, LG, NUM, RG]:
            a, b = toks[2].value, toks[5].value
            return not a[1] and not b[1] and not a[2] and not b[2]
        return False

    def unary(self) -> Node:
        t = self.peek()
        if t is not None and t.kind == OP and t.value in ("-", "+"):
            self.next()
            self.enter()
            inner = self.unary()
            self.leave()
            return ("neg", inner) if t.value == "-" else inner
        if t is not None and t.kind == PM:
            self.next()
            self.enter()
            inner = self.unary()
            self.leave()
            return ("pm", ("num", "0", "", 0), inner, t.value)
        return self.power()

    def power(self) -> Node:
        base = self.postfix()
        if self.at(OP, "^"):
            self.next()
            self.enter()
            exponent = self.unary()
            self.leave()
            return self._postfix_ops(("pow", base, exponent))
        return base

    def _degree_follows(self) -> int:
        """Tokens of a ``^\\circ`` / ``^{\\circ}`` at the cursor (0 when none)."""
        a, b = self.peek(), self.peek(1)
        if a is None or a.kind != OP or a.value != "^" or b is None:
            return 0
        if b.kind == DEG:
            return 2
        c, d = self.peek(2), self.peek(3)
        if b.kind == LG and c is not None and c.kind == DEG and d is not None and d.kind == RG:
            return 4
        return 0

    def _postfix_ops(self, node: Node) -> Node:
        applied = 0
        while True:
            t = self.peek()
            if t is None:
                return node
            applied += 1
            if applied > self.max_depth:
                # "3!!!!..." or "5%%%%..." nests the tree as deeply as brackets do
                raise ParseError(f"more than {self.max_depth} postfix operators")
            deg = self._degree_follows()
            if deg:
                self.pos += deg
                node = ("deg", node)
            elif t.kind == DEG:
                self.next()
                node = ("deg", node)
            elif t.kind == OP and t.value == "!":
                self.next()
                node = ("fact", node)
            elif t.kind == PERCENT:
                self.next()
                node = ("pct", node)
            elif t.kind == MULT:
                self.next()
                node = ("mul", (node, ("num", "1", "", int(t.value))))
            else:
                return node

    def postfix(self) -> Node:
        return self._postfix_ops(self.primary())

    def _split_first(self, t: Token) -> Node:
        """``\\frac12``: an unbraced argument is one character of the next token."""
        if t.kind == NUM:
            digits, frac, exp, _ = t.value
            if frac or exp or len(digits) == 1:
                return ("num", digits, frac, exp)
            self.toks.insert(self.pos, Token(NUM, (digits[1:], "", 0, None), False))
            return ("num", digits[0], "", 0)
        if t.kind == WORD:
            w = str(t.value)
            self.toks.insert(self.pos, Token(WORD if len(w) > 2 else VAR, w[1:], False))
            return _letter(w[0])
        raise ParseError("bad argument")

    def argument(self) -> Node:
        t = self.peek()
        if t is None:
            raise ParseError("missing argument")
        if t.kind == LG:
            self.next()
            self.enter()
            inner = self.top()
            self.leave()
            self.expect(RG, "'}'")
            return inner
        if t.kind in (NUM, WORD):
            self.next()
            return self._split_first(t)
        self.enter()
        node = self.primary()
        self.leave()
        return node

    def primary(self) -> Node:
        t = self.next()
        kind = t.kind
        if kind == NUM:
            digits, frac, exp, grouped = t.value
            if grouped is not None:
                return ("num", digits, frac, exp, grouped)
            return ("num", digits, frac, exp)
        if kind == VAR:
            return _letter(str(t.value))
        if kind == WORD:
            letters = [_letter(c) for c in str(t.value)]
            return ("mul", tuple(letters))
        if kind == CONST:
            return ("inf",) if t.value == "inf" else ("const", t.value)
        if kind in (LP, LB):
            return self.bracketed(kind)
        if kind == LG:
            self.enter()
            if self.accept(RG):
                raise ParseError("empty group")
            inner = self.top()
            self.leave()
            self.expect(RG, "'}'")
            if inner[0] == "list":
                return ("set", inner[1])
            return inner
        if kind == LSET:
            if self.accept(RSET):
                return ("empty",)
            self.enter()
            inner = self.top()
            self.leave()
            self.expect(RSET, "'\\}'")
            return ("set", inner[1] if inner[0] == "list" else (inner,))
        if kind == LANGLE:
            self.enter()
            inner = self.top()
            self.leave()
            self.expect(RANGLE, "'\\rangle'")
            return ("paren", inner[1] if inner[0] == "list" else (inner,))
        if kind == BAR:
            self.abs_open += 1
            self.enter()
            inner = self.sum()
            self.leave()
            self.abs_open -= 1
            self.expect(BAR, "closing '|'")
            return ("abs", inner)
        if kind in (LFLOOR, LCEIL):
            self.enter()
            inner = self.sum()
            self.leave()
            self.expect(RFLOOR if kind == LFLOOR else RCEIL, "closing bracket")
            return ("floor" if kind == LFLOOR else "ceil", inner)
        if kind == FRAC:
            num = self.argument()
            den = self.argument()
            return ("mul", (num, ("recip", den)))
        if kind == SQRT:
            index: Node = ("num", "2", "", 0)
            if self.accept(LB):
                self.enter()
                index = self.sum()
                self.leave()
                self.expect(RB, "']'")
            return ("root", index, self.argument())
        if kind == BINOM:
            n = self.argument()
            return ("binom", n, self.argument())
        if kind == FUNC:
            return self.function(str(t.value))
        if kind == REALS:
            return ("reals",)
        if kind == EMPTY:
            return ("empty",)
        if kind == ENV_BEGIN:
            return self.matrix(str(t.value))
        if kind == STYLE:
            return self.argument()
        if kind == TEXTWORD:
            raise ParseError(f"unexpected text {t.value!r}")
        if kind == ROWSEP:
            raise ParseError("line break outside a matrix")
        raise ParseError(f"unexpected {kind}" + (f" {t.value!r}" if t.value is not None else ""))

    def bracketed(self, open_kind: str) -> Node:
        self.enter()
        items = [self.relation()]
        while self.accept(COMMA):
            items.append(self.relation())
            if len(items) > self.max_elements:
                raise ParseError(f"more than {self.max_elements} elements")
        self.leave()
        close = self.next()
        if close.kind not in (RP, RB):
            raise ParseError("expected a closing bracket")
        if len(items) == 1:
            item = items[0]
            if open_kind == LP and close.kind == RP:
                if item[0] == "num" and len(item) == 5:
                    # "(2,100)" is a pair, not 2100 in parentheses
                    return ("paren", tuple(("num", p, "", 0) for p in item[4]))
                return item
            if open_kind == LB and close.kind == RB:
                return item
            raise ParseError("an interval needs two endpoints")
        if open_kind == LP and close.kind == RP:
            return ("paren", tuple(items))
        if open_kind == LB and close.kind == RB:
            return ("brack", tuple(items))
        if len(items) != 2:
            raise ParseError("an interval needs two endpoints")
        return ("interval", open_kind == LB, items[0], items[1], close.kind == RB)

    def function(self, name: str) -> Node:
        power: Node | None = None
        base: Node | None = None
        for _ in range(2):
            if self.accept(OP, "^"):
                power = self.argument()
            elif self.accept(OP, "_"):
                base = self.argument()
        if power is not None and name in TRIG_INVERSE and power == ("neg", ("num", "1", "", 0)):
            name, power = TRIG_INVERSE[name], None
        self.enter()
        t = self.peek()
        if t is None:
            raise ParseError(f"missing argument of {name}")
        if t.kind in (LP, LG):
            arg = self.primary()
        else:
            # \sin 2x: the argument is the following implicit product, up to the next operator
            factors = [self.power()]
            while (
                self.peek() is not None
                and self.peek().kind != FUNC
                and self._starts_implicit_factor(factors[-1])
            ):
                factors.append(self.power())
            arg = factors[0] if len(factors) == 1 else ("mul", tuple(factors))
        self.leave()
        if name == "log" or name == "log10":
            node: Node = ("log", ("num", "10", "", 0) if name == "log10" else base, arg)
        elif base is not None:
            raise ParseError(f"{name} takes no subscript")
        elif name == "sqrt":
            node = ("root", ("num", "2", "", 0), arg)
        elif name in ("abs", "floor", "ceil"):
            node = (name, arg)
        else:
            node = ("func", name, arg)
        return ("pow", node, power) if power is not None else node

    def matrix(self, env: str) -> Node:
        if env not in MATRIX_ENVS:
            raise ParseError(f"unsupported environment {env!r}")
        self.enter()
        rows: list[tuple[Node, ...]] = []
        row: list[Node] = []
        count = 0
        while True:
            if self.accept(ENV_END):
                break
            row.append(self.relation())
            count += 1
            if count > self.max_elements:
                raise ParseError(f"matrix with more than {self.max_elements} entries")
            if self.accept(AMP):
                continue
            if self.accept(ROWSEP):
                rows.append(tuple(row))
                row = []
                continue
            if not self.at(ENV_END):
                raise ParseError("expected '&', '\\\\' or \\end")
        if row:
            rows.append(tuple(row))
        self.leave()
        if not rows:
            raise ParseError("empty matrix")
        if len({len(r) for r in rows}) != 1:
            raise ParseError("matrix rows of different lengths")
        return ("matrix", tuple(rows))


def _letter(c: str) -> Node:
    return ("const", "e") if c == "e" else ("var", c)


def parse_tokens(tokens: list[Token], *, max_depth: int, max_elements: int) -> Node:
    """AST of a token list (see the module docstring); :class:`ParseError` when malformed."""
    return Parser(list(tokens), max_depth=max_depth, max_elements=max_elements).parse()


__all__ = ["FILLER_WORDS", "KNOWN_UNITS", "Node", "Parser", "parse_tokens", "strip_units"]
