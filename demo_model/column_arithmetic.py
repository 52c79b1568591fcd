"""Column arithmetic written out digit by digit, for the synthetic teacher's calculation checks.

A small pretrained model copies numbers at once but does not add, subtract or multiply two-digit numbers in
one token (demo model of issue 26: 2 of 6 arithmetic errors caught on fresh problems with "89 - 72 = 17"
written in one go). Written by columns, each token the model must produce is a one-digit fact or a carry:

    89 - 72: ones 9 - 2 = 7; tens 8 - 7 = 1; so 17
    84 - 18: ones 14 - 8 = 6, borrow 1; tens 8 - 1 - 1 = 6; so 66
    43 + 27: ones 3 + 7 = 10, write 0 carry 1; tens 4 + 2 + 1 = 7; so 70
    28 × 8: ones 8 × 8 = 64, write 4 carry 6; tens 2 × 8 + 6 = 22; so 224

Division is checked the other way round, by multiplying the step's quotient back (see the teacher).
`worked()` returns None for what it does not write out (a product of two numbers of two digits or more, a
negative difference): the teacher then writes the result in one go as before.
"""

from __future__ import annotations

COLUMNS = ("ones", "tens", "hundreds", "thousands")
SYMBOL = {"+": "+", "-": "-", "*": "×"}


def worked(left: int, op: str, right: int) -> tuple[str, int] | None:
    """("a op b: <columns>; so c", c) for +, - (a >= b) and × with a one-digit factor; None otherwise."""
    if min(left, right) < 0 or max(len(str(left)), len(str(right))) > len(COLUMNS):
        return None
    if op == "+":
        columns, value = _add(left, right), left + right
    elif op == "-" and left >= right:
        columns, value = _subtract(left, right), left - right
    elif op == "*" and min(left, right) < 10:
        columns, value = _multiply(left, right), left * right
    else:
        return None
    if len(columns) == 1:  # one-digit operands: a single fact, nothing to carry
        return f"{left} {SYMBOL[op]} {right} = {value}", value
    return f"{left} {SYMBOL[op]} {right}: {'; '.join(columns)}; so {value}", value


def _digits(number: int, width: int) -> list[int]:
    """Ones first, padded with None-like zeros flagged by the caller through `width`."""
    return [int(d) for d in reversed(str(number).rjust(width, "0"))]


def _add(left: int, right: int) -> list[str]:
    width = max(len(str(left)), len(str(right)))
    a, b = _digits(left, width), _digits(right, width)
    columns, carry = [], 0
    for i in range(width):
        terms = [a[i]] + ([b[i]] if i < len(str(right)) else []) + ([carry] if carry else [])
        total = sum(terms)
        text = f"{COLUMNS[i]} {' + '.join(map(str, terms))}"
        if len(terms) > 1:
            text += f" = {total}"
        if i < width - 1 and total >= 10:
            text += f", write {total % 10} carry {total // 10}"
        columns.append(text)
        carry = total // 10 if i < width - 1 else 0
    return columns


def _subtract(left: int, right: int) -> list[str]:
    width = len(str(left))
    a, b = _digits(left, width), _digits(right, width)
    columns, borrow = [], 0
    for i in range(width):
        terms = ([b[i]] if i < len(str(right)) else []) + ([1] if borrow else [])
        top, borrow = a[i], 0
        if top < sum(terms):
            top, borrow = top + 10, 1
        text = f"{COLUMNS[i]} {top}" + "".join(f" - {t}" for t in terms)
        if terms:
            text += f" = {top - sum(terms)}"
        columns.append(text + (", borrow 1" if borrow else ""))
    return columns


def _multiply(left: int, right: int) -> list[str]:
    number, factor = (left, right) if right < 10 else (right, left)
    digits = _digits(number, len(str(number)))
    columns, carry = [], 0
    for i, digit in enumerate(digits):
        total = digit * factor + carry
        text = f"{COLUMNS[i]} {digit} × {factor}" + (f" + {carry}" if carry else "") + f" = {total}"
        if i < len(digits) - 1 and total >= 10:
            text += f", write {total % 10} carry {total // 10}"
        columns.append(text)
        carry = total // 10
    return columns
