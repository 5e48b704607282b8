"""The contract between one calibration module and the platform (Dagster, demo, tests).

A calibration module defines a module-level ``CALIBRATION = Calibration(...)`` holding:

* ``settings``: its :class:`CalibrationSettings` (what the expert declares);
* ``strategy``: a factory of the IoV strategy (SingleIOV, SequentialRunByRun, ...);
* ``collect(run, files, upstream, expert_config) -> CollectorOutput``: the map step over the
  files of one run (``files`` = stream name -> that run's files of the stream). It streams
  file by file and returns histograms and sums, never events;
* ``merge(outputs) -> CollectorOutput``: adds collector outputs of several runs;
* ``make_algorithm(collected, upstream, expert_config) -> Algorithm``: the reduce step; the
  algorithm merges ``collected[run]`` for the runs the strategy hands it;
* ``truth_pulls(constants, truth_dir, runs) -> pulls``: (fitted - true) / sigma of every good
  constant, against the synthetic generator's truth (demo and tests only);
* ``validation``: its :class:`ValidationLimits` (what blocks a bucket; see
  ``validation/settings.py`` for the keys), declared in the module, never defaulted silently;
* ``figures(payloads, last_run) -> [(name, title, Figure)]``: the report figures only this
  calibration has (crystal map, t0 per layer, beam-spot trends), besides the common ones.

``upstream`` maps payload name -> :class:`PayloadConstants` of the calibrations listed in
``depends_on``, valid for the run (collector) or bucket (algorithm). Payload constants are
:class:`PayloadConstants` (value, error, channel, status, attributes): what the conditions
database stores directly.

:class:`CollectorOutput` is deliberately generic: additive numpy arrays (histograms, sums), a
JSON ``layout`` that must agree between outputs being merged (binning, cuts), and the events
each run contributed. One output is one ``.npz`` file.

Pure Python, no Dagster import.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from b2cal_assets.calibration.framework.errors import CalibrationPluginError
from b2cal_assets.calibration.framework.results import Algorithm
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.calibration.framework.strategies import IoVStrategy
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import STATUS_GOOD, PayloadConstants
from b2cal_assets.fileformat import TREE_NAME

# awkward and uproot (half a second to import) are imported by the functions reading files:
# every run worker and step process imports this module, and only collectors read files.
if TYPE_CHECKING:
    import awkward as ak

__all__ = [
    "Calibration",
    "CalibrationInputError",
    "CalibrationPluginError",
    "CollectorOutput",
    "CollectorOutputError",
    "TruthNotFoundError",
    "ValidationLimits",
    "iterate_files",
    "jagged",
    "pull_summary",
    "truth_folder",
]

_META_KEY = "__meta__"
_ARRAY_PREFIX = "array/"
_FORMAT = "b2cal.collector-output/1"


class CollectorOutputError(CalibrationPluginError, ValueError):
    """Collector outputs that cannot be merged, saved or loaded (which file, which field)."""


class CalibrationInputError(CalibrationPluginError, ValueError):
    """A collector or algorithm got input it cannot use (missing stream, missing upstream payload, bad config)."""


class TruthNotFoundError(CalibrationPluginError, FileNotFoundError):
    """The generator's truth files are not where summarise_against_truth was told to look."""



