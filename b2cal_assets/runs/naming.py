"""Run keys and the Belle II file layout of cDST skims.

Run key: ``e0026.r00012`` (the Dagster partition key of a run).
File: ``e0026/4S/r00012/skim/hlt_mumu_2trk/cdst/sub00/cdst.physics.0026.00012.HLT1.f00000.root``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

STREAMS = ("hlt_mumu_2trk", "hlt_bhabha", "hlt_hadron")
BEAM_ENERGY_FOLDERS = {"4S": "4S", "Continuum": "Continuum", "Scan": "Scan", "4S_offres": "4S_offres", "No Beam": "NoBeam"}
RECORD_NAME_TEMPLATE = "runinfo.{exp:04d}.{run:05d}.json"

_RUN_KEY = re.compile(r"^e(\d{4})\.r(\d{5})$")


class InvalidRunKeyError(ValueError):
    """A string is not a run key of the form e0026.r00012."""


@dataclass(frozen=True, order=True)
class RunKey:
    """Experiment and run number of one run."""

    exp: int
    run: int

    def __post_init__(self) -> None:
        if not (0 <= self.exp <= 9999 and 0 <= self.run <= 99999):
            raise InvalidRunKeyError(f"experiment {self.exp} / run {self.run} outside 0-9999 / 0-99999")

    def __str__(self) -> str:
        return f"e{self.exp:04d}.r{self.run:05d}"

    @classmethod
    def parse(cls, text: str) -> RunKey:
        match = _RUN_KEY.match(text)
        if not match:
            raise InvalidRunKeyError(f"{text!r} is not a run key like e0026.r00012")
        return cls(int(match.group(1)), int(match.group(2)))


def run_directory(key: RunKey, beam_energy: str) -> PurePosixPath:
    """Directory of a run below the incoming root, e.g. ``e0026/4S/r00012``."""
    folder = BEAM_ENERGY_FOLDERS.get(beam_energy, beam_energy.replace(" ", ""))
    return PurePosixPath(f"e{key.exp:04d}") / folder / f"r{key.run:05d}"


def skim_file_path(
    key: RunKey, beam_energy: str, stream: str, file_index: int, *, fmt: str = "cdst", hlt_unit: int = 1, sub: int = 0
) -> PurePosixPath:
    """Relative path of one skim file, in the real Belle II naming."""
    name = f"{fmt}.physics.{key.exp:04d}.{key.run:05d}.HLT{hlt_unit}.f{file_index:05d}.root"
    return run_directory(key, beam_energy) / "skim" / stream / fmt / f"sub{sub:02d}" / name


def record_path(key: RunKey, beam_energy: str) -> PurePosixPath:
    """Relative path of the run's completion record (written last, beside the data)."""
    return run_directory(key, beam_energy) / RECORD_NAME_TEMPLATE.format(exp=key.exp, run=key.run)
