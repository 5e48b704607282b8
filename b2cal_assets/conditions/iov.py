"""Intervals of validity (IoVs) with the Belle II conditions-database semantics.

An IoV is ``(first_exp, first_run, final_exp, final_run)``; both ends are inclusive.

* ``final_exp >= 0, final_run >= 0``: valid up to and including that run.
* ``final_exp >= 0, final_run == -1``: valid for all runs of ``final_exp``.
* ``final_exp == final_run == -1``: valid forever.
* ``IoV(0, 0, -1, -1)`` is "always", ``IoV(-1, -1, -1, -1)`` is "empty".

Runs are points ``(exp, run)`` ordered experiment first. Run numbers inside an experiment are
unbounded, so ``26,100`` followed by ``26,101`` is adjacent, ``26,-1`` (all of exp 26) followed by
``27,0`` is adjacent, but ``26,100`` followed by ``27,0`` is not: runs 26,101... lie between.

Internally the end of an IoV is a point whose coordinates may be ``math.inf`` ("all runs of the
experiment" / "forever"); that gives a total order on bounds, and all arithmetic (intersection,
union, subtraction, gaps) is done on those bounds and translated back to -1 at the edge.

Pure Python: no Dagster, no database. The conditions database and the calibration framework
both build on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from b2cal_assets.conditions.errors import ConditionsError
from b2cal_assets.run_identity import ExpRun

__all__ = [
    "ExpRun",
    "InvalidIoVError",
    "IoV",
    "find_gaps",
    "find_overlaps",
]

# A bound: (exp, run) where either coordinate may be math.inf for open ends.
_Bound = tuple[float, float]
_INF = math.inf


class InvalidIoVError(ConditionsError, ValueError):
    """An IoV that the conditions database would not accept, or an impossible operation
    (for example the union of two IoVs with runs between them). A bad single run is
    ``run_identity.InvalidRunError``."""


def _check_int(name: str, value: object, context: str) -> None:
    # bool is an int subclass; True as a run number is always a bug upstream.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidIoVError(f"{context}: {name}={value!r} is not an integer; experiment and run numbers are integers")


@dataclass(frozen=True)
class IoV:
    """Interval of validity ``first_exp,first_run,final_exp,final_run`` (end inclusive, -1 = open).

    Instances are validated on construction; an invalid combination raises InvalidIoVError
    naming the offending numbers and what to write instead.
    """

    first_exp: int
    first_run: int
    final_exp: int
    final_run: int

    def __post_init__(self) -> None:
        text = f"{self.first_exp},{self.first_run},{self.final_exp},{self.final_run}"
        context = f"IoV {text}"
        for name in ("first_exp", "first_run", "final_exp", "final_run"):
            _check_int(name, getattr(self, name), context)
        if self.as_tuple() == (-1, -1, -1, -1):
            return  # the empty IoV is the one legal use of a negative start
        if self.first_exp < 0 or self.first_run < 0:
            raise InvalidIoVError(
                f"{context} is invalid: the first experiment and run must be >= 0 "
                "(the start of an IoV cannot be open; use 0,0 for 'from the beginning', "
                "or -1,-1,-1,-1 for the empty IoV)"
            )
        if self.final_exp < -1 or self.final_run < -1:
            raise InvalidIoVError(
                f"{context} is invalid: the final experiment and run must be >= 0, or -1 for an open end"
            )
        if self.final_exp == -1 and self.final_run != -1:
            raise InvalidIoVError(
                f"{context} is invalid: final_exp=-1 means 'valid forever', which needs final_run=-1 too; "
                f"write {self.first_exp},{self.first_run},-1,-1 for an open end, or give the final experiment "
                f"(e.g. {self.first_exp},{self.first_run},{self.first_exp},{self.final_run})"
            )
        if self._end() < self._start():
            raise InvalidIoVError(
                f"{context} is invalid: it ends ({_describe_end(self._end())}) before it starts "
                f"(exp {self.first_exp} run {self.first_run}); check the order of the bounds"
            )

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def always(cls) -> IoV:
        """Valid for every run of every experiment: ``0,0,-1,-1``."""
        return cls(0, 0, -1, -1)

    @classmethod
    def empty(cls) -> IoV:
        """Valid for no run at all: ``-1,-1,-1,-1``."""
        return cls(-1, -1, -1, -1)

    @classmethod
    def parse(cls, text: str) -> IoV:
        """Parse the database.txt / b2conditionsdb spelling ``"26,12,26,-1"`` (spaces allowed)."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 4:
            raise InvalidIoVError(
                f"cannot parse IoV {text!r}: expected four comma-separated integers "
                "first_exp,first_run,final_exp,final_run such as 26,12,26,-1"
            )
        try:
            numbers = [int(part) for part in parts]
        except ValueError as error:
            raise InvalidIoVError(
                f"cannot parse IoV {text!r}: every field must be an integer (-1 for an open end)"
            ) from error
        return cls(*numbers)

    @classmethod
    def from_exprun(cls, first: ExpRun, final: ExpRun | None = None) -> IoV:
        """IoV from ``first`` to ``final`` inclusive; ``final=None`` gives the prompt-style
        open-ended IoV ``first.exp,first.run,-1,-1``."""
        if final is None:
            return cls(first.exp, first.run, -1, -1)
        return cls(first.exp, first.run, final.exp, final.run)

    @classmethod
    def _from_bounds(cls, start: _Bound, end: _Bound) -> IoV:
        # Translate internal bounds back to the -1 convention.
        if start > end:
            return cls.empty()
        final_exp = -1 if end[0] == _INF else int(end[0])
        final_run = -1 if end[1] == _INF else int(end[1])
        return cls(int(start[0]), int(start[1]), final_exp, final_run)

    # -- properties -------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return self.as_tuple() == (-1, -1, -1, -1)

    @property
    def is_always(self) -> bool:
        return self.as_tuple() == (0, 0, -1, -1)

    @property
    def is_open_ended(self) -> bool:
        """True when the IoV ends with run -1: all runs of final_exp, or forever.

        The empty IoV is not open-ended although its final_run is -1: it covers nothing.
        """
        return not self.is_empty and self.final_run == -1

    @property
    def first(self) -> ExpRun:
        """The first run covered. Raises InvalidIoVError for the empty IoV, which has none."""
        if self.is_empty:
            raise InvalidIoVError("the empty IoV -1,-1,-1,-1 has no first run")
        return ExpRun(self.first_exp, self.first_run)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.first_exp, self.first_run, self.final_exp, self.final_run)

    def sort_key(self) -> tuple[float, float, float, float]:
        """Key ordering IoVs by start then end, with open ends after every finite run."""
        if self.is_empty:
            return (-1.0, -1.0, -1.0, -1.0)
        return (*self._start(), *self._end())

    def __str__(self) -> str:
        return f"{self.first_exp},{self.first_run},{self.final_exp},{self.final_run}"

    # -- internal bounds --------------------------------------------------------------------

    def _start(self) -> _Bound:
        return (self.first_exp, self.first_run)

    def _end(self) -> _Bound:
        if self.final_exp == -1:
            return (_INF, _INF)
        if self.final_run == -1:
            return (self.final_exp, _INF)
        return (self.final_exp, self.final_run)

    # -- set operations ---------------------------------------------------------------------

    def contains(self, other: ExpRun | IoV) -> bool:
        """Whether a run, or every run of another IoV, is valid in this IoV.

        Set semantics: the empty IoV contains no run, and is contained in every IoV.
        """
        if isinstance(other, ExpRun):
            return not self.is_empty and self._start() <= (other.exp, other.run) <= self._end()
        if other.is_empty:
            return True
        if self.is_empty:
            return False
        return self._start() <= other._start() and other._end() <= self._end()

    def overlaps(self, other: IoV) -> bool:
        """Whether at least one run is valid in both IoVs."""
        if self.is_empty or other.is_empty:
            return False
        return max(self._start(), other._start()) <= min(self._end(), other._end())

    def intersection(self, other: IoV) -> IoV:
        """The runs valid in both; the empty IoV if they are disjoint."""
        if not self.overlaps(other):
            return IoV.empty()
        return IoV._from_bounds(max(self._start(), other._start()), min(self._end(), other._end()))

    def is_adjacent(self, other: IoV) -> bool:
        """Whether one IoV starts at the very next run after the other ends (no run in between)."""
        if self.is_empty or other.is_empty:
            return False
        return _after(self._end()) == other._start() or _after(other._end()) == self._start()

    def union(self, other: IoV) -> IoV:
        """One IoV covering both; they must overlap or be adjacent.

        Raises InvalidIoVError when runs lie between them, because a single IoV would then
        silently extend validity to runs neither input covered.
        """
        if other.is_empty:
            return self
        if self.is_empty:
            return other
        if not (self.overlaps(other) or self.is_adjacent(other)):
            low, high = sorted((self, other), key=IoV.sort_key)
            # Disjoint and not touching: low ends before forever and high starts after 0,0.
            gap_start, gap_end = _after(low._end()), _before(high._start())
            assert gap_start is not None and gap_end is not None
            gap = IoV._from_bounds(gap_start, gap_end)
            raise InvalidIoVError(
                f"cannot join IoVs {self} and {other}: they neither overlap nor touch, and runs {gap} "
                "would be covered by neither; keep them as separate IoVs or cover the gap first"
            )
        return IoV._from_bounds(min(self._start(), other._start()), max(self._end(), other._end()))

    def subtract(self, other: IoV) -> list[IoV]:
        """The runs of this IoV not valid in ``other``: zero, one or two IoVs, in order."""
        if self.is_empty:
            return []
        if not self.overlaps(other):
            return [self]
        pieces: list[IoV] = []
        if other._start() > self._start():
            # other starts after (0,0) here, so the run before its start exists.
            before = _before(other._start())
            assert before is not None
            pieces.append(IoV._from_bounds(self._start(), before))
        if other._end() < self._end():
            # other ends before forever here, so the run after its end exists.
            after = _after(other._end())
            assert after is not None
            pieces.append(IoV._from_bounds(after, self._end()))
        return pieces


