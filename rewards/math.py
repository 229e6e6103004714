"""Math answer checking: ``grade(response, gold) -> Grade``, safe on hostile input, fast, bounded.

>>> grade("### Step 1:\\n...\\n### The final answer is: $\\\\frac{1}{2}$.", "0.5").correct
True
>>> g = grade("I get \\\\boxed{9^{9^{9^9}}}", "3")
>>> g.correct, g.error
(False, 'number too large')

Which answer counts: see :mod:`rewards.extract` (last ``<answer>`` block; in PeBR's layout the
``### The final answer is:`` section; else the last ``\\boxed{}``; else the text after the last
anchor; else a short whole response). :func:`grade_extracted` skips extraction.

What "equal" means (the gold decides the kind of comparison):

- multiple choice: a gold that is one option letter (``B``, ``(B)``) is graded by letter: ``B``,
  ``(B)``, ``B.``, ``B) 12``, ``**B**``, ``Option B``, lower-case ``b`` all name B; naming
  several options (``A or B``, ``AB``, ``B, C``, ``B) 12 or C) 13``) is wrong. ``choices``
  restricts the letters.
- text: a gold made of words only (``red``, ``yes``, ``counterclockwise``) is compared
  case-insensitively after removing ``\\text{}``, punctuation at the ends, and one leading
  article (``the``, ``a``, ``an``); no synonyms and no partial matches: ``the red one`` is not
  ``red`` and ``counterclockwise`` is not ``clockwise``. A gold outside the math grammar that is
  not plain words (``1:2``) is compared as normalized text (method ``string``) and says why in
  ``error``.
- numbers by value: ``2/4`` = ``\\frac12``, ``\\sqrt{18}`` = ``3\\sqrt2``, ``1,000`` =
  ``1{,}000`` = ``1\\,000`` = ``1000.0`` (a comma followed by exactly three digits, after a
  first group of 1-3 digits without a leading zero, is a thousands separator; ``(2,100)`` is a
  pair); exact values must be equal, and as soon as one side is a decimal the relative error
  (of the gold) must be at most ``rel_tol`` (1e-6, never an absolute rounding: ``1.7e-19`` is
  not ``1.6e-19``, ``1.9999999999`` is ``2``; a gold of 0 needs exactly 0). ``X%`` is X/100;
  with a gold ``X%`` the bare ``X`` is accepted too, but a gold without ``%`` is not matched by
  ``X%``. Units, degree signs, currency and a few leading words (``approximately``, ``there
  are``, ``the total is``) are ignored (``5 cm`` = ``7 (apples)`` ... = the number); no unit
  conversion. ``3e8``, ``3 \\times 10^{8}`` and ``4.5 million`` are numbers. ``\\infty``
  equals only the same infinity. ``\\log`` is the natural logarithm.
- expressions with variables: equal values at fixed rational test points, exact where the
  expressions are rational, wherever the gold has a real value (so ``\\ln(x^2)`` is accepted for
  ``2\\ln x``, but ``\\sqrt{x^2}`` is not ``x``); free symbols where the gold is a number are wrong.
- sets unordered, tuples ordered; intervals by endpoints and open/closed ends, a union of
  intervals as a set; equations by solution set (``2y = 4x + 2`` = ``y = 2x + 1``; ``x = 3``
  and ``3`` accept each other; a chain of equalities ``2 + 1 = 3`` counts by its last member);
  inequalities by solution set (``2 < x`` = ``x > 2``); an interval is accepted for a
  one-variable inequality gold, not the reverse; ``a \\pm b`` is the set of both values;
  matrices element-wise (a column or row vector also matches a tuple).
- not correct, whatever the gold: ``nan``, ``zoo``, ``\\mathbb{R}`` or ``(-\\infty, \\infty)``
  for a number, ``3 \\pm 1`` for one number, a list of candidates containing the gold, an empty
  box, anything the whitelisted grammar does not know.

Design (speed and safety):

1. Nothing from the model is ever given to ``eval``, ``sympify`` or ``parse_expr``: a
   whitelisted tokenizer (:mod:`rewards._mathlex`) and recursive-descent parser
   (:mod:`rewards._mathparse`) build a tuple AST; unknown commands are a parse error.
2. Sizes are bounded before any evaluation: answer length, bracket depth, element count,
   exact integer size, power and factorial size, magnitude of approximations
   (:mod:`rewards._matheval`). A power tower fails in microseconds with "number too large".
3. The inline path decides almost every answer with exact rationals (``Fraction``) and, for
   irrationals, 128-bit mpmath in a per-thread context. The gold's meaning is cached (RL grades
   each gold many times). This path checks the deadline cooperatively every few operations.
4. Only what the inline path cannot decide (a nonlinear inequality, equations with several
   solutions, expressions undefined at every test point) goes to a persistent sympy worker
   process (:mod:`rewards._symworker`), killed and replaced when it runs past the deadline.
   No signals: the limit holds in any thread and in worker processes (DataLoader, pools).

``grade`` never raises for ``str`` input: what went wrong is in ``Grade.error`` (parse errors,
"number too large", "free variable", timeouts) and an unexpected internal error is logged with
its traceback and reported as ``internal error: ...``. Non-``str`` input is a ``TypeError``.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from dataclasses import dataclass, field, replace

from rewards import extract as _extract
from rewards._mathcompare import METHODS, Comparator, Meaning, Relation, Scalar
from rewards._matheval import EvalError, Evaluator, GradeTimeout, Limits
from rewards._mathlex import ParseError, Token, tokenize
from rewards._mathparse import parse_tokens, strip_units

logger = logging.getLogger(__name__)

METHOD_NAMES = (
    "string",
    "numeric",
    "symbolic",
    "multiple_choice",
    "set",
    "tuple",
    "interval",
    "equation",
    "text",
    "matrix",
    "none",
)


@dataclass(frozen=True)
class GradeOptions:
    """How :func:`grade` compares (all limits are per call).

    Attributes:
        timeout_s: hard time limit for one call, in any thread or process.
        rel_tol: largest relative error (of the gold) accepted when a decimal is involved.
        max_length: longest answer (and gold) text parsed, in characters.
        max_depth: deepest bracket nesting parsed.
        max_elements: most items in a list, set, tuple or matrix (and terms in a sum).
        max_int_bits: largest exact integer kept exact (bits); larger values are approximated.
        max_exponent: largest integer exponent computed exactly.
        max_magnitude_bits: largest |log2| of any value; beyond it an answer is "too large".
        max_factorial: largest n in n! and binomials.
        choices: option letters allowed for multiple choice (e.g. ``"ABCD"``); ``None``: any
            single letter A-Z (inferred from the gold being one letter).
        symbolic: allow the sympy worker for what the inline path cannot decide.
        worker_start_timeout_s: time allowed for the first start of the sympy worker in a process
            (about a second, once); it is not charged to ``timeout_s``. Later restarts are.
        extract: where to find the answer in a response (:class:`rewards.extract.ExtractOptions`).
    """

    timeout_s: float = 1.0
    rel_tol: float = 1e-6
    max_length: int = 2_000
    max_depth: int = 40
    max_elements: int = 400
    max_int_bits: int = 16_384
    max_exponent: int = 10_000
    max_magnitude_bits: int = 1_000_000
    max_factorial: int = 1_000
    choices: str | None = None
    symbolic: bool = True
    worker_start_timeout_s: float = 60.0
    extract: _extract.ExtractOptions = field(default_factory=_extract.ExtractOptions)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not 0 <= self.rel_tol < 1:
            raise ValueError(f"rel_tol must be in [0, 1), got {self.rel_tol}")
        for name in (
            "max_length",
            "max_depth",
            "max_elements",
            "max_int_bits",
            "max_exponent",
            "max_factorial",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.choices is not None and not re.fullmatch(r"[A-Z]+", self.choices):
            raise ValueError(f"choices must be upper-case letters like 'ABCD', got {self.choices!r}")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_int_bits, self.max_exponent, self.max_magnitude_bits, self.max_factorial)


DEFAULT_OPTIONS = GradeOptions()


@dataclass(frozen=True)
class Grade:
    """The verdict and what it rests on.

    Attributes:
        correct: the answer matches the gold.
        extracted: the answer text found in the response (``None``: none found).
        method: how it was decided: ``string`` (same text), ``numeric``, ``symbolic``,
            ``multiple_choice``, ``set``, ``tuple``, ``interval``, ``equation``, ``text``,
            ``matrix``, or ``none`` (nothing to compare).
        error: why the answer could not be compared, if so (``None`` otherwise).
        timed_out: the time limit was reached (``correct`` is then ``False``).
        source: where the answer was found (see :class:`rewards.extract.Extraction`).
        gold_parsed, pred_parsed: what the gold and the answer were read as.
        elapsed_s: time spent in the call.
    """

    correct: bool
    extracted: str | None
    method: str
    error: str | None = None
    timed_out: bool = False
    source: str | None = None
    gold_parsed: str | None = None
    pred_parsed: str | None = None
    elapsed_s: float = 0.0

    def __bool__(self) -> bool:
        return self.correct


# -- gold ------------------------------------------------------------------------------------
_MC_GOLD = re.compile(r"\(?([A-Z])\)?[.:]?")
_WORDS_ONLY = re.compile(r"[A-Za-z][A-Za-z '\-]*")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mbox|mathbf|texttt)\s*\{([^{}]*)\}")
_ARTICLES = ("the ", "a ", "an ")
#: single words that are math, not text (for deciding a gold's kind)
_MATH_WORDS = frozenset({"pi", "inf", "infinity", "infty", "e", "i"})


@dataclass(frozen=True)
class _Gold:
    kind: str  # "choice" | "text" | "math" | "string"
    letter: str | None = None
    text: str | None = None
    meaning: Meaning | None = None
    node: tuple | None = None
    key: tuple | None = None
    error: str | None = None


def _strip_text_commands(s: str) -> str:
    for _ in range(4):  # nested \text{\textbf{x}} unwraps in a few rounds
        new = _TEXT_CMD.sub(lambda m: m.group(1), s)
        if new == s:
            break
        s = new
    return s


def _normalize_text(s: str) -> str:
    s = _strip_text_commands(s).replace("\\ ", " ").replace("~", " ")
    s = " ".join(s.lower().split()).strip(" .,:;!?\"'`*")
    for article in _ARTICLES:
        if s.startswith(article):
            s = s[len(article) :]
            break
    return s


def _token_key(tokens: list[Token]) -> tuple:
    return tuple((t.kind, t.value) for t in tokens)


def _read_math(text: str, opts: GradeOptions) -> tuple[tuple, tuple]:
    """(AST, token key) of an answer; :class:`ParseError` when it is not math."""
    tokens = tokenize(text, max_length=opts.max_length, max_depth=opts.max_depth)
    tokens, _ = strip_units(tokens)
    if not tokens:
        raise ParseError("empty answer")
    node = parse_tokens(tokens, max_depth=opts.max_depth, max_elements=opts.max_elements)
    return node, _token_key(tokens)


def _gold_kind(text: str) -> str:
    if _MC_GOLD.fullmatch(text):
        return "choice"
    plain = _strip_text_commands(text).strip()
    if _WORDS_ONLY.fullmatch(plain) and re.search(r"[A-Za-z]{2}", plain) and plain.lower() not in _MATH_WORDS:
        return "text"
    return "math"


@functools.lru_cache(maxsize=8192)
def _prepare_gold(gold: str, opts: GradeOptions) -> _Gold:
    """The gold's kind and meaning, cached: RL grades every gold once per rollout."""
    text = _extract.clean_answer(gold)
    boxed = _extract.last_boxed(text)
    if boxed is not None:
        text = _extract.clean_answer(boxed)
    kind = _gold_kind(text)
    if kind == "choice":
        return _Gold("choice", letter=_MC_GOLD.fullmatch(text).group(1))
    if kind == "text":
        return _Gold("text", text=_normalize_text(text))
    try:
        node, key = _read_math(text, opts)
        ev = Evaluator(opts.limits, time.monotonic() + opts.timeout_s)
        meaning = Comparator(ev, opts.rel_tol, None).meaning(node, gold=True)
    except (ParseError, EvalError) as exc:
        # A gold outside the grammar is compared as normalized text, and says why.
        return _Gold("string", text=_normalize_text(text), error=f"gold: {exc}")
    return _Gold("math", node=node, meaning=meaning, key=key)


