"""The critique calculator: the exact text that follows a critique's `A op B =` or `A vs B,`.

A small verifier copies numbers well and computes them badly: asked to check "20 ÷ 5 = 3" it writes
"20 ÷ 5 = 3" again. With the calculator on (`--calculator on`, or a model file's `rprm.calculator`), the
critique loop (`rprm_lite/critique.py`) asks `continuation` after every token, and when the critique's text ends
with an arithmetic expression and `=`, the runtime writes the exact result into the critique as if the model
had written it ("20 ÷ 5 = 4"); when it ends with a compared pair of numbers ("4 vs 3,"), it writes whether they
are "the same" or "not the same". The GSM8K paper's calculator annotations did the first at sampling time.

Expressions: integers, decimals and thousands separators (1,234.5); `+ - − × ÷ * / ·`, the LaTeX forms
`\\times \\cdot \\div \\frac{a}{b}` (also `\\dfrac`, `\\tfrac`), `$`, `\\left( \\right)`, parentheses and braces,
unary minus. The arithmetic is exact (`fractions.Fraction`, no `eval`); the result is printed as a critique
prints it: an integer, a finite decimal, with thousands separators when an operand had them; anything else (1/3,
a division by zero, an expression it cannot read) gets nothing. Everything is bounded: the text read, the
digits of an operand and of every intermediate result, the nesting, so a hostile solution cannot make it slow;
it never raises.

The critiques of the demo judge quote two numbers before they compare them ("8 from the question; the Now Step
uses 4:"): after such a quote the calculator writes the comparison of exactly those two numbers (" 8 vs 4, not
the same"), so a critique cannot compare other numbers than it quoted. A last check keeps a critique's data
source honest: when it says a number comes "from the question" or "from Step k" and that number is in neither
the question nor any step before the Now Step (a small judge copies the Now Step's own number there), `misquote`
tells the critique loop to take the number back and let the model choose again, among the numbers the source it
named holds (`Sources`). In the same way, a number the critique says "the Now Step uses" must be one of the Now
Step's operands (a small judge quotes the step's result there), and one it "writes", one of its numbers; and
what the critique says the Now Step does ("the Now Step adds") must be an operation the Now Step writes between
two numbers (a small judge copies the operation the goal needs there, so a wrong operation would look right).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

MAX_TAIL = 240  # characters of the critique read back from its end; a longer expression gets nothing
MAX_OPERAND_DIGITS = 30
MAX_RESULT_BITS = 400  # numerator and denominator of every intermediate result (about 120 digits)
MAX_DEPTH = 16  # nested parentheses, braces and fractions
MAX_DECIMALS = 12  # a finite decimal with more places is not written

SAME, NOT_SAME = " the same", " not the same"

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d])|\d+(?:\.\d+)?|\.\d+"
_TOKEN = re.compile(
    rf"(?P<num>{_NUMBER})"
    r"|(?P<add>[+\-−])"
    r"|(?P<mul>[×*·⋅]|\\times(?![a-zA-Z])|\\cdot(?![a-zA-Z]))"
    r"|(?P<div>[÷/]|\\div(?![a-zA-Z]))"
    r"|(?P<frac>\\[dt]?frac\s*\{)"
    r"|(?P<open>\\left\s*\(|[({])"
    r"|(?P<close>\\right\s*\)|[)}])"
    r"|(?P<skip>[\s$]|\\[,;! ])"
    r"|(?P<other>[a-zA-Z]+|.)",
    re.DOTALL)
# what may not stand right before an expression: a word or number it continues ("2x + 3", "x2 + 3"), a power,
# a percent, a decimal point or a comma ("1,2345"); the expression is then not what the critique computes
_JOINED = re.compile(r"[\w^%.,!'\\]$")
_COMPARED = re.compile(rf"(?<![\w.,\-])(-?(?:{_NUMBER})) vs (-?(?:{_NUMBER})),$")
# "N from the question; the Now Step uses W:" or "= N; the Now Step writes W:": the pair to compare is (N, W)
_PAIRED = re.compile(rf"(?<![\w.,\-])(-?(?:{_NUMBER}))(?: from (?:the question|Step [1-9]\d{{0,3}}))?"
                     rf"; the Now Step (?:uses|writes) (-?(?:{_NUMBER})):$")
_QUOTED = re.compile(rf"(?<![\w.,\-])({_NUMBER})(?![\d])")
# "N from the question" or "N from Step k", then one character that ends it (so "Step 1" is not "Step 12")
_CLAIMED = re.compile(rf"(?<![\w.,\-])({_NUMBER})( from (?:the question|Step ([1-9]\d{{0,3}})))[^\w]$")
# "the Now Step uses W" or "writes W", then one character that ends the number (not "." or ",": "5.5", "1,200")
_STATED = re.compile(rf"the Now Step (uses|writes) ({_NUMBER})[^\w.,]$")
VERBS = ("adds", "subtracts", "multiplies", "divides")  # what a critique may say a step does
# "the Now Step adds" (or another verb), then one character that ends the word; the space goes with the word, as
# a word's token carries the space before it
_DOES = re.compile(rf"the Now Step( (?:{'|'.join(VERBS)}))[^\w]$")
# an operation a step writes between two numbers (or parentheses), and what a critique says it does
_OPERATOR = re.compile(r"(?<=[\d)])\s*\$?\s*(\+|-|−|×|\*|·|⋅|\\times|\\cdot|÷|/|\\div)\s*\$?\s*(?=[\d(])")
DOES = {"+": "adds", "-": "subtracts", "−": "subtracts", "×": "multiplies", "*": "multiplies", "·": "multiplies",
        "⋅": "multiplies", "\\times": "multiplies", "\\cdot": "multiplies", "÷": "divides", "/": "divides",
        "\\div": "divides"}
# what stands before a number a step writes as a result: "= 5", "The answer is 5"
_RESULT = re.compile(r"(?:=|answer is|answer:)\s*\$?\s*$", re.IGNORECASE)
MAX_SOURCE_NUMBERS = 64  # numbers a source offers for a choice
MAX_STEP_TEXT = 20_000  # characters of a step read for its operations


def continuation(text: str) -> str | None:
    """The exact text the calculator writes after a critique's `text`, or None when it writes nothing."""
    try:
        if text.endswith("="):
            value = result_of(text[:-1])
            return None if value is None else " " + value
        if text.endswith("= "):
            return result_of(text[:-2])
        if text.endswith(","):
            return comparison(text)
        if text.endswith(":"):
            return pair(text)
    except (ArithmeticError, ValueError, RecursionError):  # bounded above; a safety net, never an error
        return None
    return None


