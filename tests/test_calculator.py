"""The critique calculator's parser and printer, against `fractions.Fraction` (rprm_lite/calculator.py)."""

import time
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rprm_lite.calculator import (
    MAX_DECIMALS,
    MAX_TAIL,
    NOT_SAME,
    SAME,
    Sources,
    comparison,
    continuation,
    misquote,
    operations_in,
)

SPELLINGS = {"+": ["+"], "-": ["-", "−"], "*": ["×", "*", "·", "\\times", "\\cdot"], "/": ["÷", "/", "\\div"]}


def printed(value: Fraction) -> str | None:
    """What a critique prints for an exact value: an integer or a finite decimal, else nothing."""
    if value.denominator == 1:
        return str(value.numerator)
    for places in range(1, MAX_DECIMALS + 1):
        scaled = value * 10**places
        if scaled.denominator == 1:
            sign = "-" if scaled < 0 else ""
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            return f"{sign}{digits[:-places]}.{digits[-places:]}"
    return None


@st.composite
def numbers(draw) -> tuple[str, Fraction]:
    whole = draw(st.integers(0, 10**9))
    if draw(st.booleans()):
        decimals = draw(st.text("0123456789", min_size=1, max_size=4))
        return f"{whole}.{decimals}", Fraction(f"{whole}.{decimals}")
    return str(whole), Fraction(whole)


