"""One run of one experiment, and its text form ``e0026.r00012``.

The single run-identity type of the platform: the runs registry keys runs by it (the text form is
the Dagster partition key of a run), the conditions database orders IoV bounds by it, calibrations
label collector outputs with it. Pure Python, imports nothing from the project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["EXP_MAX", "RUN_MAX", "ExpRun", "InvalidRunError"]

# The Belle II file names give the experiment 4 digits and the run 5 (cdst.physics.0026.00012...).
EXP_MAX = 9999
RUN_MAX = 99999

# ASCII digits only, whole string only (no trailing newline, no other scripts' digits).
_TEXT = re.compile(r"e(\d{4})\.r(\d{5})", re.ASCII)


class InvalidRunError(ValueError):
    """Numbers or text that do not name one run (experiment 0-9999, run 0-99999, ``e0026.r00012``)."""


def _check(name: str, value: object, upper: int, context: str) -> None:
    # bool is an int subclass; True as a run number is always a bug upstream.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRunError(f"{context}: {name}={value!r} is not an integer; experiment and run numbers are integers")
    if value < 0:
        raise InvalidRunError(
            f"{context}: experiment and run numbers must be >= 0 (-1 only means 'open end' inside an IoV, never for a single run)"
        )
    if value > upper:
        raise InvalidRunError(f"{context}: {name}={value} is above {upper}, the largest a Belle II file name can carry")


@dataclass(frozen=True, order=True)
class ExpRun:
    """One run of one experiment, ordered by experiment then run."""

    exp: int
    run: int

    def __post_init__(self) -> None:
        context = f"ExpRun({self.exp!r}, {self.run!r})"
        _check("exp", self.exp, EXP_MAX, context)
        _check("run", self.run, RUN_MAX, context)

    def format(self) -> str:
        """The spelling used in Belle II file paths, logs and partition keys: ``e0026.r00012``."""
        return f"e{self.exp:04d}.r{self.run:05d}"

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, text: str) -> ExpRun:
        """The run named by ``e0026.r00012``; InvalidRunError for anything else."""
        match = _TEXT.fullmatch(text)
        if not match:
            raise InvalidRunError(f"{text!r} is not a run like e0026.r00012")
        return cls(int(match.group(1)), int(match.group(2)))
