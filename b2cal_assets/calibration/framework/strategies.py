"""IoV strategies: how an algorithm is executed over the runs of a bucket, and which IoV each
execution's payloads get. A model of CAF's ``caf.strategies`` without basf2.

Every strategy takes the algorithm, the runs (any order; sorted and de-duplicated here, runs
outside the requested IoV ignored, as CAF's ``runs_overlapping_iov``) and the requested IoV,
and returns a :class:`StrategyResult`: the executions whose payloads CAF would commit (plus the
execution that failed, if one did), each with the runs it used and the IoV applied to its
payloads, and every attempt made on the way.

The requested IoV plays the role of CAF's ``iov_coverage``: the first payload starts at its
start and the last payload ends at its end. Prompt requests ``(exp_low, run_low, -1, -1)``, so
prompt payloads are open-ended from the first run of the bucket and the last one ends at -1,-1.

Choices where CAF leaves room, kept deliberately:

* SequentialRunByRun and SequentialBoundaries treat each experiment separately, as CAF does:
  a payload never spans two experiments; the last payload of an experiment that is not the last
  one ends at ``(exp, -1)`` and the next experiment's first payload starts at ``(exp, 0)``. An
  experiment with no runs at all in the bucket is therefore not covered;
  :meth:`StrategyResult.gaps` reports it.
* SimpleRunByRun applies the run's own IoV ``exp,run,exp,run`` (CAF), except that the last run's
  payload is extended to the end of the requested IoV so that the result can be open-ended.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from b2cal_assets.calibration.framework.errors import CalibrationFrameworkError
from b2cal_assets.calibration.framework.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.conditions.iov import ExpRun, InvalidIoVError, IoV, find_gaps

__all__ = [
    "Execution",
    "IoVStrategy",
    "NoRunsToCalibrateError",
    "PayloadIoV",
    "SequentialBoundaries",
    "SequentialRunByRun",
    "SimpleRunByRun",
    "SingleIOV",
    "StrategyError",
    "StrategyResult",
]


class StrategyError(CalibrationFrameworkError, RuntimeError):
    """A strategy cannot run with the given inputs (not an algorithm failure)."""


class NoRunsToCalibrateError(StrategyError):
    """No run of the input lies inside the requested IoV."""


@dataclass(frozen=True)
class Execution:
    """One execution of the algorithm: the runs it used and the IoV applied to its payloads."""

    runs: tuple[ExpRun, ...]
    iov: IoV
    outcome: AlgorithmOutcome

    @property
    def result(self) -> AlgorithmResult:
        return self.outcome.result


@dataclass(frozen=True)
class PayloadIoV:
    """One payload to write: name, IoV, the constants object, and the runs it was computed from."""

    name: str
    iov: IoV
    constants: Any
    runs: tuple[ExpRun, ...]


@dataclass(frozen=True)
class StrategyResult:
    """Outcome of one strategy pass (one iteration).

    ``executions`` are the results CAF would report: the committed successes in IoV order, and
    the not-committed execution that made the strategy fail, if any. ``attempts`` lists every
    execution in the order it happened, including not_enough_data ones later merged away.
    """

    strategy: str
    requested_iov: IoV
    executions: tuple[Execution, ...]
    attempts: tuple[Execution, ...]
    failed: bool = False
    message: str = ""

    @property
    def succeeded(self) -> bool:
        """True when every reported execution is ok or iterate (CAF's COMPLETED state)."""
        return (
            not self.failed
            and bool(self.executions)
            and all(execution.result.is_success for execution in self.executions)
        )

    @property
    def needs_iteration(self) -> bool:
        return any(execution.result is AlgorithmResult.iterate for execution in self.executions)

    @property
    def result(self) -> AlgorithmResult:
        """One code for the pass: failure / not_enough_data if any execution had it, else iterate or ok."""
        results = {execution.result for execution in self.executions}
        if self.failed or not self.executions:
            if AlgorithmResult.not_enough_data in results and AlgorithmResult.failure not in results:
                return AlgorithmResult.not_enough_data
            return AlgorithmResult.failure
        for code in (AlgorithmResult.failure, AlgorithmResult.not_enough_data, AlgorithmResult.iterate):
            if code in results:
                return code
        return AlgorithmResult.ok

    @property
    def successful_executions(self) -> tuple[Execution, ...]:
        return tuple(execution for execution in self.executions if execution.result.is_success)

    def payloads(self) -> list[PayloadIoV]:
        """Payloads of the successful executions, ordered by payload name then IoV."""
        rows = [
            PayloadIoV(name, execution.iov, constants, execution.runs)
            for execution in self.successful_executions
            for name, constants in execution.outcome.payloads.items()
        ]
        return sorted(rows, key=lambda row: (row.name, row.iov.sort_key()))

    def gaps(self) -> list[IoV]:
        """Parts of the requested IoV that no successful execution covers."""
        return find_gaps([execution.iov for execution in self.successful_executions], self.requested_iov)

    def outcome_for(self, run: ExpRun) -> AlgorithmOutcome | None:
        """The successful outcome whose IoV contains ``run``: the constants valid for that run."""
        for execution in self.successful_executions:
            if execution.iov.contains(run):
                return execution.outcome
        return None


class IoVStrategy(ABC):
    """Base class of the strategies. Subclasses implement :meth:`_execute_all`."""

    def run(
        self,
        algorithm: Algorithm,
        runs: Iterable[ExpRun],
        requested_iov: IoV,
        *,
        iteration: int = 0,
        previous: StrategyResult | None = None,
    ) -> StrategyResult:
        """Execute ``algorithm`` over ``runs`` for ``requested_iov``.

        ``previous`` is the result of the previous iteration; each execution receives the
        previous outcome valid for its first run. Raises NoRunsToCalibrateError when no run lies
        in the requested IoV, since there is then nothing to calibrate.
        """
        if requested_iov.is_empty:
            raise StrategyError("the requested IoV is empty (-1,-1,-1,-1); request the bucket's IoV")
        selected = sorted({run for run in runs if requested_iov.contains(run)})
        if not selected:
            raise NoRunsToCalibrateError(
                f"{_name(algorithm)}: no input run lies in the requested IoV {requested_iov}; "
                "check the bucket's run selection (filters, quarantine) before calibrating"
            )
        context = _Context(algorithm, iteration, previous)
        failed, message = self._execute_all(context, selected, requested_iov)
        return StrategyResult(
            strategy=type(self).__name__,
            requested_iov=requested_iov,
            executions=tuple(context.reported),
            attempts=tuple(context.attempts),
            failed=failed,
            message=message,
        )

    @abstractmethod
    def _execute_all(self, context: _Context, runs: list[ExpRun], requested: IoV) -> tuple[bool, str]:
        """Run the executions, reporting into ``context``; return (failed, message)."""


@dataclass
class _Context:
    """Mutable bookkeeping of one strategy pass."""

    algorithm: Algorithm
    iteration: int
    previous: StrategyResult | None
    attempts: list[Execution] = field(default_factory=list)
    reported: list[Execution] = field(default_factory=list)

    def execute(self, runs: Sequence[ExpRun], iov: IoV) -> Execution:
        previous = self.previous.outcome_for(runs[0]) if self.previous else None
        outcome = self.algorithm.execute(tuple(runs), self.iteration, previous)
        if not isinstance(outcome, AlgorithmOutcome):
            raise StrategyError(
                f"{_name(self.algorithm)}.execute returned {type(outcome).__name__}; it must return an AlgorithmOutcome"
            )
        # The strategy decides the payload IoV (CAF's apply_iov).
        execution = Execution(tuple(runs), iov, replace(outcome, iov=iov))
        self.attempts.append(execution)
        return execution


def _name(algorithm: Algorithm) -> str:
    return getattr(algorithm, "name", type(algorithm).__name__)


def _iov(start: ExpRun, end: tuple[int, int]) -> IoV:
    return IoV(start.exp, start.run, end[0], end[1])


def _end_before(run: ExpRun) -> tuple[int, int]:
    """IoV end just before ``run`` of the same experiment (run > 0 inside an experiment block)."""
    if run.run == 0:
        raise InvalidIoVError(f"no run before {run} in the same experiment")
    return (run.exp, run.run - 1)


def _experiment_blocks(runs: list[ExpRun], requested: IoV) -> list[tuple[list[ExpRun], ExpRun, tuple[int, int]]]:
    """Split runs by experiment with each block's lowest start and highest end (CAF's rule)."""
    blocks = [list(group) for _, group in itertools.groupby(runs, key=lambda run: run.exp)]
    result = []
    for index, block in enumerate(blocks):
        exp = block[0].exp
        lowest = requested.first if index == 0 else ExpRun(exp, 0)
        highest = (requested.final_exp, requested.final_run) if index == len(blocks) - 1 else (exp, -1)
        result.append((block, lowest, highest))
    return result


def _split_at(
    block: list[ExpRun], boundaries: set[ExpRun], lowest: ExpRun, highest: tuple[int, int]
) -> list[tuple[list[ExpRun], ExpRun, tuple[int, int]]]:
    """Split one experiment's runs before every boundary run, with each part's start and end."""
    parts: list[list[ExpRun]] = [[]]
    for run in block:
        if run in boundaries and parts[-1]:
            parts.append([])
        parts[-1].append(run)
    result = []
    for index, part in enumerate(parts):
        start = lowest if index == 0 else part[0]
        end = highest if index == len(parts) - 1 else _end_before(parts[index + 1][0])
        result.append((part, start, end))
    return result


class SingleIOV(IoVStrategy):
    """One execution over all runs; its payloads get the whole requested IoV.

    CAF's SingleIOV applies ``apply_iov`` when given; prompt sets it to the requested IoV, which
    is what is applied here. not_enough_data or failure fails the strategy.
    """

    def _execute_all(self, context: _Context, runs: list[ExpRun], requested: IoV) -> tuple[bool, str]:
        execution = context.execute(runs, requested)
        context.reported.append(execution)
        if execution.result.is_success:
            return False, ""
        return True, f"{execution.result.value} over all {len(runs)} runs: {execution.outcome.message}"


class SimpleRunByRun(IoVStrategy):
    """One execution per run, never merging; every result is reported, failures do not stop it.

    IoVs are the run's own ``exp,run,exp,run`` (CAF), except the last run's, which extends to the
    end of the requested IoV so the output stays open-ended for prompt. Any run that is not ok or
    iterate fails the strategy (CAF: "you won't be able to get a successful calibration"), but
    the successful payloads are still reported; runs between payloads remain gaps.
    """

    def _execute_all(self, context: _Context, runs: list[ExpRun], requested: IoV) -> tuple[bool, str]:
        problems = []
        for index, run in enumerate(runs):
            last = index == len(runs) - 1
            iov = _iov(run, (requested.final_exp, requested.final_run)) if last else _iov(run, (run.exp, run.run))
            execution = context.execute([run], iov)
            context.reported.append(execution)
            if not execution.result.is_success:
                problems.append(f"{run}: {execution.result.value}")
        if problems:
            return True, "runs without a payload: " + ", ".join(problems)
        return False, ""


class SequentialRunByRun(IoVStrategy):
    """Run by run, merging a run with the following ones while the algorithm says not_enough_data.

    Per experiment (payloads never span experiments), as CAF:

    1. Execute on the next ``step_size`` runs, plus any runs still waiting from a not_enough_data
       attempt. The applied IoV runs from the first of those runs (from the experiment's lowest
       start for its first payload) to just before the next unused run, or to the experiment's
       highest end when no run remains: so consecutive payloads leave no hole, even over runs
       absent from the input.
    2. ok/iterate: keep the payloads (committed once a later success or the end is reached).
       not_enough_data: add the next runs and retry. failure: stop; the strategy fails, and (as
       in CAF) the success still held back is not committed, only the failure is reported.
    3. If the runs left at the end still say not_enough_data, they are merged with the previous
       success's runs and executed once more with that success's start and the experiment's end;
       that execution replaces the previous success. With no previous success in the
       experiment, there was not enough data in the whole experiment: the strategy fails.
    """

    def __init__(self, step_size: int = 1) -> None:
        if not isinstance(step_size, int) or isinstance(step_size, bool) or step_size < 1:
            raise StrategyError(f"SequentialRunByRun step_size={step_size!r}; it must be an integer >= 1")
        self.step_size = step_size

    def _execute_all(self, context: _Context, runs: list[ExpRun], requested: IoV) -> tuple[bool, str]:
        # Runs the algorithm names as boundaries (e.g. a beam-spot jump) start a new block: a
        # low-statistics run is merged within its side of the jump, never across it.
        boundaries = set(getattr(context.algorithm, "boundaries", lambda: [])())
        for block, lowest, highest in _experiment_blocks(runs, requested):
            for part, start, end in _split_at(block, boundaries, lowest, highest):
                failed, message = self._execute_experiment(context, part, start, end)
                if failed:
                    return True, message
        return False, ""

    def _execute_experiment(
        self, context: _Context, block: list[ExpRun], lowest: ExpRun, highest: tuple[int, int]
    ) -> tuple[bool, str]:
        pending: list[ExpRun] = []  # runs of the current (not yet successful) attempt
        last_success: Execution | None = None
        for offset in range(0, len(block), self.step_size):
            pending = pending + block[offset : offset + self.step_size]
            remaining = block[offset + self.step_size :]
            start = lowest if last_success is None else pending[0]
            end = _end_before(remaining[0]) if remaining else highest
            execution = context.execute(pending, _iov(start, end))
            if execution.result.is_success:
                if last_success is not None:
                    context.reported.append(last_success)
                last_success, pending = execution, []
            elif execution.result is AlgorithmResult.not_enough_data:
                continue  # merge with the next runs, or with the previous success at the end
            else:
                context.reported.append(execution)
                return True, f"failure on runs {_runs_text(execution.runs)}: {execution.outcome.message}"

        if not pending:
            assert last_success is not None
            context.reported.append(last_success)
            return False, ""
        if last_success is None:
            # Every attempt lacked data, up to the whole experiment: report the largest one.
            context.reported.append(context.attempts[-1])
            return True, (
                f"not enough data in all {len(block)} runs of experiment {block[0].exp}: "
                f"{context.attempts[-1].outcome.message}"
            )
        # CAF: the not_enough_data tail joins the previous success, which is re-executed.
        merged_runs = list(last_success.runs) + pending
        merged = context.execute(merged_runs, _iov(last_success.iov.first, highest))
        context.reported.append(merged)
        if merged.result.is_success:
            return False, ""
        return True, f"{merged.result.value} on merged runs {_runs_text(merged.runs)}: {merged.outcome.message}"


class SequentialBoundaries(IoVStrategy):
    """One execution per segment between caller-given boundaries, never crossing experiments.

    ``boundaries`` are ``(exp, run)`` starts of new payloads. As CAF, per experiment: a boundary
    at ``(exp, 0)`` is added if missing; segments without any run are dropped and the previous
    segment extended up to the next one; a segment whose execution says not_enough_data is
    merged with the next segment, and a not_enough_data last segment with the previous success.
    The first payload starts at the experiment's lowest start, the last ends at its highest end.
    An empty boundary list gives one payload per experiment.
    """

    def __init__(self, boundaries: Iterable[ExpRun | tuple[int, int]]) -> None:
        converted = []
        for boundary in boundaries:
            if isinstance(boundary, ExpRun):
                converted.append(boundary)
            else:
                try:
                    exp, run = boundary
                    converted.append(ExpRun(exp, run))
                except (TypeError, ValueError) as error:
                    raise StrategyError(
                        f"payload boundary {boundary!r} is not an (exp, run) pair of non-negative integers"
                    ) from error
        self.boundaries = tuple(sorted(set(converted)))

    def _execute_all(self, context: _Context, runs: list[ExpRun], requested: IoV) -> tuple[bool, str]:
        for block, lowest, highest in _experiment_blocks(runs, requested):
            segments = self._segments(block)
            failed, message = self._execute_segments(context, segments, lowest, highest)
            if failed:
                return True, message
        return False, ""

    def _segments(self, block: list[ExpRun]) -> list[tuple[ExpRun, list[ExpRun]]]:
        """(segment start, runs) for the segments of one experiment that hold runs."""
        exp = block[0].exp
        starts = sorted({ExpRun(exp, 0), *(b for b in self.boundaries if b.exp == exp)})
        segments: dict[ExpRun, list[ExpRun]] = {start: [] for start in starts}
        for run in block:
            # The segment of a run is the last boundary at or before it.
            owner = max(start for start in starts if start <= run)
            segments[owner].append(run)
        return [(start, members) for start, members in segments.items() if members]

    def _execute_segments(
        self,
        context: _Context,
        segments: list[tuple[ExpRun, list[ExpRun]]],
        lowest: ExpRun,
        highest: tuple[int, int],
    ) -> tuple[bool, str]:
        pending: list[ExpRun] = []
        pending_start: ExpRun | None = None
        last_success: Execution | None = None
        for index, (segment_start, members) in enumerate(segments):
            if pending_start is None:
                pending_start = segment_start
            pending = pending + members
            is_last = index == len(segments) - 1
            start = lowest if last_success is None else pending_start
            # Dropped empty segments are absorbed: this one reaches the next non-empty boundary.
            end = highest if is_last else _end_before(segments[index + 1][0])
            execution = context.execute(pending, _iov(start, end))
            if execution.result.is_success:
                if last_success is not None:
                    context.reported.append(last_success)
                last_success, pending, pending_start = execution, [], None
            elif execution.result is AlgorithmResult.not_enough_data:
                continue
            else:
                context.reported.append(execution)
                return True, f"failure on runs {_runs_text(execution.runs)}: {execution.outcome.message}"

        if not pending:
            assert last_success is not None
            context.reported.append(last_success)
            return False, ""
        if last_success is None:
            context.reported.append(context.attempts[-1])
            return True, (
                f"not enough data in any merge of the boundaries of experiment {segments[0][1][0].exp}: "
                f"{context.attempts[-1].outcome.message}"
            )
        merged = context.execute(list(last_success.runs) + pending, _iov(last_success.iov.first, highest))
        context.reported.append(merged)
        if merged.result.is_success:
            return False, ""
        return True, f"{merged.result.value} on merged runs {_runs_text(merged.runs)}: {merged.outcome.message}"


def _runs_text(runs: Sequence[ExpRun]) -> str:
    if len(runs) <= 4:
        return ", ".join(str(run) for run in runs)
    return f"{runs[0]} ... {runs[-1]} ({len(runs)} runs)"