@dataclass(frozen=True)
class Sources:
    """The numbers a critique of one step may quote: the question's, and each earlier step's (as written)."""

    question: tuple[str, ...] = ()
    steps: tuple[tuple[str, ...], ...] = ()  # Step 1 .. the step before the Now Step
    uses: tuple[str, ...] = ()  # the Now Step's operands: its numbers but its results ("= 5", "the answer is 5")
    writes: tuple[str, ...] = ()  # the Now Step's numbers
    does: tuple[str, ...] = ()  # what the Now Step does between two numbers: "adds", "subtracts", ...

    @classmethod
    def of(cls, question: str, earlier_steps: Sequence[str], now_step: str = "") -> Sources:
        return cls(numbers_in(question), tuple(numbers_in(step) for step in earlier_steps),
                   uses=numbers_in(now_step, results=False), writes=numbers_in(now_step),
                   does=operations_in(now_step))

    def values(self) -> set[Fraction]:
        return {value for numbers in (self.question, *self.steps) for n in numbers if (value := _number(n)) is not None}


@dataclass(frozen=True)
class Misquote:
    """A number a critique says comes from a source that holds no such number (nor does any other source the
    Now Step may use), or says the Now Step uses (or writes) when it does not: take back the last `length`
    characters and write one of `choices` instead."""

    length: int  # characters from the number's start to the end of the text
    choices: tuple[str, ...]  # each a whole replacement: "8 from the question"


def numbers_in(text: str, *, results: bool = True) -> tuple[str, ...]:
    """The numbers of a text as written, each once, in order (at most `MAX_SOURCE_NUMBERS`); without those
    written as results ("= 5", "the answer is 5") when `results` is False."""
    seen: dict[str, None] = {}
    for match in _QUOTED.finditer(text):
        if not results and _RESULT.search(text[max(0, match.start() - 16):match.start()]):
            continue
        if _number(match.group(1)) is not None:
            seen.setdefault(match.group(1))
            if len(seen) == MAX_SOURCE_NUMBERS:
                break
    return tuple(seen)