# -- multiple choice -------------------------------------------------------------------------
_MC_PRED = re.compile(
    r"(?:(?:the\s+)?(?:correct\s+)?(?:option|choice|answer)\s*(?:is\s*)?:?\s*)?"
    r"\(?([A-Za-z])\)?(?:\s*[.):]\s*(.*)|\s*)",
    re.IGNORECASE | re.DOTALL,
)
# After "B) ...": another option named ("or C", "and (D)", "(C)", " C."); option text itself may
# contain "and" ("B) 3 and 4").
_OTHER_OPTION = re.compile(
    r"(?:^|[\s,;/&])(?:or|and)\s+\(?[A-Z]\)?(?=[.):,\s]|$)|\([A-Za-z]\)|(?:^|\s)[A-Z][.)](?:\s|$)"
)


_OR_WORD = re.compile(r"(?:^|[\s,;/&])or\b", re.IGNORECASE)
_LONE_LETTER = re.compile(r"(?:^|[\s(])[A-Z](?=[.):,\s]|$)")


def _choice_letter(pred: str, choices: str | None) -> tuple[str | None, str | None]:
    """The single option letter an answer names, or (None, reason)."""
    text = _strip_text_commands(pred).replace("*", "").strip()
    m = _MC_PRED.fullmatch(text)
    if m is None:
        return None, "not a single option letter"
    letter = m.group(1).upper()
    rest = m.group(2) or ""
    if _OTHER_OPTION.search(rest):
        return None, "names more than one option"
    hedge = _OR_WORD.search(rest)
    if hedge and _LONE_LETTER.search(rest, hedge.end()):
        return None, "names more than one option"  # "B) 12, or maybe C"
    if choices is not None and letter not in choices:
        return None, f"option {letter} is not among {choices}"
    return letter, None


