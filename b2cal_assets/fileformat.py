"""The cDST skim file format: one TTree per file, what ingestion verifies and calibrations read.

Written by the synthetic generator today and by the real data flow in production, read by
``runs/verification.py`` and every calibration collector; so it lives here, not in the
generator. Branch names and dtypes are the contract: a reader may rely on every branch of
:data:`EXPECTED_BRANCHES`, a writer must write them all with these dtypes. Jagged branches are
``trk_*`` (per track, counted by ``ntrk``), ``ecl_*`` (per ECL hit, ``necl``) and ``cdc_*``
(per CDC hit, ``ncdc``). Units: cm, GeV, ns, rad; times of an event relative to its trigger.
Pure Python.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from types import MappingProxyType

import numpy as np

TREE_NAME = "tree"

# Per event. ``time_s`` is the event time in seconds since the start of its run (the luminous
# region moves within a run); ``evt_t0``/``evt_t0_err`` is the measured event time zero (ns)
# relative to the trigger (the bunch crossing the trigger picked jitters by a few ns).
EVENT_BRANCHES = MappingProxyType(
    {
        "exp": np.int32,
        "run": np.int32,
        "event": np.int64,
        "time_s": np.float64,
        "evt_t0": np.float32,
        "evt_t0_err": np.float32,
        # Two-track vertex fitted from the tracks (cm) and the square roots of its covariance diagonal.
        "vtx_x": np.float64,
        "vtx_y": np.float64,
        "vtx_z": np.float64,
        "vtx_ex": np.float32,
        "vtx_ey": np.float32,
        "vtx_ez": np.float32,
    }
)
# Per track: helix at the point of closest approach to the z axis, with its fit covariance
# (errors of d0 and z0 and their correlation; p_err the momentum error).
TRACK_BRANCHES = MappingProxyType(
    {
        "trk_charge": np.int8,
        "trk_p": np.float32,
        "trk_p_err": np.float32,
        "trk_phi0": np.float32,
        "trk_tanlambda": np.float32,
        "trk_d0": np.float64,
        "trk_z0": np.float64,
        "trk_d0_err": np.float32,
        "trk_z0_err": np.float32,
        "trk_d0z0_corr": np.float32,
    }
)
# Per ECL hit (crystal id 0-8735, energy GeV, time ns, direction of the crystal centre).
ECL_BRANCHES = MappingProxyType(
    {"ecl_cell": np.int16, "ecl_energy": np.float32, "ecl_time": np.float32, "ecl_theta": np.float32, "ecl_phi": np.float32}
)
# Per CDC hit (wire id 0-14335, layer 0-55, measured time ns, index of the track in the event
# it was assigned to by pattern recognition, -1 for none).
CDC_BRANCHES = MappingProxyType({"cdc_wire": np.int16, "cdc_layer": np.uint8, "cdc_time": np.float32, "cdc_track": np.int16})
COUNT_BRANCHES = ("ntrk", "necl", "ncdc")

EXPECTED_BRANCHES: tuple[str, ...] = tuple(EVENT_BRANCHES) + COUNT_BRANCHES + tuple(TRACK_BRANCHES) + tuple(ECL_BRANCHES) + tuple(CDC_BRANCHES)


def adler32_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """adler32 of a file as 8 hex digits (the grid storage convention)."""
    value = 1
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"