def operations_in(text: str) -> tuple[str, ...]:
    """What a step does between two numbers, each once, in order: "adds", "subtracts", "multiplies", "divides"
    ("4 × 8 = 32": multiplies; "2 - 3 + 1": subtracts, adds). A date's "2024/5" reads as division: a choice the
    model makes among them, so a wrong extra one costs nothing but the check."""
    seen: dict[str, None] = {}
    for match in _OPERATOR.finditer(text[:MAX_STEP_TEXT]):
        seen.setdefault(DOES[match.group(1)])
    return tuple(seen)


def misquote(text: str, sources: Sources) -> Misquote | None:
    """When `text` ends with "N from the question" or "N from Step k" (and one more character) and N is a number
    of no source the Now Step may use, the choices the named source offers; when it ends with "the Now Step uses
    W" (or "writes W") and the Now Step has no such operand (or number), its operands (or numbers); else None."""
    if not text or text[-1].isalnum():
        return None
    stated = _at_end(_STATED, text)
    if stated is not None:
        return _restated(stated, sources)
    does = _at_end(_DOES, text)
    if does is not None:
        return _undone(does, sources)
    match = _at_end(_CLAIMED, text)
    if match is None:
        return None
    value = _number(match.group(1))
    if value is None or value in sources.values():
        return None
    step = match.group(3)
    if step is None:
        offered = sources.question
    elif int(step) <= len(sources.steps):
        offered = sources.steps[int(step) - 1]
    else:
        return None  # the Now Step, or a later one: not a source
    if not offered:
        return None
    return Misquote(length=match.endpos - match.start(), choices=tuple(n + match.group(2) for n in offered))


def _restated(match: re.Match[str], sources: Sources) -> Misquote | None:
    """The Now Step's operands (or numbers) when the one the critique states is none of them."""
    offered = sources.uses if match.group(1) == "uses" else sources.writes
    value = _number(match.group(2))
    if not offered or value is None or value in {_number(n) for n in offered}:
        return None
    return Misquote(length=match.endpos - match.start(2), choices=offered)


def _undone(match: re.Match[str], sources: Sources) -> Misquote | None:
    """The operations the Now Step writes when the critique says it does another one."""
    if not sources.does or match.group(1)[1:] in sources.does:
        return None
    return Misquote(length=match.endpos - match.start(1), choices=tuple(" " + does for does in sources.does))


def comparison(text: str) -> str | None:
    """" the same" or " not the same" after "A vs B," (two numbers), else None."""
    match = _at_end(_COMPARED, text)
    return None if match is None else _same(*match.groups())


def pair(text: str) -> str | None:
    """After "N ...; the Now Step uses W:" (or "writes W:"), the comparison of the two numbers just quoted,
    " N vs W, the same" or " N vs W, not the same"; else None."""
    match = _at_end(_PAIRED, text)
    if match is None:
        return None
    needed, written = match.groups()
    same = _same(needed, written)
    return None if same is None else f" {needed} vs {written},{same}"


