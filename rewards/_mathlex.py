"""Tokenizer for math answers (LaTeX and plain text), the first stage of :mod:`rewards.math`.

A whitelist: every command, word and character it does not know is a :class:`ParseError`, never
passed on to anything that could interpret it. One left-to-right pass, linear in the input; the
input length and the bracket nesting depth are checked before any work.
"""

from __future__ import annotations

from dataclasses import dataclass

# Token kinds. Values: NUM -> (digits, fraction_digits, exponent, grouped_pieces | None);
# VAR -> name; CONST -> "pi" | "e" | "inf"; FUNC -> canonical name; REL -> "=", "<", ">", "<=",
# ">=", "!=", "in"; WORD -> lower-cased letters; TEXTWORD -> a word from \text{...};
# ENV_BEGIN / ENV_END -> environment name; MULT -> power of ten; others carry their symbol.
NUM, VAR, CONST, FUNC, OP, REL, PM = "NUM", "VAR", "CONST", "FUNC", "OP", "REL", "PM"
LP, RP, LB, RB, LG, RG, LSET, RSET = "LP", "RP", "LB", "RB", "LG", "RG", "LSET", "RSET"
COMMA, SEMI, BAR, AMP, ROWSEP, OR = "COMMA", "SEMI", "BAR", "AMP", "ROWSEP", "OR"
FRAC, SQRT, BINOM, ENV_BEGIN, ENV_END = "FRAC", "SQRT", "BINOM", "ENV_BEGIN", "ENV_END"
CUP, CAP, REALS, EMPTY, DEG, MULT, WORD, TEXTWORD, PERCENT = (
    "CUP",
    "CAP",
    "REALS",
    "EMPTY",
    "DEG",
    "MULT",
    "WORD",
    "TEXTWORD",
    "PERCENT",
)
LANGLE, RANGLE, LFLOOR, RFLOOR, LCEIL, RCEIL, STYLE = (
    "LANGLE",
    "RANGLE",
    "LFLOOR",
    "RFLOOR",
    "LCEIL",
    "RCEIL",
    "STYLE",
)


