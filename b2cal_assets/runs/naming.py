"""The Belle II file layout of cDST skims.

A run is a ``run_identity.ExpRun``; its text form ``e0026.r00012`` is the Dagster partition key of a run.
File: ``e0026/4S/r00012/skim/hlt_mumu_2trk/cdst/sub00/cdst.physics.0026.00012.HLT1.f00000.root``.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from b2cal_assets.run_identity import ExpRun

STREAMS = ("hlt_mumu_2trk", "hlt_bhabha", "hlt_hadron")
BEAM_ENERGY_FOLDERS = {"4S": "4S", "Continuum": "Continuum", "Scan": "Scan", "4S_offres": "4S_offres", "No Beam": "NoBeam"}
RECORD_NAME_TEMPLATE = "runinfo.{exp:04d}.{run:05d}.json"


def run_directory(key: ExpRun, beam_energy: str) -> PurePosixPath:
    """Directory of a run below the incoming root, e.g. ``e0026/4S/r00012``."""
    folder = BEAM_ENERGY_FOLDERS.get(beam_energy, beam_energy.replace(" ", ""))
    return PurePosixPath(f"e{key.exp:04d}") / folder / f"r{key.run:05d}"


def skim_file_path(
    key: ExpRun, beam_energy: str, stream: str, file_index: int, *, fmt: str = "cdst", hlt_unit: int = 1, sub: int = 0
) -> PurePosixPath:
    """Relative path of one skim file, in the real Belle II naming."""
    name = f"{fmt}.physics.{key.exp:04d}.{key.run:05d}.HLT{hlt_unit}.f{file_index:05d}.root"
    return run_directory(key, beam_energy) / "skim" / stream / fmt / f"sub{sub:02d}" / name


def record_path(key: ExpRun, beam_energy: str) -> PurePosixPath:
    """Relative path of the run's completion record (written last, beside the data)."""
    return run_directory(key, beam_energy) / RECORD_NAME_TEMPLATE.format(exp=key.exp, run=key.run)