@st.composite
def expressions(draw, depth: int = 3) -> tuple[str, Fraction | None, bool]:
    """(text, exact value or None when it divides by zero, whether it holds an operation), written in the forms
    critiques use."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return (*draw(numbers()), False)
    kind = draw(st.sampled_from(["binary", "binary", "paren", "frac", "negative"]))
    if kind == "paren":
        text, value, operated = draw(expressions(depth - 1))
        return f"({text})", value, operated
    if kind == "negative":
        text, value, operated = draw(expressions(depth - 1))
        return f"-({text})", None if value is None else -value, operated
    (left, a, _), (right, b, _) = draw(expressions(depth - 1)), draw(expressions(depth - 1))
    if kind == "frac":
        return f"\\frac{{{left}}}{{{right}}}", None if a is None or b is None or b == 0 else a / b, True
    op = draw(st.sampled_from("+-*/"))
    text = f"({left}) {draw(st.sampled_from(SPELLINGS[op]))} ({right})"
    if a is None or b is None or (op == "/" and b == 0):
        return text, None, True
    return text, {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op], True


@settings(max_examples=400, deadline=None)
@given(expressions(), st.sampled_from(["", "$"]), st.sampled_from(["=", "= "]))
def test_every_expression_gets_its_exact_value_printed_or_nothing(case, math_mode, ending):
    text, value, operated = case
    assume(len(text) < MAX_TAIL - 20)  # longer ones reach past the text read: tested below
    written = continuation(f"The check: {math_mode}{text}{math_mode} {ending}")
    expected = None if value is None else printed(value)
    if expected is not None and ending == "=":
        expected = " " + expected
    assert written == (expected if operated else None)


@pytest.mark.parametrize(("text", "written"), [
    ("**Calculation Analysis**: 20 ÷ 5 =", " 4"),
    ("36 + 7 = ", "43"),
    ("Step 2: 7 - 9 =", " -2"),
    ("1,200 + 34 =", " 1,234"),  # thousands separators in, thousands separators out
    ("$\\frac{1}{4} + 0.5$ =", " 0.75"),
    ("$\\dfrac{3}{4} \\times 4 =", " 3"),
    ("3 \\cdot \\left(4 - 1\\right) =", " 9"),
    ("{2 + 3} \\div 5 =", " 1"),
    ("1.5 × 2 =", " 3"),
    ("-3 + -4 =", " -7"),
    ("0.1 + 0.2 =", " 0.3"),
])
def test_forms_critiques_write(text, written):
    assert continuation(text) == written


@pytest.mark.parametrize("text", [
    "1 / 3 =",  # not a finite decimal
    "5 ÷ 0 =", "\\frac{1}{0} =",
    "2x + 4 - 3 =", "x2 + 3 =",  # a word or a letter joined to the expression: not what the critique computes
    "2^3 + 1 =", "50 × 20% =", "5! - 1 =",
    "the answer is 5 =", "-5 =",  # no operation
    "a + b =", "3 + =", "(3 + 4 =", "3 + 4) =", "(3 + 4} =",
    "3 + 4 ==", "3 + 4 <=", "3 + 4 :=",
    "1,2345 + 1 =",  # not a thousands separator
    "3 + 4 = 7.",  # not an `=` at the end
])
def test_what_it_cannot_read_gets_nothing(text):
    assert continuation(text) is None


@pytest.mark.parametrize(("text", "written"), [
    ("the Now Step writes 40: 40 vs 40,", SAME),
    ("4 vs 3,", NOT_SAME),
    ("1,200 vs 1200,", SAME),
    ("0.50 vs 0.5,", SAME),
    ("-4 vs 4,", NOT_SAME),
])
def test_compared_numbers_are_the_same_or_not(text, written):
    assert continuation(text) == written


@pytest.mark.parametrize(("text", "written"), [
    ("the stamps at first, 28 from the question; the Now Step uses 2:", " 28 vs 2, not the same"),
    ("the stamps bought, 6 from Step 1; the Now Step uses 6:", " 6 vs 6, the same"),
    ("2 + 6 = 8; the Now Step writes 9:", " 8 vs 9, not the same"),
    ("= 1,200; the Now Step writes 1200:", " 1,200 vs 1200, the same"),
])
def test_a_quoted_pair_is_compared_as_quoted(text, written):
    assert continuation(text) == written


@pytest.mark.parametrize("text", ["so; the Now Step uses 2:", "x4; the Now Step uses 2:", "4; the Now Step says 2:",
                                  "48 ÷ 6: the Now Step writes 9, and 9 × 6 = 54:", "**Data Source Analysis**:"])
def test_other_colons_get_nothing(text):
    assert continuation(text) is None


@pytest.mark.parametrize("text", ["apples vs oranges,", "x-4 vs 4,", "4 vs 3", "4 vs 3 ,", "a4 vs 4,"])
def test_comparisons_it_cannot_read_get_nothing(text):
    assert comparison(text) is None and continuation(text) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(-10**40, 10**40), st.integers(-10**40, 10**40))
def test_comparison_matches_the_numbers(a, b):
    expected = None if max(len(str(abs(a))), len(str(abs(b)))) > 30 else SAME if a == b else NOT_SAME
    assert comparison(f"x: {a} vs {b},") == expected


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789+-×÷*/·()[]{}$\\fractimesdv ,.=^%x")), max_size=300))
def test_any_text_gives_a_string_or_nothing_and_never_raises(text):
    for ending in ("=", "= ", ",", ":"):
        written = continuation(text + ending)
        assert written is None or isinstance(written, str)


def test_hostile_expressions_are_refused_fast():
    cases = [
        "9" * 31 + " + 1 =",  # an operand too long
        "99999999999999999999 × " * 10 + "9 =",  # a result too large
        "(" * 20 + "1" + ")" * 20 + " + 1 =",  # nesting too deep
        "(" * 200 + "1" + ")" * 200 + " + 1 =",
        "-" * 100 + "1 + 1 =",
        "1 + " * 250_000 + "1 =",  # a 10^6-character expression: longer than what is read
        "1" * 1_000_000 + " vs 1,",
    ]
    started = time.perf_counter()
    for text in cases:
        assert continuation(text) is None
    assert time.perf_counter() - started < 2.0  # bounded work: milliseconds, with a wide margin


def test_nesting_within_the_bound_is_read():
    assert continuation("(" * 15 + "1" + ")" * 15 + " + 1 =") == " 2"


def test_a_cut_number_is_not_read_as_a_shorter_one():
    # the comparison's first number runs past the text read: nothing, not a comparison of its last digits
    assert comparison("7" * 300 + " vs 777,") is None


SOURCES = Sources.of("Tom bakes 8 trays with 10 rolls each. He sells 25 rolls and packs 1,200 more.",
                     ["Tom bakes 8 × 10 = 80 rolls."])


@pytest.mark.parametrize(("text", "choices"), [
    ("the rolls sold, 4 from the question;", ("8", "10", "25", "1,200")),  # 4 is in no source
    ("the rolls baked, 81 from Step 1,", ("8", "10", "80")),
    ("the rolls, 7 from the question.", ("8", "10", "25", "1,200")),
])
def test_a_number_no_source_holds_offers_the_named_sources_numbers(text, choices):
    found = misquote(text, SOURCES)
    origin = text[text.index(" from"):-1]
    assert found.choices == tuple(n + origin for n in choices)
    assert text[-found.length:] == text[text.rindex(", ") + 2:]  # from the number to the end


@pytest.mark.parametrize("text", [
    "the rolls sold, 25 from the question;",  # in the question
    "the rolls, 80 from the question;",  # in Step 1: the origin may be misnamed, the number is not made up
    "the rolls, 1200 from the question;",  # the same number, written without the separator
    "the rolls, 4 from Step 2;",  # Step 2 is the Now Step: not a source
    "the rolls, 4 from Step 1",  # not ended yet ("Step 12"?)
    "the rolls, 4 from the question",
    "x4 from the question;", "the rolls, 4 from the questions;",
])
def test_a_number_a_source_holds_or_an_unfinished_claim_is_left_alone(text):
    assert misquote(text, SOURCES) is None


def test_a_source_without_numbers_offers_no_choice():
    assert misquote("the rolls, 4 from the question;", Sources.of("How many rolls?", [])) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.lists(st.text(max_size=80), max_size=3), st.text(max_size=200))
def test_the_source_check_never_raises(question, steps, text):
    found = misquote(text + " 12 from the question;", Sources.of(question, steps))
    assert found is None or (found.choices and found.length > 0)


NOW = Sources.of("A trip is 56 km.", ["The van has covered 28 + 23 = 51 km."],
                 "The van still has 56 - 51 = 5 km to go. The answer is 5.")


def test_the_now_steps_operands_leave_out_its_results():
    assert NOW.uses == ("56", "51")
    assert NOW.writes == ("56", "51", "5")


@pytest.mark.parametrize(("text", "taken", "choices"), [
    ("51 from Step 1; the Now Step uses 5:", "5:", ("56", "51")),  # its result quoted as an operand
    ("56 - 51 = 5; the Now Step writes 6:", "6:", ("56", "51", "5")),  # a number it does not write
    ("the Now Step uses 1,200 ", "1,200 ", ("56", "51")),
])
def test_a_number_the_now_step_does_not_use_offers_its_operands(text, taken, choices):
    found = misquote(text, NOW)
    assert found.choices == choices
    assert text[-found.length:] == taken


@pytest.mark.parametrize("text", [
    "the Now Step uses 51:", "the Now Step uses 51.0:", "the Now Step writes 5:",
    "the Now Step uses 5.", "the Now Step uses 5,",  # "5.5", "5,000": not ended yet
    "the Now Step uses 5",
])
def test_a_number_the_now_step_holds_or_an_unfinished_one_is_left_alone(text):
    assert misquote(text, NOW) is None


def test_what_a_step_does_is_read_from_the_operations_between_its_numbers():
    assert NOW.does == ("subtracts",)
    assert operations_in("Tom buys 4 + 8 = 12 cards.") == ("adds",)
    assert operations_in("$4 \\times 8 = 32$, then (32 - 2) ÷ 5 = 6 and 6 * 2 / 3 = 4") == (
        "multiplies", "subtracts", "divides")
    assert operations_in("She is 12-year-old; -5 is cold; x - y; the answer is 5.") == ()
    assert operations_in("1 + 2" * 10_000)[:1] == ("adds",)  # bounded: a long step is read only so far


@pytest.mark.parametrize(("text", "choices"), [
    ("It needs multiplication; the Now Step adds:", None),  # what the step does: left alone
    ("It needs addition; the Now Step multiplies:", (" adds",)),  # the needed one copied: taken back
    ("the Now Step subtracts ", (" adds",)),
    ("the Now Step adds", None),  # not ended yet ("addsomething" is no word, but the check waits for the end)
])
def test_an_operation_the_now_step_does_not_do_offers_those_it_does(text, choices):
    found = misquote(text, Sources.of("q", [], "Tom buys 4 + 8 = 12 cards."))
    assert (found and found.choices) == choices
    if found is not None:
        assert text[-found.length:].startswith(" ") and text[-found.length:].strip() in ("multiplies:", "subtracts")
    assert misquote("It needs addition; the Now Step multiplies:", Sources.of("q", [], "So it follows.")) is None


def test_a_now_step_without_numbers_offers_no_choice():
    assert misquote("the Now Step uses 5:", Sources.of("q", [], "So the answer follows.")) is None