# -- grading ---------------------------------------------------------------------------------
def _resolve(options: GradeOptions | None, overrides: dict) -> GradeOptions:
    base = options if options is not None else DEFAULT_OPTIONS
    return replace(base, **overrides) if overrides else base


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def _describe(node: object) -> str:
    text = repr(node)
    return text if len(text) <= 500 else text[:497] + "..."


def _symbolic_callback(opts: GradeOptions, deadline: float):
    from rewards._symworker import WorkerTimeout, WorkerUnavailable, pool

    def ask(request: dict) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GradeTimeout
        try:
            answer = pool().call(request, remaining, opts.worker_start_timeout_s)
        except WorkerTimeout:
            raise GradeTimeout from None
        except WorkerUnavailable as exc:
            raise EvalError(f"symbolic worker unavailable: {exc}") from None
        if "error" in answer:
            raise EvalError(f"symbolic: {answer['error']}")
        return bool(answer.get("equal"))

    return ask


def _grade_math(pred: str, gold: _Gold, opts: GradeOptions, deadline: float) -> Grade:
    try:
        node, key = _read_math(pred, opts)
    except ParseError as exc:
        return Grade(
            False, pred, "none", error=f"could not read answer: {exc}", gold_parsed=_describe(gold.node)
        )
    if key == gold.key:
        return Grade(True, pred, "string", gold_parsed=_describe(gold.node), pred_parsed=_describe(node))
    ev = Evaluator(opts.limits, deadline)
    symbolic = _symbolic_callback(opts, deadline) if opts.symbolic else None
    cmp = Comparator(ev, opts.rel_tol, symbolic)
    method = METHODS[type(gold.meaning)]
    if isinstance(gold.meaning, Scalar) and gold.meaning.vars:
        method = "symbolic"
    elif isinstance(gold.meaning, Relation) and not all(op == "=" for op in gold.meaning.ops):
        method = "interval"
    try:
        meaning = cmp.meaning(node)
        correct = cmp.equal(meaning, gold.meaning)
    except EvalError as exc:
        return Grade(
            False, pred, method, error=str(exc), gold_parsed=_describe(gold.node), pred_parsed=_describe(node)
        )
    if cmp.used_symbolic and method == "numeric":
        method = "symbolic"
    return Grade(correct, pred, method, gold_parsed=_describe(gold.node), pred_parsed=_describe(node))


