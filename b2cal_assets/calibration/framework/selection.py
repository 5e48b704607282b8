"""Input selection: which runs of a bucket feed one input of a calibration.

Applies the ``input_data_filters`` of the settings to run metadata, with basf2 prompt
semantics:

* Filters are grouped by category (Magnet, Beam Energy, Run Type, Data Tag, Data Quality Tag).
  A category without filters sets no requirement (basf2: "not selecting a specific filter is
  equivalent to not having any requirements"), and so does Magnet ``Either``.
* Inside a category the positive filters are alternatives (a run passes with any of them:
  ``["hadron_calib", "mumu_tight_or_highm_calib"]`` takes runs tagged with either); across
  categories all must pass.
* ``"NOT X"`` excludes runs matching X, whatever the positive filters say.
* Quarantined runs are never selected, filters or not.

Matching per category: Magnet, Beam Energy, Run Type compare the run's value; Data Tag
matches when the tag is among the run's ``data_tags``; Data Quality Tag compares the run's
``data_quality`` flag, where the composite filters also accept their parts ("Good Or
Recoverable" accepts "Good" and "Recoverable"; likewise for the Shifter flags). Beam energy
``4S_offres`` (the file-path folder name) counts as ``Continuum``.

Every excluded run comes back with the reasons, so the UI can show why a run did not feed a
bucket's constants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from b2cal_assets.calibration.framework.settings import CalibrationSettings, filter_category, parse_filter
from b2cal_assets.conditions.iov import ExpRun, IoV

__all__ = ["ExcludedRun", "RunMetadata", "RunSelection", "select_runs"]


@runtime_checkable
class RunMetadata(Protocol):
    """What the run registry knows about a run; registry rows satisfy this structurally."""

    @property
    def exp(self) -> int: ...
    @property
    def run(self) -> int: ...
    @property
    def run_type(self) -> str: ...
    @property
    def beam_energy(self) -> str: ...
    @property
    def magnet(self) -> str: ...
    @property
    def data_quality(self) -> str: ...
    @property
    def data_tags(self) -> Sequence[str]: ...
    @property
    def quarantined(self) -> bool: ...


R = TypeVar("R", bound=RunMetadata)

# Composite data-quality filters and the run flags they accept (beyond their own name).
_QUALITY_ACCEPTS: Mapping[str, frozenset[str]] = {
    "Good Or Recoverable": frozenset({"Good", "Recoverable"}),
    "Good Or Recoverable Shifter": frozenset({"Good Shifter", "Recoverable Shifter"}),
}

# Run-registry spellings that mean a filter value.
_BEAM_ENERGY_ALIASES: Mapping[str, str] = {"4S_offres": "Continuum"}


@dataclass(frozen=True)
class ExcludedRun(Generic[R]):
    """A run left out of the selection and every reason why."""

    run: R
    reasons: tuple[str, ...]

    @property
    def exprun(self) -> ExpRun:
        return ExpRun(self.run.exp, self.run.run)


@dataclass(frozen=True)
class RunSelection(Generic[R]):
    """Result of :func:`select_runs`: selected runs in (exp, run) order, and the excluded ones."""

    calibration: str
    input_name: str
    selected: tuple[R, ...]
    excluded: tuple[ExcludedRun[R], ...]

    @property
    def expruns(self) -> list[ExpRun]:
        return [ExpRun(run.exp, run.run) for run in self.selected]

    def reasons(self) -> dict[ExpRun, tuple[str, ...]]:
        """Excluded run -> reasons, for logs and asset metadata."""
        return {excluded.exprun: excluded.reasons for excluded in self.excluded}


def _run_values(run: RunMetadata, category: str) -> set[str]:
    """The values of ``run`` that a filter of ``category`` can match."""
    if category == "Magnet":
        return {run.magnet}
    if category == "Beam Energy":
        return {_BEAM_ENERGY_ALIASES.get(run.beam_energy, run.beam_energy)}
    if category == "Run Type":
        return {run.run_type}
    if category == "Data Tag":
        return set(run.data_tags)
    if category == "Data Quality Tag":
        return {run.data_quality}
    raise KeyError(category)  # settings validation makes this unreachable


def _matches(filter_name: str, category: str, values: set[str]) -> bool:
    if category == "Magnet" and filter_name == "Either":
        return True
    if category == "Data Quality Tag":
        accepted = {filter_name} | _QUALITY_ACCEPTS.get(filter_name, frozenset())
        return bool(accepted & values)
    return filter_name in values


def _describe(run: RunMetadata, category: str) -> str:
    values = sorted(_run_values(run, category))
    if category == "Data Tag":
        return f"data tags {values}" if values else "no data tags"
    return f"{category.lower()} {values[0]!r}"


def _filter_reasons(run: RunMetadata, filters: Sequence[str]) -> list[str]:
    """Why ``run`` fails ``filters``; [] when it passes."""
    required: dict[str, list[str]] = {}
    excluded: dict[str, list[str]] = {}
    for entry in filters:
        negated, name = parse_filter(entry)
        category = filter_category(name)
        assert category is not None  # CalibrationSettings rejects unknown filters
        (excluded if negated else required).setdefault(category, []).append(name)

    reasons = []
    for category, names in required.items():
        values = _run_values(run, category)
        if not any(_matches(name, category, values) for name in names):
            wanted = names[0] if len(names) == 1 else f"one of {names}"
            reasons.append(f"{category}: run has {_describe(run, category)}, the input requires {wanted}")
    for category, names in excluded.items():
        values = _run_values(run, category)
        for name in names:
            if _matches(name, category, values):
                reasons.append(f"{category}: run has {_describe(run, category)}, the input excludes 'NOT {name}'")
    return reasons


def select_runs(
    runs: Iterable[R],
    settings: CalibrationSettings,
    input_name: str,
    *,
    within: IoV | None = None,
) -> RunSelection[R]:
    """The runs feeding ``input_name`` of ``settings``, and why each other run was left out.

    ``within`` optionally restricts the selection to a bucket's IoV. Quarantined runs are
    always excluded. A run given twice is kept once. Raises InvalidCalibrationSettingsError
    if ``input_name`` is not one of the settings' inputs.
    """
    filters = settings.filters_for(input_name)
    selected: list[R] = []
    excluded: list[ExcludedRun[R]] = []
    seen: set[tuple[int, int]] = set()
    for run in sorted(runs, key=lambda r: (r.exp, r.run)):
        key = (run.exp, run.run)
        reasons: list[str] = []
        if key in seen:
            reasons.append("listed more than once; the first entry is used")
        if run.quarantined:
            reasons.append("quarantined: its files failed a check and must not be used until re-transferred")
        if within is not None and not within.contains(ExpRun(run.exp, run.run)):
            reasons.append(f"outside the requested IoV {within}")
        reasons.extend(_filter_reasons(run, filters))
        if reasons:
            excluded.append(ExcludedRun(run, tuple(reasons)))
        else:
            selected.append(run)
        seen.add(key)
    return RunSelection(settings.name, input_name, tuple(selected), tuple(excluded))
