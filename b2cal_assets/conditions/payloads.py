"""Payload files: calibration constants with their uncertainties, as ROOT files written by uproot.

Layout of one payload file (readable with ROOT or uproot, no b2cal needed):

* TTree ``constants``, one entry per channel, branches
  ``channel`` (int32), ``value`` (float64), ``error`` (float64), ``status`` (int32; 0 = good,
  any other value is a calibration-specific flag such as dead or hot, see ``STATUS_*``).
* TObjString ``metadata``: JSON with the payload name, revision, the IoV it was produced for,
  when and by whom, and the calibration's free-form ``attributes`` (units, fit settings...).

Flagged channels keep their row: a dead crystal has ``status != 0`` and may have a NaN value,
so the channel numbering of the detector is never silently compressed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from b2cal_assets.conditions.errors import InvalidPayloadError

# uproot (with awkward, half a second) is imported by the functions writing and reading payload
# files: every process loading the code location imports this module, few of them touch a file.

__all__ = [
    "PAYLOAD_NAME_PATTERN",
    "STATUS_DEAD",
    "STATUS_GOOD",
    "STATUS_HOT",
    "STATUS_NOT_ENOUGH_DATA",
    "PayloadConstants",
    "file_md5",
    "read_payload_file",
    "validate_payload_name",
    "write_payload_file",
]

# basf2 payload names are C++-identifier-like (BeamSpot, ECLCrystalEnergy); they also become file
# names and the first field of space-separated database.txt lines, so nothing else is allowed.
PAYLOAD_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")

STATUS_GOOD = 0
STATUS_DEAD = 1
STATUS_HOT = 2
STATUS_NOT_ENOUGH_DATA = 3

CONSTANTS_TREE = "constants"
METADATA_KEY = "metadata"


def validate_payload_name(name: str) -> None:
    """Raise InvalidPayloadError unless ``name`` is a usable basf2 payload name."""
    if not isinstance(name, str) or not PAYLOAD_NAME_PATTERN.match(name):
        raise InvalidPayloadError(
            f"payload name {name!r} is invalid: use a letter followed by up to 127 letters, digits or "
            "underscores, like basf2 payload classes (BeamSpot, ECLCrystalEnergy)"
        )


@dataclass(frozen=True, eq=False)
class PayloadConstants:
    """One payload's constants: per-channel value, uncertainty, channel number and status flag.

    ``channel`` defaults to 0..n-1 and ``status`` to all-good. ``attributes`` is small
    JSON-serialisable metadata (units, fit ranges) stored alongside the arrays.
    """

    value: np.ndarray
    error: np.ndarray
    channel: np.ndarray | None = None
    status: np.ndarray | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        value = np.asarray(self.value, dtype=np.float64)
        error = np.asarray(self.error, dtype=np.float64)
        if value.ndim != 1 or error.shape != value.shape:
            raise InvalidPayloadError(
                f"payload constants need 1-D value and error arrays of equal length, got shapes "
                f"{value.shape} and {error.shape}; flatten matrices (e.g. a 3x3 covariance) into channels"
            )
        channel = np.arange(value.size, dtype=np.int32) if self.channel is None else np.asarray(self.channel)
        status = np.zeros(value.size, dtype=np.int32) if self.status is None else np.asarray(self.status)
        for label, array in (("channel", channel), ("status", status)):
            if array.shape != value.shape:
                raise InvalidPayloadError(
                    f"payload constants: {label} has shape {array.shape} but value has {value.shape}; "
                    "give one entry per channel"
                )
            if array.size and not np.issubdtype(array.dtype, np.integer):
                raise InvalidPayloadError(f"payload constants: {label} must be integers, got dtype {array.dtype}")
        if np.any(error < 0):
            bad = int(channel[np.argmax(error < 0)])
            raise InvalidPayloadError(
                f"payload constants: channel {bad} has a negative uncertainty; uncertainties are >= 0 "
                "(use NaN with a non-zero status for channels that could not be calibrated)"
            )
        if np.unique(channel).size != channel.size:
            raise InvalidPayloadError("payload constants: channel numbers must be unique")
        try:
            json.dumps(dict(self.attributes))
        except (TypeError, ValueError) as error_:
            raise InvalidPayloadError(
                f"payload constants: attributes must be JSON-serialisable ({error_})"
            ) from error_
        # Normalise dtypes once so files and comparisons are predictable (frozen: use object.__setattr__).
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "channel", channel.astype(np.int32))
        object.__setattr__(self, "status", status.astype(np.int32))
        object.__setattr__(self, "attributes", dict(self.attributes))

    def __len__(self) -> int:
        return int(self.value.size)

    def equals(self, other: PayloadConstants) -> bool:
        """Same channels, values, errors (NaN equal to NaN), statuses and attributes."""
        return (
            np.array_equal(self.channel, other.channel)
            and np.array_equal(self.status, other.status)
            and np.array_equal(self.value, other.value, equal_nan=True)
            and np.array_equal(self.error, other.error, equal_nan=True)
            and dict(self.attributes) == dict(other.attributes)
        )


def write_payload_file(path: Path, constants: PayloadConstants, metadata: Mapping[str, Any]) -> None:
    """Write ``constants`` and ``metadata`` (JSON-serialisable) to a new ROOT file at ``path``.

    The file is flushed to disk (fsync) before returning, so a rename after this call never
    publishes a half-written file.
    """
    import uproot

    full_metadata = {**metadata, "attributes": dict(constants.attributes)}
    with uproot.recreate(path) as root_file:
        # mktree, not dict assignment: uproot 5.7 writes an RNTuple for dicts, older readers want a TTree.
        tree = root_file.mktree(
            CONSTANTS_TREE,
            {"channel": np.int32, "value": np.float64, "error": np.float64, "status": np.int32},
            title="calibration constants: value +- error per channel, status 0 = good",
        )
        tree.extend(
            {"channel": constants.channel, "value": constants.value, "error": constants.error, "status": constants.status}
        )
        root_file[METADATA_KEY] = json.dumps(full_metadata, sort_keys=True)
    with open(path, "rb") as written:
        os.fsync(written.fileno())


def read_payload_file(path: Path) -> tuple[PayloadConstants, dict[str, Any]]:
    """Read a payload file written by write_payload_file: the constants and the metadata dict."""
    import uproot

    with uproot.open(path) as root_file:
        arrays = root_file[CONSTANTS_TREE].arrays(["channel", "value", "error", "status"], library="np")
        metadata = json.loads(str(root_file[METADATA_KEY]))
    constants = PayloadConstants(
        value=arrays["value"],
        error=arrays["error"],
        channel=arrays["channel"],
        status=arrays["status"],
        attributes=metadata.get("attributes", {}),
    )
    return constants, metadata


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in chunks (payloads of 14336 channels are small, but stay general)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