def _grade_text(pred: str, gold: _Gold, opts: GradeOptions, deadline: float) -> Grade:
    if len(pred) > opts.max_length:
        # before any pattern is run on it: a 1 MB answer costs one length check
        return Grade(
            False, pred[:100] + "...", "none", error=f"answer longer than {opts.max_length} characters"
        )
    if gold.kind == "choice":
        letter, why = _choice_letter(pred, opts.choices)
        return Grade(
            letter == gold.letter,
            pred,
            "multiple_choice",
            error=why,
            gold_parsed=gold.letter,
            pred_parsed=letter,
        )
    if gold.kind == "math":
        return _grade_math(pred, gold, opts, deadline)
    norm = _normalize_text(pred)
    method = "text" if gold.kind == "text" else "string"
    return Grade(norm == gold.text, pred, method, error=gold.error, gold_parsed=gold.text, pred_parsed=norm)


def _finish(g: Grade, start: float, source: str | None) -> Grade:
    return replace(g, elapsed_s=time.monotonic() - start, source=source)


def grade_extracted(
    pred_text: str | None, gold: str, options: GradeOptions | None = None, **overrides: object
) -> Grade:
    """Grade an answer that was already extracted from its response (no extraction rules).

    >>> grade_extracted("3\\\\sqrt{2}", "\\\\sqrt{18}").method
    'numeric'
    """
    return _grade(pred_text, gold, _resolve(options, overrides), source=None, extracted=True)


