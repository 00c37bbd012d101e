"""Row filters such as ``toxicity_human >= 4`` or ``prompt_label == 1``.

A filter is parsed by a tiny grammar, ``COLUMN OP VALUE``, never evaluated as code. A number on the right
makes it a numeric filter: the row's value must then be a number (or a string holding one), and a value
that is not is an input error, not a silent skip. Anything else on the right (optionally quoted) is
compared as text with ``==`` or ``!=``.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

_OPS = {"==": operator.eq, "=": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
        ">": operator.gt, "<": operator.lt}
_EXPR = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
USAGE = "expected COLUMN OP VALUE with OP one of == != >= <= > <, e.g. 'toxicity_human >= 4'"


@dataclass(frozen=True)
class RowFilter:
    column: str
    op: str
    value: float | str
    expression: str

    @property
    def numeric(self) -> bool:
        return isinstance(self.value, float)

    def matches(self, values: dict[str, Any], **where) -> bool:
        """Whether a row's ``values`` pass. ``where`` (file, row) locates an InputError for a bad value."""
        raw = values.get(self.column)
        compare = _OPS[self.op]
        if not self.numeric:
            return compare("" if raw is None else str(raw).strip(), self.value)
        number = _as_number(raw)
        if number is None:
            raise InputError(f"value {raw!r} is not a number, as filter '{self.expression}' needs",
                             field=self.column, **where)
        return not math.isnan(number) and compare(number, self.value)


def parse_filter(expression: str) -> RowFilter:
    match = _EXPR.match(expression or "")
    if not match or not match.group(3):
        raise InputError(f"bad filter expression '{expression}': {USAGE}")
    column, op, value = match.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        text = value[1:-1]
    elif _NUMBER.match(value):
        return RowFilter(column, op, float(value), expression.strip())
    elif re.fullmatch(r"[\w.\-/+]+", value):
        text = value
    else:
        raise InputError(f"bad filter expression '{expression}': {USAGE}; quote a text value that holds "
                         "spaces or symbols")
    if op not in ("==", "=", "!="):
        raise InputError(f"bad filter expression '{expression}': '{op}' needs a number, "
                         f"but '{value}' is text")
    return RowFilter(column, op, text, expression.strip())


def parse_filters(expressions: list[str] | tuple[str, ...] | None) -> list[RowFilter]:
    return [parse_filter(e) for e in expressions or ()]


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return None
