"""CalibrationSettings: the expert-facing declaration of one prompt calibration.

Mirrors basf2's ``prompt.CalibrationSettings`` field for field (name, expert_username,
description, input_data_formats, input_data_names, input_data_filters, depends_on,
expert_config, produced_payloads) plus ``subsystem``, which the platform uses to group
calibrations. The validation rules are basf2's, with messages that say what to change:

* ``name``: at most 64 characters, unique across all calibrations. Additionally restricted to
  letters, digits and ``_`` because the platform uses it as an asset key, directory and file name.
* ``input_data_formats``: non-empty subset of raw, cdst, mdst, udst (case-insensitive, as basf2).
* ``input_data_names``: non-empty.
* ``input_data_filters``: empty (no requirements), or keyed exactly like ``input_data_names``;
  each value a list of filter names from :data:`INPUT_DATA_FILTERS`, ``"NOT "`` negating one.
* ``depends_on``: other CalibrationSettings; the whole graph must be acyclic
  (:func:`topological_order`).
* ``expert_config``: a JSON-serialisable dict; run-time config is merged over it with
  :func:`merge_expert_config`.

Pure Python: no Dagster import. The Dagster layer reads these objects to build assets.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any

from b2cal_assets.calibration.framework.errors import CalibrationFrameworkError

__all__ = [
    "ALLOWED_DATA_FORMATS",
    "CalibrationSettings",
    "DEFAULT_MAX_ITERATIONS",
    "DependencyCycleError",
    "FRAMEWORK_CONFIG_KEYS",
    "INPUT_DATA_FILTERS",
    "InvalidCalibrationSettingsError",
    "InvalidExpertConfigError",
    "MAX_NAME_LENGTH",
    "SUBSYSTEMS",
    "filter_category",
    "max_iterations_from_config",
    "merge_expert_config",
    "parse_filter",
    "topological_order",
]

MAX_NAME_LENGTH = 64

#: Algorithm passes allowed when expert_config has no "max_iterations": small, so an algorithm
#: that never converges fails within a bucket's turnaround rather than looping.
DEFAULT_MAX_ITERATIONS = 5

ALLOWED_DATA_FORMATS: frozenset[str] = frozenset({"raw", "cdst", "mdst", "udst"})

SUBSYSTEMS: frozenset[str] = frozenset(
    {"pxd", "svd", "cdc", "ecl", "top", "arich", "klm", "trigger", "tracking", "alignment", "beam"}
)

#: Filter category -> filter names, as basf2's ``prompt.INPUT_DATA_FILTERS``. Filter names are
#: unique across categories, so a bare name identifies its category.
INPUT_DATA_FILTERS: Mapping[str, frozenset[str]] = {
    "Magnet": frozenset({"On", "Off", "Either"}),
    "Beam Energy": frozenset({"No Beam", "4S", "Continuum", "Scan"}),
    "Run Type": frozenset({"beam", "cosmic", "debug", "null", "physics"}),
    "Data Tag": frozenset(
        {
            "hlt_skim",
            "bhabha_all_calib",
            "cosmic_calib",
            "gamma_gamma_calib",
            "hadron_calib",
            "mumu_tight_or_highm_calib",
            # Older basf2 releases spell the mumu tag without the underscore; accept both so
            # settings copied from either release validate.
            "mumutight_or_highm_calib",
            "offip_calib",
            "radmumu_calib",
            "random_calib",
            "single_gamma_mc",
        }
    ),
    "Data Quality Tag": frozenset(
        {
            ">=30 Minute Run",
            "Bad For Alignment",
            "Good",
            "Good Shifter",
            "Good For PXD",
            "Good Or Recoverable",
            "Good Or Recoverable Shifter",
        }
    ),
}

#: expert_config keys the framework itself reads; allowed at run time even without a default.
FRAMEWORK_CONFIG_KEYS: frozenset[str] = frozenset({"max_iterations"})

_CATEGORY_OF: dict[str, str] = {name: category for category, names in INPUT_DATA_FILTERS.items() for name in names}

NOT_PREFIX = "NOT "

# Used as Dagster asset key, directory and file name: keep to what all three accept.
_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Payload names appear in database.txt as dbstore/<Name> and in file names.
_PAYLOAD_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class InvalidCalibrationSettingsError(CalibrationFrameworkError, ValueError):
    """A CalibrationSettings (or a set of them) that prompt processing cannot run."""

    def __init__(self, calibration: str, problem: str) -> None:
        self.calibration = calibration
        self.problem = problem
        super().__init__(f"CalibrationSettings {calibration!r}: {problem}")


class DependencyCycleError(InvalidCalibrationSettingsError):
    """``depends_on`` links form a cycle, so no calibration in it could ever run first."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        path = " -> ".join(self.cycle)
        super().__init__(
            self.cycle[0],
            f"depends_on forms a cycle {path}; remove one of these dependencies "
            "(a calibration cannot need constants that are computed from its own output)",
        )