def grade(response: str, gold: str, options: GradeOptions | None = None, **overrides: object) -> Grade:
    """Grade a full response against a gold answer (see the module docstring).

    ``options`` is a :class:`GradeOptions`; keyword arguments override single fields
    (``grade(r, g, timeout_s=0.5, choices="ABCD")``).
    """
    return _grade(response, gold, _resolve(options, overrides), source=None, extracted=False)


def warm_up(options: GradeOptions | None = None) -> None:
    """Start this process's sympy worker now (about a second), or wait until a restarting one is
    ready, so that the next symbolic grade does not wait for it. Optional: without it the first
    symbolic grade starts the worker.
    Raises :class:`RuntimeError` when the worker cannot be started."""
    from rewards._symworker import WorkerTimeout, WorkerUnavailable, pool

    opts = options if options is not None else DEFAULT_OPTIONS
    try:
        # waits for a (re)starting worker as long as a first start may take
        pool().call({"op": "ping"}, opts.worker_start_timeout_s, opts.worker_start_timeout_s)
    except (WorkerTimeout, WorkerUnavailable, OSError) as exc:
        raise RuntimeError(f"could not start the symbolic worker: {exc!r}") from exc


def is_correct(response: str, gold: str, options: GradeOptions | None = None, **overrides: object) -> bool:
    """``grade(...).correct``."""
    return grade(response, gold, options, **overrides).correct


def _grade(text: str | None, gold: str, opts: GradeOptions, *, source: str | None, extracted: bool) -> Grade:
    start = time.monotonic()
    deadline = start + opts.timeout_s
    _check_str("gold", gold)
    if extracted:
        if text is not None:
            _check_str("pred_text", text)
    else:
        _check_str("response", text)
    pred: str | None = None
    try:
        if extracted:
            pred = None if text is None else _extract.clean_answer(text)
            boxed = None if pred is None else _extract.last_boxed(pred)
            if boxed is not None:
                pred = _extract.clean_answer(boxed)
        else:
            found = _extract.extract_answer(text, opts.extract)
            pred, source = found.text, found.source
        if not pred:
            return _finish(Grade(False, pred, "none", error="no answer found"), start, source)
        gold_info = _prepare_gold(gold, opts)
        return _finish(_grade_text(pred, gold_info, opts, deadline), start, source)
    except GradeTimeout:
        return _finish(
            Grade(False, pred, "none", error=f"time limit of {opts.timeout_s} s reached", timed_out=True),
            start,
            source,
        )
    except RecursionError:
        return _finish(Grade(False, pred, "none", error="expression too deeply nested"), start, source)
    except Exception as exc:
        # Deliberately broad: a reward must not take down a training run. The traceback is
        # logged so that the bug is seen, and the verdict says "internal error".
        logger.exception("internal error grading %r against %r", (pred or "")[:200], gold[:200])
        return _finish(
            Grade(False, pred, "none", error=f"internal error: {type(exc).__name__}: {exc}"), start, source
        )


__all__ = [
    "DEFAULT_OPTIONS",
    "METHOD_NAMES",
    "Grade",
    "GradeOptions",
    "grade",
    "grade_extracted",
    "is_correct",
    "warm_up",
]