def _at_end(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """`pattern`'s match in the last `MAX_TAIL` characters of `text`, unless it starts where they are cut (a
    number may go on before them)."""
    tail = text[-MAX_TAIL:]
    match = pattern.search(tail)
    return None if match is None or (match.start() == 0 and len(text) > len(tail)) else match


def _same(left: str, right: str) -> str | None:
    """SAME or NOT_SAME for two numbers as written, None when one is too long to read."""
    a, b = _number(left), _number(right)
    return None if a is None or b is None else SAME if a == b else NOT_SAME


def result_of(text: str) -> str | None:
    """The exact value of the arithmetic expression `text` ends with, printed, or None."""
    if not text or text[-1] in "=<>!:≤≥≠≈~":  # "==", "<=", ":=": not a result being asked for
        return None
    tail = text[-MAX_TAIL:]
    tokens = list(_tokens(tail))
    start = _expression_start(tokens)
    if start is None or (start == 0 and len(text) > MAX_TAIL):
        return None  # the expression may go on before the text read
    before = "".join(value for _, value in tokens[:start])
    if _JOINED.search(before):
        return None
    parser = _Parser([(kind, value) for kind, value in tokens[start:] if kind != "skip"])
    value = parser.parse()
    if value is None or not parser.operated:
        return None
    return _printed(value, separators=parser.separators)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    for match in _TOKEN.finditer(text):
        yield str(match.lastgroup), match.group()  # every alternative of _TOKEN is a named group


def _expression_start(tokens: list[tuple[str, str]]) -> int | None:
    """Index of the expression's first token: after the last token that cannot be part of one (leading
    spaces skipped)."""
    start = len(tokens)
    while start > 0 and tokens[start - 1][0] != "other":
        start -= 1
    while start < len(tokens) and tokens[start][0] == "skip":
        start += 1
    return start if start < len(tokens) else None


def _number(text: str) -> Fraction | None:
    negative = text.startswith("-")
    digits = text.lstrip("-").replace(",", "")
    if sum(c.isdigit() for c in digits) > MAX_OPERAND_DIGITS:
        return None
    value = Fraction(digits)
    return -value if negative else value


class _Parser:
    """Recursive descent over the tokens, exact and bounded; `parse()` is None for anything it cannot read."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0
        self.operated = False  # a binary operation or a fraction: a bare number is not a calculation
        self.separators = False  # an operand was written with thousands separators

    def parse(self) -> Fraction | None:
        try:
            value = self.expression()
        except _Unreadable:
            return None
        return value if self.at == len(self.tokens) else None

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, kind: str) -> str:
        token = self.peek()
        if token is None or token[0] != kind:
            raise _Unreadable
        self.at += 1
        return token[1]

    def expression(self) -> Fraction:
        value = self.term()
        while (token := self.peek()) is not None and token[0] == "add":
            self.at += 1
            right = self.term()
            value = _bounded(value + right if token[1] == "+" else value - right)
            self.operated = True
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while (token := self.peek()) is not None and token[0] in ("mul", "div"):
            self.at += 1
            right = self.unary()
            if token[0] == "div":
                if right == 0:
                    raise _Unreadable
                value = _bounded(value / right)
            else:
                value = _bounded(value * right)
            self.operated = True
        return value

    def unary(self) -> Fraction:
        token = self.peek()
        if token is not None and token[0] == "add" and token[1] != "+":
            self.at += 1
            return -self.nested(self.unary)
        return self.atom()

    def nested(self, parse: Callable[[], Fraction]) -> Fraction:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Unreadable
        try:
            return parse()
        finally:
            self.depth -= 1

    def atom(self) -> Fraction:
        token = self.peek()
        if token is None:
            raise _Unreadable
        kind, text = token
        if kind == "num":
            self.at += 1
            value = _number(text)
            if value is None:
                raise _Unreadable
            self.separators |= "," in text
            return value
        if kind == "open":
            self.at += 1
            value = self.nested(self.expression)
            self._close(text)
            return value
        if kind == "frac":
            self.at += 1
            numerator = self.nested(self.expression)
            self._close("{")
            if self.take("open") != "{":
                raise _Unreadable
            denominator = self.nested(self.expression)
            self._close("{")
            if denominator == 0:
                raise _Unreadable
            self.operated = True
            return _bounded(numerator / denominator)
        raise _Unreadable

    def _close(self, opened: str) -> None:
        closing = self.take("close")
        if (opened == "{") != (closing == "}"):  # a brace closes a brace, a parenthesis a parenthesis
            raise _Unreadable


class _Unreadable(Exception):
    pass


def _bounded(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_RESULT_BITS or value.denominator.bit_length() > MAX_RESULT_BITS:
        raise _Unreadable
    return value


def _printed(value: Fraction, *, separators: bool) -> str | None:
    """An integer, or a finite decimal with at most `MAX_DECIMALS` places; None otherwise."""
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    places = max(twos, fives)
    if denominator != 1 or places > MAX_DECIMALS:
        return None
    scaled = abs(value) * 10**places
    whole, fraction = divmod(int(scaled), 10**places)
    text = f"{whole:,}" if separators else str(whole)
    if places:
        text += "." + str(fraction).rjust(places, "0")
    return "-" + text if value < 0 else text