@dataclass
class CollectorOutput:
    """Histograms and sums of one collector over some runs: small, additive, one .npz file.

    ``arrays`` are summed by :meth:`merge`, so they must be extensive (counts, sums of x, of x*y).
    ``layout`` is JSON describing how they were filled (binning, cuts); outputs merge only when
    their layouts are equal, which stops a histogram with other bins being added silently.
    ``runs`` maps run label -> events that entered the collector from that run.
    """

    calibration: str
    arrays: dict[str, np.ndarray]
    layout: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return int(sum(self.runs.values()))

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    # -- merging ---------------------------------------------------------------------------------

    @classmethod
    def merge(cls, outputs: Sequence[CollectorOutput]) -> CollectorOutput:
        """Sum the arrays of ``outputs`` (one calibration, one layout, distinct runs)."""
        if not outputs:
            raise CollectorOutputError("nothing to merge: give at least one collector output")
        first = outputs[0]
        arrays = {key: np.array(value, copy=True) for key, value in first.arrays.items()}
        runs = dict(first.runs)
        for other in outputs[1:]:
            if other.calibration != first.calibration:
                raise CollectorOutputError(
                    f"cannot merge collector outputs of {first.calibration!r} and {other.calibration!r}; "
                    "merge outputs of one calibration only"
                )
            if other.layout != first.layout:
                changed = sorted(k for k in set(first.layout) | set(other.layout) if first.layout.get(k) != other.layout.get(k))
                raise CollectorOutputError(
                    f"{first.calibration}: collector outputs were filled with different layouts "
                    f"(differing keys {changed}); re-collect the runs with one expert_config"
                )
            if set(other.arrays) != set(arrays):
                raise CollectorOutputError(
                    f"{first.calibration}: collector outputs hold different arrays "
                    f"({sorted(arrays)} vs {sorted(other.arrays)}); re-collect with one code version"
                )
            twice = sorted(set(runs) & set(other.runs))
            if twice:
                # Adding a run twice would double its weight without any visible sign.
                raise CollectorOutputError(
                    f"{first.calibration}: runs {twice} appear in more than one collector output; "
                    "each run must be merged once"
                )
            for key, value in other.arrays.items():
                if value.shape != arrays[key].shape:
                    raise CollectorOutputError(
                        f"{first.calibration}: array {key!r} has shape {value.shape} in one output and "
                        f"{arrays[key].shape} in another"
                    )
                arrays[key] += value
            runs.update(other.runs)
        return cls(first.calibration, arrays, dict(first.layout), dict(sorted(runs.items())))

    # -- files -----------------------------------------------------------------------------------

    def save(self, path: Path | str) -> Path:
        """Write to ``path`` (.npz, compressed: per-wire histograms are mostly zeros).

        The archive np.savez_compressed writes, at deflate level 1 instead of its 6: a CDC run's
        output (14336 x 160 int32) is written in 100 ms instead of 340 ms for 1.26 MB instead
        of 0.92 MB; saving was 15 % of the collectors' time. np.load reads it unchanged.
        """
        path = Path(path)
        meta = {"format": _FORMAT, "calibration": self.calibration, "layout": self.layout, "runs": self.runs}
        payload = {f"{_ARRAY_PREFIX}{key}": np.asarray(value) for key, value in self.arrays.items()}
        payload[_META_KEY] = np.array(json.dumps(meta, sort_keys=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, value in payload.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)
        return path

    @classmethod
    def load(cls, path: Path | str) -> CollectorOutput:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as stored:
                meta = json.loads(str(stored[_META_KEY]))
                arrays = {key[len(_ARRAY_PREFIX) :]: stored[key] for key in stored.files if key.startswith(_ARRAY_PREFIX)}
        except (OSError, ValueError, KeyError) as error:
            raise CollectorOutputError(
                f"{path} is not a readable collector output ({error}); re-run the collector of that run"
            ) from error
        if meta.get("format") != _FORMAT:
            raise CollectorOutputError(f"{path}: format {meta.get('format')!r}, expected {_FORMAT!r}; re-run the collector")
        return cls(meta["calibration"], arrays, meta["layout"], {k: int(v) for k, v in meta["runs"].items()})


# ---------------------------------------------------------------------------------------------
# The calibration record
# ---------------------------------------------------------------------------------------------

Constants = PayloadConstants
CollectFunction = Callable[[ExpRun, Mapping[str, Sequence[Path]], Mapping[str, PayloadConstants], Mapping[str, Any]], CollectorOutput]
MakeAlgorithm = Callable[[Mapping[ExpRun, CollectorOutput], Mapping[str, PayloadConstants], Mapping[str, Any]], Algorithm]
TruthPulls = Callable[[PayloadConstants | Mapping[str, PayloadConstants], Path, Sequence[ExpRun]], np.ndarray]


@dataclass(frozen=True)
class ValidationLimits:
    """A calibration's validation limits (keys: ``validation/settings.py``) and what they check."""

    description: str
    limits: Mapping[str, Any]


Figures = Callable[[Sequence[Any], int], list[tuple[str, str, Any]]]


def no_figures(payloads: Sequence[Any], last_run: int) -> list[tuple[str, str, Any]]:
    """For a calibration without figures of its own (the common ones are always drawn)."""
    return []


@dataclass(frozen=True)
class Calibration:
    """One prompt calibration: settings, IoV strategy, collector, merge, algorithm, validation
    limits and report figures (see module doc)."""

    settings: CalibrationSettings
    strategy: Callable[[], IoVStrategy]
    collect: CollectFunction
    merge: Callable[[Sequence[CollectorOutput]], CollectorOutput]
    make_algorithm: MakeAlgorithm
    truth_pulls: TruthPulls
    validation: ValidationLimits
    figures: Figures = no_figures

    @property
    def name(self) -> str:
        return self.settings.name

    def summarise_against_truth(
        self,
        constants: PayloadConstants | Mapping[str, PayloadConstants],
        truth_dir: Path,
        runs: Sequence[ExpRun],
    ) -> dict[str, float]:
        """Pull summary of one payload computed from ``runs`` (see :func:`pull_summary`)."""
        return pull_summary(self.truth_pulls(constants, Path(truth_dir), runs))


def pull_summary(pulls: np.ndarray) -> dict[str, float]:
    """n, fraction with |pull| < 3, pull mean and width (standard deviation) with their errors."""
    pulls = np.asarray(pulls, dtype=float)
    pulls = pulls[np.isfinite(pulls)]
    n = int(pulls.size)
    if n == 0:
        return {"n": 0, "fraction_within_3": math.nan, "mean": math.nan, "mean_error": math.nan, "width": math.nan, "width_error": math.nan}
    width = float(pulls.std(ddof=1)) if n > 1 else math.nan
    return {
        "n": n,
        "fraction_within_3": float(np.mean(np.abs(pulls) < 3.0)),
        "mean": float(pulls.mean()),
        "mean_error": width / math.sqrt(n) if n > 1 else math.nan,
        "width": width,
        "width_error": width / math.sqrt(2.0 * (n - 1)) if n > 1 else math.nan,
    }


def truth_folder(truth_dir: Path, exp: int) -> Path:
    """Accept the generator's output root, its ``truth/`` folder or ``truth/e0026`` itself."""
    truth_dir = Path(truth_dir)
    for candidate in (truth_dir, truth_dir / f"e{exp:04d}", truth_dir / "truth" / f"e{exp:04d}"):
        if (candidate / "runs.json").is_file():
            return candidate
    raise TruthNotFoundError(
        f"no generator truth for experiment {exp} under {truth_dir} (looked for runs.json in it, in "
        f"e{exp:04d}/ and truth/e{exp:04d}/); pass the directory given to generator.generate"
    )


def channel_truth_pulls(
    constants: PayloadConstants | Mapping[str, PayloadConstants],
    payload_name: str,
    truth_dir: Path,
    exp: int,
    truth_file: str,
    truth_column: int,
) -> np.ndarray:
    """(value - true value) / error of the channels with status good, for per-channel payloads.

    The truth is one column of the generator's per-channel table (``ecl_crystals.csv``,
    ``cdc_wires.csv``), indexed by channel id.
    """
    payload = payload_of(constants, payload_name)
    good = payload.status == STATUS_GOOD
    table = np.loadtxt(truth_folder(truth_dir, exp) / truth_file, delimiter=",", skiprows=1)
    truth = table[:, truth_column][payload.channel[good]]
    return (payload.value[good] - truth) / payload.error[good]


def payload_of(constants: PayloadConstants | Mapping[str, PayloadConstants], name: str) -> PayloadConstants:
    """The payload ``name`` from an outcome's payload mapping, or ``constants`` itself."""
    if isinstance(constants, PayloadConstants):
        return constants
    if name not in constants:
        raise CalibrationInputError(f"payload {name!r} missing; got {sorted(constants)}")
    return constants[name]


def required_upstream(upstream: Mapping[str, PayloadConstants], name: str, calibration: str) -> PayloadConstants:
    if name not in upstream:
        raise CalibrationInputError(
            f"{calibration} needs the upstream payload {name!r} (depends_on), but got only {sorted(upstream)}; "
            "run the upstream calibration of this bucket first"
        )
    return upstream[name]


def files_of(files: Mapping[str, Sequence[Path]], streams: Sequence[str], calibration: str) -> list[Path]:
    """The files of ``streams`` in a stable order; a missing stream key is an error, an empty list is not."""
    missing = [stream for stream in streams if stream not in files]
    if missing:
        raise CalibrationInputError(
            f"{calibration}: no file list for input streams {missing} (got {sorted(files)}); "
            "pass every input_data_names stream, with [] when a run has no file of it"
        )
    return [Path(path) for stream in streams for path in sorted(files[stream])]


def iterate_files(paths: Sequence[Path], branches: Sequence[str], step_entries: int = 200_000) -> Iterator[ak.Array]:
    """Batches of ``branches`` (awkward arrays) of at most ``step_entries`` events, file after
    file: memory is bounded by one batch, whatever the bucket size."""
    import uproot

    for path in paths:
        with uproot.open(path) as root_file:
            try:
                tree = root_file[TREE_NAME]
            except KeyError as error:
                raise CalibrationInputError(f"{path} has no TTree {TREE_NAME!r}; is it a cDST skim file?") from error
            # Explicit entry ranges rather than TTree.iterate: same reads, less per-call overhead.
            for start in range(0, tree.num_entries, step_entries):
                yield tree.arrays(list(branches), entry_start=start, entry_stop=min(start + step_entries, tree.num_entries), library="ak")


def flat(array: ak.Array, dtype: Any = None) -> np.ndarray:
    """A jagged branch as one flat numpy array (no copy when already contiguous)."""
    import awkward as ak

    layout = array.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        # uproot's usual layout: a view of its content buffer, without ak.flatten's per-call overhead.
        offsets = layout.offsets.data
        values = np.asarray(layout.content.data)[offsets[0] : offsets[-1]]
    else:
        values = ak.to_numpy(ak.flatten(array, axis=None))
    return values if dtype is None else values.astype(dtype, copy=False)


def jagged(array: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """A jagged branch as numpy ``(offsets, content)``: event i holds ``content[offsets[i]:offsets[i + 1]]``.

    For uproot's usual ListOffsetArray these are views of its buffers: selecting events with
    numpy index arithmetic on them costs far less than awkward's per-call overhead on a batch.
    """
    import awkward as ak

    layout = array.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        return np.asarray(layout.offsets.data), np.asarray(layout.content.data)
    # Any other layout (ListArray, a sliced batch): let awkward pack it, then rebuild the offsets.
    counts = ak.to_numpy(ak.num(array, axis=1)).astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, flat(array)


def runs_weights(attributes: Mapping[str, Any], runs: Sequence[ExpRun]) -> np.ndarray:
    """Events per run recorded by the algorithm in ``attributes["runs"]``, in the order of ``runs``.

    Used to build the truth of a payload computed from several merged runs (an event-weighted
    average); runs not recorded get weight 0, and equal weights are used when none is recorded.
    """
    recorded = attributes.get("runs", {}) if attributes else {}
    weights = np.array([float(recorded.get(run.format(), 0)) for run in runs])
    if weights.sum() <= 0:
        weights = np.ones(len(runs))
    return weights / weights.sum()


class MergingAlgorithm:
    """An Algorithm that merges the collector outputs of the runs it is given, then calibrates.

    ``calibrate(merged, runs)`` returns the AlgorithmOutcome; the merge is what CAF's
    algorithm does when it reads the collector output of several runs. ``boundaries()``, when
    given, names runs that must start a new payload (a beam-spot jump): the sequential
    strategies never merge runs across them.
    """

    def __init__(
        self,
        name: str,
        collected: Mapping[ExpRun, CollectorOutput],
        calibrate: Callable[[CollectorOutput, Sequence[ExpRun]], Any],
        boundaries: Callable[[], Sequence[ExpRun]] | None = None,
    ) -> None:
        self.name = name
        self._collected = dict(collected)
        self._calibrate = calibrate
        self._boundaries = boundaries

    def boundaries(self) -> list[ExpRun]:
        """Runs that must start a new payload (none unless the calibration says so)."""
        return sorted(self._boundaries()) if self._boundaries else []

    def execute(self, runs: Sequence[ExpRun], iteration: int, previous: Any) -> Any:
        missing = [run.format() for run in runs if run not in self._collected]
        if missing:
            raise CalibrationInputError(
                f"{self.name}: no collector output for runs {missing}; collect them first or leave them out of the bucket"
            )
        merged = CollectorOutput.merge([self._collected[run] for run in runs])
        return self._calibrate(merged, runs)