class ParseError(ValueError):
    """The answer is not well-formed math in the supported grammar (a reason, not a crash)."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: object = None
    #: whitespace (or a LaTeX spacing command) came right before this token
    space: bool = False


FUNCTIONS = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "exp": "exp",
    "ln": "ln",
    "log": "log",
    "lg": "log10",
    "sqrt": "sqrt",
    "abs": "abs",
    "floor": "floor",
    "ceil": "ceil",
}

GREEK = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
]

MULTIPLIERS = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}

# Plain-text words with a math meaning.
WORDS = {
    "pi": (CONST, "pi"),
    "inf": (CONST, "inf"),
    "infty": (CONST, "inf"),
    "infinity": (CONST, "inf"),
    "or": (OR, "or"),
    "and": (OR, "and"),
    "mod": (WORD, "mod"),
}

# Commands whose only job is spacing or sizing: dropped (and count as whitespace).
SPACING = {",", ";", ":", "!", " ", "quad", "qquad", "enspace", "thinspace", "medspace", "thickspace"}
SIZING = {
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "Biggl",
    "Biggr",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "limits",
    "nolimits",
}
# Commands taking a text argument: the argument's words become TEXTWORD tokens (units, "or").
TEXT_COMMANDS = {
    "text",
    "textbf",
    "textit",
    "textrm",
    "texttt",
    "mbox",
    "mathrm",
    "textnormal",
    "operatorname",
}
# Font/style commands around math: transparent.
STYLE_COMMANDS = {"mathbf", "boldsymbol", "mathit", "mathsf", "bm", "mathnormal", "vec", "overrightarrow"}

SIMPLE_COMMANDS: dict[str, tuple[str, object]] = {
    "frac": (FRAC, "frac"),
    "dfrac": (FRAC, "frac"),
    "tfrac": (FRAC, "frac"),
    "cfrac": (FRAC, "frac"),
    "sqrt": (SQRT, "sqrt"),
    "binom": (BINOM, "binom"),
    "dbinom": (BINOM, "binom"),
    "tbinom": (BINOM, "binom"),
    "pi": (CONST, "pi"),
    "infty": (CONST, "inf"),
    "infin": (CONST, "inf"),
    "cdot": (OP, "*"),
    "times": (OP, "*"),
    "ast": (OP, "*"),
    "div": (OP, "/"),
    "pm": (PM, "+-"),
    "mp": (PM, "-+"),
    "le": (REL, "<="),
    "leq": (REL, "<="),
    "leqslant": (REL, "<="),
    "ge": (REL, ">="),
    "geq": (REL, ">="),
    "geqslant": (REL, ">="),
    "lt": (REL, "<"),
    "gt": (REL, ">"),
    "ne": (REL, "!="),
    "neq": (REL, "!="),
    "approx": (REL, "="),
    "in": (REL, "in"),
    "cup": (CUP, "cup"),
    "cap": (CAP, "cap"),
    "emptyset": (EMPTY, None),
    "varnothing": (EMPTY, None),
    "circ": (DEG, None),
    "degree": (DEG, None),
    "%": (PERCENT, None),
    "{": (LSET, None),
    "}": (RSET, None),
    "lbrace": (LSET, None),
    "rbrace": (RSET, None),
    "langle": (LANGLE, None),
    "rangle": (RANGLE, None),
    "lfloor": (LFLOOR, None),
    "rfloor": (RFLOOR, None),
    "lceil": (LCEIL, None),
    "rceil": (RCEIL, None),
    "vert": (BAR, None),
    "lvert": (BAR, None),
    "rvert": (BAR, None),
    "mid": (BAR, None),
    "lor": (OR, "or"),
    "vee": (OR, "or"),
    "\\": (ROWSEP, None),
    "$": (None, None),  # \$ currency: dropped
    "exp": (FUNC, "exp"),
}

# Unicode characters with a math meaning, mapped to LaTeX-equivalent tokens.
UNICODE: dict[str, tuple[str | None, object]] = {
    "\u2212": (OP, "-"),  # minus sign
    "\u2013": (OP, "-"),  # en dash, often typed as a minus
    "\u2010": (OP, "-"),
    "\u2011": (OP, "-"),
    "\u00d7": (OP, "*"),
    "\u22c5": (OP, "*"),
    "\u00b7": (OP, "*"),
    "\u00f7": (OP, "/"),
    "\u2264": (REL, "<="),
    "\u2265": (REL, ">="),
    "\u2260": (REL, "!="),
    "\u2248": (REL, "="),
    "\u2208": (REL, "in"),
    "\u00b1": (PM, "+-"),
    "\u2213": (PM, "-+"),
    "\u221e": (CONST, "inf"),
    "\u03c0": (CONST, "pi"),
    "\u00b0": (DEG, None),
    "\u222a": (CUP, "cup"),
    "\u2229": (CAP, "cap"),
    "\u2205": (EMPTY, None),
    "\u211d": (REALS, None),
    "\u221a": (SQRT, "sqrt"),
    "\u27e8": (LANGLE, None),
    "\u27e9": (RANGLE, None),
    "\u00a0": (None, None),  # no-break space
    "\u2009": (None, None),  # thin space
    "\u202f": (None, None),  # narrow no-break space
    "\u200b": (None, None),  # zero-width space
    "\u20ac": (None, None),  # euro sign (currency is not part of the value)
    "\u00a3": (None, None),
    "\u00a5": (None, None),
    "\uff0c": (COMMA, None),  # full-width comma
}
SUPERSCRIPTS = {"\u00b2": "2", "\u00b3": "3", "\u00b9": "1"}
_THIN_SPACES = {"\u2009", "\u202f", "\u00a0"}

ASCII_OPS = {"+": (OP, "+"), "-": (OP, "-"), "*": (OP, "*"), "/": (OP, "/"), "^": (OP, "^"), "!": (OP, "!")}
ASCII_OPS |= {"_": (OP, "_"), "%": (PERCENT, None), "'": (OP, "'")}
BRACKETS = {"(": LP, ")": RP, "[": LB, "]": RB, "{": LG, "}": RG, "|": BAR, ",": COMMA, ";": SEMI, "&": AMP}


def check_nesting(text: str, max_depth: int) -> None:
    """Reject inputs nested deeper than ``max_depth`` before any recursive work (one pass)."""
    depth = 0
    for c in text:
        if c in "({[":
            depth += 1
            if depth > max_depth:
                raise ParseError(f"nested deeper than {max_depth} brackets")
        elif c in ")}]":
            depth = max(depth - 1, 0)


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _is_letter(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.out: list[Token] = []
        self.space = False

    def emit(self, kind: str, value: object = None) -> None:
        self.out.append(Token(kind, value, self.space))
        self.space = False

    # -- numbers -----------------------------------------------------------------------------
    def _three_digits_at(self, j: int) -> bool:
        s = self.s
        return (
            j + 3 <= self.n
            and _is_digit(s[j])
            and _is_digit(s[j + 1])
            and _is_digit(s[j + 2])
            and (j + 3 == self.n or not _is_digit(s[j + 3]))
        )

    def _group_separator(self, j: int) -> int:
        """Length of a thousands separator at ``j`` that is followed by exactly three digits."""
        s = self.s
        for sep in (",", "{,}", "\\,", "\\ ", "\\;", "\u2009", "\u202f", "\u00a0"):
            if s.startswith(sep, j) and self._three_digits_at(j + len(sep)):
                return len(sep)
        return 0

    def number(self) -> None:
        s, n = self.s, self.n
        start = self.i
        j = start
        while j < n and _is_digit(s[j]):
            j += 1
        pieces = [s[start:j]]
        comma_grouped = False
        # Thousands separators: only after a first group of 1-3 digits without a leading zero, so
        # that "(0,100)" stays a pair; a comma group may be split again by the parser when it
        # is the only element of a bracket ("(2,100)" is a point, not 2100).
        if 1 <= len(pieces[0]) <= 3 and not (len(pieces[0]) > 1 and pieces[0][0] == "0") and pieces[0] != "0":
            while True:
                sep = self._group_separator(j)
                if not sep:
                    break
                if s[j] == ",":
                    comma_grouped = True
                pieces.append(s[j + sep : j + sep + 3])
                j += sep + 3
        digits = "".join(pieces)
        frac = ""
        if j + 1 < n and s[j] == "." and _is_digit(s[j + 1]):
            k = j + 1
            while k < n and _is_digit(s[k]):
                k += 1
            frac = s[j + 1 : k]
            j = k
        exponent = 0
        has_exp = False
        # Scientific notation: 3e8, 1.6E-19 (no space; a letter e after a number is the exponent
        # marker only when digits follow).
        if j < n and s[j] in "eE":
            k = j + 1
            if k < n and s[k] in "+-":
                k += 1
            m = k
            while m < n and _is_digit(s[m]):
                m += 1
            if m > k and m - k <= 6:
                exponent = int(s[j + 1 : m])
                has_exp = True
                j = m
        if not digits:
            digits = "0"
        grouped = tuple(pieces) if comma_grouped and not frac and not has_exp else None
        self.i = j
        self.emit(NUM, (digits, frac, exponent, grouped))

    # -- commands ----------------------------------------------------------------------------
    def _braced(self, j: int) -> tuple[str, int]:
        """Raw content of the ``{...}`` starting at ``j`` (must be ``{``) and the index after it."""
        s = self.s
        if j >= self.n or s[j] != "{":
            raise ParseError("expected '{'")
        depth = 0
        k = j
        while k < self.n:
            c = s[k]
            if c == "\\":
                k += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return s[j + 1 : k], k + 1
            k += 1
        raise ParseError("unbalanced '{'")

    def _skip_spaces(self, j: int) -> int:
        while j < self.n and self.s[j] in " \t\r\n":
            j += 1
        return j

    def _text_argument(self, content: str) -> None:
        """Words of a \\text{...} argument; digits inside it are lexed as math ("\\text{5 cm}")."""
        if any(_is_digit(c) for c in content) or any(c in content for c in "+-=<>/^"):
            sub = _Lexer(content)
            sub.run()
            for t in sub.out:
                self.out.append(Token(TEXTWORD, t.value, True) if t.kind == WORD else t)
            self.space = True
            return
        for word in content.replace("-", " ").split():
            w = word.strip(".,:;!?()").lower()
            if not w:
                continue
            if w in ("or", "and"):
                self.emit(OR, w)
            else:
                self.emit(TEXTWORD, w)
            self.space = True
        self.space = True

    def command(self) -> None:
        s, n = self.s, self.n
        j = self.i + 1
        if j >= n:
            raise ParseError("trailing backslash")
        if _is_letter(s[j]):
            k = j
            while k < n and _is_letter(s[k]):
                k += 1
            name = s[j:k]
        else:
            k = j + 1
            name = s[j]
        self.i = k
        if name in SPACING:
            self.space = True
            return
        if name in SIZING:
            # \left. and \right. are invisible delimiters.
            if name in ("left", "right") and self.i < n and s[self.i] == ".":
                self.i += 1
            return
        if name in TEXT_COMMANDS:
            content, self.i = self._braced(self._skip_spaces(self.i))
            if name == "operatorname" and content.strip() in FUNCTIONS:
                self.emit(FUNC, FUNCTIONS[content.strip()])
                return
            self._text_argument(content)
            return
        if name in STYLE_COMMANDS:
            self.emit(STYLE, name)
            return
        if name == "mathbb":
            content, self.i = self._braced(self._skip_spaces(self.i))
            if content.strip() != "R":
                raise ParseError(f"unsupported set \\mathbb{{{content}}}")
            self.emit(REALS)
            return
        if name in ("begin", "end"):
            content, self.i = self._braced(self._skip_spaces(self.i))
            env = content.strip()
            if name == "begin" and env == "array":
                # column specification {cc|c}: not part of the content
                j2 = self._skip_spaces(self.i)
                if j2 < n and s[j2] == "{":
                    _, self.i = self._braced(j2)
            self.emit(ENV_BEGIN if name == "begin" else ENV_END, env)
            return
        if name in SIMPLE_COMMANDS:
            kind, value = SIMPLE_COMMANDS[name]
            if kind is not None:
                self.emit(kind, value)
            return
        if name in FUNCTIONS:
            self.emit(FUNC, FUNCTIONS[name])
            return
        if name in GREEK:
            self.emit(VAR, name)
            return
        raise ParseError(f"unsupported command \\{name}")

    # -- words -------------------------------------------------------------------------------
    def word(self) -> None:
        s, n = self.s, self.n
        k = self.i
        while k < n and _is_letter(s[k]):
            k += 1
        w = s[self.i : k]
        self.i = k
        low = w.lower()
        if len(w) == 1:
            self.emit(VAR, w)
        elif low in FUNCTIONS:
            self.emit(FUNC, FUNCTIONS[low])
        elif low in WORDS:
            kind, value = WORDS[low]
            self.emit(kind, value)
        elif low in MULTIPLIERS:
            self.emit(MULT, MULTIPLIERS[low])
        else:
            self.emit(WORD, w)
        # Subscripts: x_1, a_{n}, x_{12} become part of the variable name.
        if self.out[-1].kind == VAR and self.i < n and s[self.i] == "_":
            j = self.i + 1
            if j < n and (_is_digit(s[j]) or _is_letter(s[j])):
                sub, self.i = s[j], j + 1
            elif j < n and s[j] == "{":
                sub, self.i = self._braced(j)
                sub = sub.strip()
                if not sub or not all(_is_digit(c) or _is_letter(c) for c in sub) or len(sub) > 8:
                    raise ParseError(f"unsupported subscript {{{sub}}}")
            else:
                return
            last = self.out.pop()
            self.out.append(Token(VAR, f"{last.value}_{sub}", last.space))

    def run(self) -> list[Token]:
        s, n = self.s, self.n
        while self.i < n:
            c = s[self.i]
            if c in " \t\r\n~":
                self.space = True
                self.i += 1
            elif _is_digit(c) or (c == "." and self.i + 1 < n and _is_digit(s[self.i + 1])):
                self.number()
            elif c == "\\":
                self.command()
            elif _is_letter(c):
                self.word()
            elif c in BRACKETS:
                # "{,}" inside a number is consumed by number(); here "{" is a group.
                self.emit(BRACKETS[c])
                self.i += 1
            elif c in ASCII_OPS:
                kind, value = ASCII_OPS[c]
                self.emit(kind, value)
                self.i += 1
            elif c in "<>=!":
                two = s[self.i : self.i + 2]
                if two in ("<=", ">=", "!=", "=<", "=>"):
                    self.emit(REL, {"=<": "<=", "=>": ">="}.get(two, two))
                    self.i += 2
                elif c == "!":
                    self.emit(OP, "!")
                    self.i += 1
                else:
                    self.emit(REL, c)
                    self.i += 1
            elif c in SUPERSCRIPTS:
                self.emit(OP, "^")
                self.emit(NUM, (SUPERSCRIPTS[c], "", 0, None))
                self.i += 1
            elif c in UNICODE:
                kind, value = UNICODE[c]
                if kind is None:
                    self.space = True
                else:
                    self.emit(kind, value)
                self.i += 1
            elif c == "$":
                self.space = True  # stray math delimiter (the extractor strips the outer ones)
                self.i += 1
            else:
                raise ParseError(f"unexpected character {c!r}")
        return self.out


def tokenize(text: str, *, max_length: int, max_depth: int) -> list[Token]:
    """Tokens of an answer; :class:`ParseError` for anything outside the whitelist."""
    if len(text) > max_length:
        raise ParseError(f"answer longer than {max_length} characters")
    check_nesting(text, max_depth)
    return _Lexer(text).run()
