"""Algorithm results and the Algorithm protocol, as in CAF's ``CalibrationAlgorithm``.

An algorithm runs over the merged collector output of some runs and answers with one of the
four CAF result codes:

* ``ok``: constants computed, commit them.
* ``not_enough_data``: the runs did not hold enough data; the IoV strategy may merge more runs.
* ``iterate``: constants computed, but the algorithm wants another pass (collector and
  algorithm) using them; payloads are still committed, as CAF does.
* ``failure``: something went wrong; nothing from this execution is used.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from b2cal_assets.conditions.iov import ExpRun, IoV

__all__ = ["Algorithm", "AlgorithmOutcome", "AlgorithmResult"]


class AlgorithmResult(enum.Enum):
    """CAF's ``c_OK``, ``c_NotEnoughData``, ``c_Iterate``, ``c_Failure``."""

    ok = "ok"
    not_enough_data = "not_enough_data"
    iterate = "iterate"
    failure = "failure"

    @property
    def is_success(self) -> bool:
        """CAF commits payloads for ok and iterate alike."""
        return self in (AlgorithmResult.ok, AlgorithmResult.iterate)


@dataclass(frozen=True)
class AlgorithmOutcome:
    """What one execution of an algorithm produced.

    ``payloads`` maps payload name to the constants object (whatever the calibration uses:
    a dataclass of numpy arrays with their uncertainties, typically). ``iov`` is the IoV the
    payloads are valid for; IoV strategies overwrite it with the IoV they apply, as CAF's
    strategies pass ``apply_iov`` to the algorithm, so an algorithm may leave it empty.
    ``message`` explains the result to the expert (e.g. "crystal 1234: 12 hits < 100").
    """

    result: AlgorithmResult
    payloads: Mapping[str, Any] = field(default_factory=dict)
    iov: IoV = field(default_factory=IoV.empty)
    message: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.result, AlgorithmResult):
            raise TypeError(f"AlgorithmOutcome.result must be an AlgorithmResult, not {self.result!r}")


@runtime_checkable
class Algorithm(Protocol):
    """A calibration algorithm: the reduce step over collector output.

    ``execute`` receives the runs to use (ordered, possibly several merged runs), the iteration
    number (0 for the first pass) and ``previous``: the outcome of the previous iteration that
    covered these runs (None in iteration 0), which is how constants flow from one iteration to
    the next, like CAF's database chain. It must not mutate ``previous``.
    """

    name: str

    def execute(
        self, runs: Sequence[ExpRun], iteration: int, previous: AlgorithmOutcome | None
    ) -> AlgorithmOutcome: ...
