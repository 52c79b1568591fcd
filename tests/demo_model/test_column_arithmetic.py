"""Column arithmetic for the teacher: every column is a true one-digit fact and the columns give the result."""

import re

import pytest

from rprm_lite.demo_model.column_arithmetic import worked

COLUMN = re.compile(r"(ones|tens|hundreds|thousands) (\d+)((?: [-+×] \d+)*)(?: = (\d+))?"
                    r"(?:, write (\d) carry (\d+)|, borrow 1)?$")


def column_value(first: str, rest: str) -> int:
    value, tokens = int(first), rest.split()
    for symbol, number in zip(tokens[::2], tokens[1::2], strict=True):
        if symbol == "+":
            value += int(number)
        elif symbol == "-":
            value -= int(number)
        else:
            value *= int(number)
    return value


@pytest.mark.parametrize("op", ["+", "-", "*"])
def test_every_column_is_a_true_fact_and_the_columns_give_the_result(op):
    checked = 0
    for left in range(0, 230, 3):
        for right in range(0, 120, 7):
            work = worked(left, op, right)
            expected = {"+": left + right, "-": left - right, "*": left * right}[op]
            if work is None:
                assert (op == "-" and left < right) or (op == "*" and min(left, right) >= 10)
                continue
            text, value = work
            assert value == expected and re.search(rf"(= |so ){expected}$", text), text
            head, _, body = text.partition(": ")
            if not body:  # one-digit operands: a single fact
                assert max(left, right) < 10 or (op == "*" and min(left, right) < 10 and max(left, right) < 10)
                continue
            columns, _, result = body.rpartition("; so ")
            written = []
            for column in columns.split("; "):
                match = COLUMN.match(column)
                assert match is not None, (text, column)
                total = column_value(match[2], match[3])
                assert match[4] is None or int(match[4]) == total, text  # the fact is true
                written.append(str(total % 10 if match[5] else total))
            # the last column's value, then every earlier column's written digit, read back to front
            assert int("".join(reversed(written))) == int(result) == expected, text
            checked += 1
    assert checked > 150


def test_what_it_does_not_write_out():
    assert worked(12, "*", 12) is None  # two factors of two digits: the teacher writes the product in one go
    assert worked(5, "-", 9) is None  # below zero
    assert worked(7, "/", 7) is None
    assert worked(7, "+", 2) == ("7 + 2 = 9", 9)
    assert worked(84, "-", 18) == ("84 - 18: ones 14 - 8 = 6, borrow 1; tens 8 - 1 - 1 = 6; so 66", 66)
