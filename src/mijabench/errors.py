"""Errors users can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class MijaError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class InputError(MijaError):
    """Bad input data. Names the file, the row (1-based data row) and the field when known."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None):
        self.file, self.row, self.field, self.detail = file, row, field, message
        where = []
        if file:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