class InvalidExpertConfigError(InvalidCalibrationSettingsError):
    """A run-time expert_config that cannot be merged over the calibration's defaults."""


def filter_category(filter_name: str) -> str | None:
    """The category ("Magnet", "Data Tag", ...) of a bare filter name, or None if unknown."""
    return _CATEGORY_OF.get(filter_name)


def parse_filter(entry: str) -> tuple[bool, str]:
    """Split an ``input_data_filters`` entry into ``(negated, filter_name)``: "NOT On" -> (True, "On")."""
    if entry.startswith(NOT_PREFIX):
        return True, entry[len(NOT_PREFIX) :].strip()
    return False, entry.strip()


def _is_json_serialisable(value: object) -> str | None:
    """None if ``value`` survives json.dumps unchanged in type, else a description of the problem."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        return str(error)
    return None


@dataclass(frozen=True, eq=False)
class CalibrationSettings:
    """Declaration of one prompt calibration, as a Belle II expert writes it in basf2.

    Example::

        beamspot = CalibrationSettings(
            name="BeamSpot",
            expert_username="jdoe",
            subsystem="beam",
            description="Interaction-region position and size from dimuon events",
            input_data_formats=["cdst"],
            input_data_names=["hlt_mumu_2trk"],
            input_data_filters={"hlt_mumu_2trk": ["mumu_tight_or_highm_calib", "physics", "Good", "On"]},
            expert_config={"max_iterations": 1, "min_events_per_run": 5000},
            produced_payloads=["BeamSpot"],
        )

    Settings are immutable and compared by identity; two objects with the same name are the
    same calibration only if :meth:`to_dict` agrees (see :func:`topological_order`).
    """

    name: str
    expert_username: str
    subsystem: str
    description: str
    input_data_formats: frozenset[str]
    input_data_names: frozenset[str]
    input_data_filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    depends_on: tuple[CalibrationSettings, ...] = ()
    expert_config: Mapping[str, Any] = field(default_factory=dict)
    produced_payloads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normalise containers (lists from expert code) before validating, then freeze them.
        name = self._check_name(self.name)
        self._check_text("expert_username", self.expert_username, "the username of the expert to contact")
        self._check_text("description", self.description, "what the calibration measures and from which data")
        if self.subsystem not in SUBSYSTEMS:
            self._fail(f"subsystem {self.subsystem!r} is unknown; use one of {sorted(SUBSYSTEMS)}")
        object.__setattr__(self, "input_data_formats", self._check_formats(self.input_data_formats))
        names = self._check_input_names(self.input_data_names)
        object.__setattr__(self, "input_data_names", names)
        object.__setattr__(self, "input_data_filters", self._check_filters(self.input_data_filters, names))
        object.__setattr__(self, "depends_on", self._check_depends_on(self.depends_on, name))
        object.__setattr__(self, "expert_config", self._check_expert_config(self.expert_config))
        object.__setattr__(self, "produced_payloads", self._check_payloads(self.produced_payloads))
        max_iterations_from_config(self.expert_config, calibration=name)  # fail at import, not at run time

    # -- validation helpers ---------------------------------------------------------------------

    def _fail(self, problem: str) -> None:
        raise InvalidCalibrationSettingsError(str(self.name), problem)

    def _check_name(self, name: object) -> str:
        if not isinstance(name, str) or not name:
            raise InvalidCalibrationSettingsError(repr(name), "name must be a non-empty string")
        if len(name) > MAX_NAME_LENGTH:
            self._fail(f"name is {len(name)} characters long; shorten it to at most {MAX_NAME_LENGTH}")
        if not _NAME_PATTERN.match(name):
            self._fail(
                "name may contain only letters, digits and '_' and must start with a letter, because it "
                f"becomes an asset key and a directory name; e.g. {re.sub(r'[^A-Za-z0-9_]', '_', name)!r}"
            )
        return name

    def _check_text(self, field_name: str, value: object, meaning: str) -> None:
        if not isinstance(value, str) or not value.strip():
            self._fail(f"{field_name} must be a non-empty string: {meaning}")

    def _check_formats(self, formats: Iterable[str] | None) -> frozenset[str]:
        if isinstance(formats, str):
            formats = [formats]  # a lone "cdst" is an easy slip; treat it as one format
        if not formats:
            self._fail(f"input_data_formats is empty; give at least one of {sorted(ALLOWED_DATA_FORMATS)}")
        assert formats is not None
        lowered = frozenset(str(fmt).lower() for fmt in formats)
        unknown = lowered - ALLOWED_DATA_FORMATS
        if unknown:
            self._fail(
                f"input_data_formats contains {sorted(unknown)}, which is not a Belle II data format; "
                f"use a subset of {sorted(ALLOWED_DATA_FORMATS)}"
            )
        return lowered

    def _check_input_names(self, names: Iterable[str] | None) -> frozenset[str]:
        if isinstance(names, str):
            names = [names]
        if not names:
            self._fail("input_data_names is empty; name at least one input (e.g. 'hlt_mumu_2trk')")
        assert names is not None
        checked = frozenset(names)
        for input_name in checked:
            if not isinstance(input_name, str) or not input_name.strip():
                self._fail(f"input_data_names contains {input_name!r}; every input name must be a non-empty string")
        return checked

    def _check_filters(
        self, filters: Mapping[str, Sequence[str]] | None, names: frozenset[str]
    ) -> Mapping[str, tuple[str, ...]]:
        if not filters:
            return {}  # basf2: no filters means no requirement on any input
        if not isinstance(filters, Mapping):
            self._fail("input_data_filters must be a dict {input name: [filter, ...]}")
        keys = set(filters)
        if keys != names:
            missing, extra = sorted(names - keys), sorted(keys - names)
            details = []
            if missing:
                details.append(f"no filters for inputs {missing}")
            if extra:
                details.append(f"filters for unknown inputs {extra}")
            self._fail(
                "input_data_filters keys must equal input_data_names: "
                + "; ".join(details)
                + " (use an empty list for an input without requirements)"
            )
        checked: dict[str, tuple[str, ...]] = {}
        for input_name in sorted(filters):
            entries = filters[input_name]
            if isinstance(entries, str):
                self._fail(
                    f"input_data_filters[{input_name!r}] is the string {entries!r}; "
                    f"it must be a list of filter names, e.g. [{entries!r}]"
                )
            required: set[str] = set()
            negated: set[str] = set()
            for entry in entries:
                if not isinstance(entry, str):
                    self._fail(f"input_data_filters[{input_name!r}] contains {entry!r}; filters are strings")
                is_not, filter_name = parse_filter(entry)
                if filter_name not in _CATEGORY_OF:
                    close = difflib.get_close_matches(filter_name, _CATEGORY_OF, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    self._fail(
                        f"input_data_filters[{input_name!r}] contains unknown filter {filter_name!r}.{hint} "
                        f"Known filters: {_known_filters_text()}; prefix with 'NOT ' to exclude."
                    )
                if is_not and filter_name == "Either":
                    self._fail(
                        f"input_data_filters[{input_name!r}] contains 'NOT Either', which excludes every run; "
                        "use 'NOT On' or 'NOT Off'"
                    )
                (negated if is_not else required).add(filter_name)
            contradictory = required & negated
            if contradictory:
                self._fail(
                    f"input_data_filters[{input_name!r}] both requires and excludes {sorted(contradictory)}; "
                    "no run could pass, remove one of them"
                )
            checked[input_name] = tuple(entries)
        return checked

    def _check_depends_on(
        self, depends_on: Iterable[CalibrationSettings] | None, name: str
    ) -> tuple[CalibrationSettings, ...]:
        if not depends_on:
            return ()
        if isinstance(depends_on, CalibrationSettings):
            depends_on = [depends_on]  # a single settings object instead of a list
        checked = tuple(depends_on)
        for upstream in checked:
            if not isinstance(upstream, CalibrationSettings):
                self._fail(
                    f"depends_on contains {upstream!r}; it must list the CalibrationSettings objects "
                    "of the upstream calibrations (import their settings), not names"
                )
            if upstream.name == name:
                raise DependencyCycleError([name, name])
        return checked

    def _check_expert_config(self, config: Mapping[str, Any] | None) -> Mapping[str, Any]:
        if not config:
            return {}
        if not isinstance(config, Mapping):
            self._fail(f"expert_config must be a dict of tunables, not {type(config).__name__}")
        problem = _is_json_serialisable(dict(config))
        if problem:
            self._fail(
                f"expert_config is not JSON-serialisable ({problem}); use only str, int, float, bool, "
                "None, lists and dicts with string keys (no datetime, numpy or set values)"
            )
        if any(not isinstance(key, str) for key in config):
            self._fail("expert_config keys must be strings (JSON object keys)")
        # A deep copy through JSON: the stored default cannot be mutated through the caller's dict.
        return json.loads(json.dumps(dict(config)))

    def _check_payloads(self, payloads: Iterable[str] | None) -> tuple[str, ...]:
        if isinstance(payloads, str):
            payloads = [payloads]
        checked = tuple(payloads or ())
        if not checked:
            self._fail("produced_payloads is empty; list the payload names this calibration writes (e.g. 'BeamSpot')")
        for payload in checked:
            if not isinstance(payload, str) or not _PAYLOAD_PATTERN.match(payload):
                self._fail(
                    f"produced_payloads contains {payload!r}; payload names are identifiers "
                    "(letters, digits, '_'), as they appear in database.txt as dbstore/<Name>"
                )
        duplicates = sorted({p for p in checked if checked.count(p) > 1})
        if duplicates:
            self._fail(f"produced_payloads lists {duplicates} more than once")
        return checked

    # -- views ----------------------------------------------------------------------------------

    @property
    def depends_on_names(self) -> tuple[str, ...]:
        return tuple(upstream.name for upstream in self.depends_on)

    @property
    def max_iterations(self) -> int:
        """``expert_config["max_iterations"]``, or DEFAULT_MAX_ITERATIONS when not set."""
        return max_iterations_from_config(self.expert_config, calibration=self.name)

    def filters_for(self, input_name: str) -> tuple[str, ...]:
        """The filters of one input; () when the settings declare no filters at all."""
        if input_name not in self.input_data_names:
            raise InvalidCalibrationSettingsError(
                self.name,
                f"has no input named {input_name!r}; its inputs are {sorted(self.input_data_names)}",
            )
        return tuple(self.input_data_filters.get(input_name, ()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, like basf2's ``json_dumps`` (dependencies by name)."""
        return {
            "name": self.name,
            "expert_username": self.expert_username,
            "subsystem": self.subsystem,
            "description": self.description,
            "input_data_formats": sorted(self.input_data_formats),
            "input_data_names": sorted(self.input_data_names),
            "input_data_filters": {key: list(value) for key, value in sorted(self.input_data_filters.items())},
            "depends_on": sorted(self.depends_on_names),
            "expert_config": json.loads(json.dumps(dict(self.expert_config))),
            "produced_payloads": list(self.produced_payloads),
        }

    def json_dumps(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def __repr__(self) -> str:
        # Dependencies by name: a repr must never recurse through the dependency graph.
        return f"CalibrationSettings(name={self.name!r}, subsystem={self.subsystem!r}, depends_on={list(self.depends_on_names)})"

    def __str__(self) -> str:
        lines = [f"CalibrationSettings(name='{self.name}'):"]
        for key, value in self.to_dict().items():
            if key != "name":
                lines.append(f"  {key}={value!r}")
        return "\n".join(lines)


def max_iterations_from_config(config: Mapping[str, Any], *, calibration: str) -> int:
    """How many algorithm passes a calibration may make: ``config["max_iterations"]`` (an int >= 1)
    or DEFAULT_MAX_ITERATIONS. Invalid values are errors, not silently replaced."""
    value = config.get("max_iterations", DEFAULT_MAX_ITERATIONS)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidExpertConfigError(
            calibration,
            f"expert_config max_iterations={value!r} is invalid; it must be an integer >= 1 "
            "(1 means a single pass, no iteration)",
        )
    return value


def _known_filters_text() -> str:
    return "; ".join(f"{category}: {sorted(names)}" for category, names in INPUT_DATA_FILTERS.items())


def topological_order(settings_list: Iterable[CalibrationSettings]) -> list[CalibrationSettings]:
    """All calibrations reachable from ``settings_list`` (dependencies included), upstream first.

    Raises DependencyCycleError naming the cycle, and InvalidCalibrationSettingsError when two
    different settings share a name (names are the calibrations' identity in the platform).
    Among calibrations whose dependencies are satisfied, the order is alphabetical, so the plan
    is the same on every machine.
    """
    by_name: dict[str, CalibrationSettings] = {}
    stack = list(settings_list)
    while stack:
        settings = stack.pop()
        known = by_name.get(settings.name)
        if known is None:
            by_name[settings.name] = settings
            stack.extend(settings.depends_on)
        elif known is not settings and known.to_dict() != settings.to_dict():
            raise InvalidCalibrationSettingsError(
                settings.name,
                "two different calibrations use this name; names must be unique, rename one of them",
            )

    # Nodes and edges in name order, so the order and a reported cycle are the same everywhere.
    sorter = TopologicalSorter({name: sorted(by_name[name].depends_on_names) for name in sorted(by_name)})
    try:
        sorter.prepare()
    except CycleError as error:
        # graphlib lists the cycle against the depends_on direction: reversed, it reads "A -> needs C ...".
        raise DependencyCycleError(list(reversed(error.args[1]))) from None
    order: list[CalibrationSettings] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(by_name[name] for name in ready)
        sorter.done(*ready)
    return order


def merge_expert_config(
    settings: CalibrationSettings,
    runtime: Mapping[str, Any] | None,
    *,
    allow_new_keys: bool = False,
) -> dict[str, Any]:
    """The expert_config for one run: ``runtime`` values over the settings' defaults.

    As in b2caf-prompt-run, a run-time key replaces the default value of the same key whole
    (a list of payload boundaries is replaced, not appended to). Nested dicts are merged key by
    key, so overriding ``{"backend_args": {"queue": "l"}}`` keeps the other backend_args.

    Keys absent from the defaults are refused unless ``allow_new_keys``: a misspelt key would
    otherwise be silently ignored and the calibration would run with the default.
    """
    runtime = dict(runtime or {})
    problem = _is_json_serialisable(runtime)
    if problem:
        raise InvalidExpertConfigError(
            settings.name, f"run-time expert_config is not JSON-serialisable ({problem})"
        )
    merged = json.loads(json.dumps(dict(settings.expert_config)))
    _merge_into(merged, runtime, settings, allow_new_keys, prefix="")
    return merged


def _merge_into(
    target: dict[str, Any],
    overrides: Mapping[str, Any],
    settings: CalibrationSettings,
    allow_new_keys: bool,
    prefix: str,
) -> None:
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in target:
            # Framework tunables (max_iterations) are valid for every calibration.
            if not allow_new_keys and not (prefix == "" and key in FRAMEWORK_CONFIG_KEYS):
                close = difflib.get_close_matches(key, list(target), n=1)
                hint = f" Did you mean {prefix}{close[0]!r}?" if close else ""
                raise InvalidExpertConfigError(
                    settings.name,
                    f"run-time expert_config sets {path!r}, which is not among the defaults "
                    f"{sorted(target)}.{hint} Add it to the settings' expert_config if it is a new tunable.",
                )
            target[key] = json.loads(json.dumps(value))
        elif isinstance(target[key], dict) and isinstance(value, Mapping):
            _merge_into(target[key], value, settings, allow_new_keys, prefix=f"{path}.")
        else:
            target[key] = json.loads(json.dumps(value))