def _after(end: _Bound) -> _Bound | None:
    """First run after an end bound; None after 'forever'."""
    exp, run = end
    if exp == _INF:
        return None
    if run == _INF:
        return (exp + 1, 0)
    return (exp, run + 1)


def _before(start: _Bound) -> _Bound | None:
    """Last bound before a start point; None before 0,0. Before exp e run 0 is 'all of exp e-1'."""
    exp, run = start
    if run > 0:
        return (exp, run - 1)
    if exp > 0:
        return (exp - 1, _INF)
    return None


def _describe_end(end: _Bound) -> str:
    exp, run = end
    if exp == _INF:
        return "forever"
    if run == _INF:
        return f"exp {int(exp)}, all runs"
    return f"exp {int(exp)} run {int(run)}"


def find_gaps(iovs: Sequence[IoV], within: IoV) -> list[IoV]:
    """The parts of ``within`` covered by none of ``iovs``, as ordered, disjoint IoVs.

    Adjacent IoVs leave no gap (``26,-1`` then ``27,0`` is continuous). IoVs may overlap each
    other or stick out of ``within``; only coverage inside ``within`` matters.
    """
    if within.is_empty:
        return []
    clipped = sorted(
        (clip for clip in (iov.intersection(within) for iov in iovs) if not clip.is_empty),
        key=IoV.sort_key,
    )
    gaps: list[IoV] = []
    cursor: _Bound | None = within._start()  # first run not yet known to be covered
    for iov in clipped:
        if cursor is None:
            break  # everything up to forever is covered
        if iov._start() > cursor:
            before = _before(iov._start())
            assert before is not None  # iov starts after cursor >= 0,0
            gaps.append(IoV._from_bounds(cursor, before))
        after = _after(iov._end())
        if after is None:
            cursor = None
        else:
            cursor = max(cursor, after)
    if cursor is not None and cursor <= within._end():
        gaps.append(IoV._from_bounds(cursor, within._end()))
    return gaps


def find_overlaps(iovs: Sequence[IoV]) -> list[tuple[IoV, IoV]]:
    """Every pair of IoVs sharing at least one run, as ``(iovs[i], iovs[j])`` with ``i < j``,
    ordered by ``(i, j)``. A sweep over IoVs sorted by start keeps this near-linear for the
    usual case of a global tag with few overlaps."""
    order = sorted((i for i, iov in enumerate(iovs) if not iov.is_empty), key=lambda i: iovs[i].sort_key())
    active: list[int] = []  # indices whose IoV may still overlap later starts
    pairs: list[tuple[int, int]] = []
    for index in order:
        start = iovs[index]._start()
        active = [other for other in active if iovs[other]._end() >= start]
        pairs.extend((min(other, index), max(other, index)) for other in active)
        active.append(index)
    return [(iovs[i], iovs[j]) for i, j in sorted(pairs)]
