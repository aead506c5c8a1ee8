"""Errors a user can act on. The CLI prints them as one line on stderr (no traceback unless --debug)."""

from __future__ import annotations


class R1TuneError(Exception):
    """Something the user can fix: bad input, bad config, a run that cannot continue."""


class DataError(R1TuneError):
    """A problem in one input record, located by file, line (or row) and field."""

    def __init__(self, file: str, line: int | None, field: str | None, problem: str, unit: str = "line"):
        self.file, self.line, self.field, self.problem, self.unit = str(file), line, field, problem, unit
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.unit != "line" and self.line is not None:
            where = f"{self.file} ({self.unit} {self.line})"
        field = f" field '{self.field}':" if self.field else ""
        return f"{where}:{field} {self.problem}"

    def __reduce__(self):  # pickled whole, so an error raised in a parallel worker reaches the parent intact
        return type(self), (self.file, self.line, self.field, self.problem, self.unit)

    def as_dict(self) -> dict:
        return {"file": self.file, self.unit: self.line, "field": self.field, "reason": self.problem}
