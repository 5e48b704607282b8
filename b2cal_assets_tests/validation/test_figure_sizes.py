"""Report figures are readable at full size: the review pages show the full-resolution PNGs
(issue 14 asks naturalWidth >= 800 px for every plot), so no figure is rendered narrower."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from b2cal_assets.conditions.iov import IoV
from b2cal_assets.validation.figures import FULL_DPI, fig_constants_vs_run
from b2cal_assets.validation.rules import CalibrationInputs, PayloadRecord
from b2cal_assets_tests.conditions.helpers import make_constants

MIN_WIDTH_PX = 800


def _width(fig) -> int:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FULL_DPI)
    return Image.open(io.BytesIO(buffer.getvalue())).size[0]


@pytest.mark.parametrize("channels", [3, 8736])  # one panel per channel; one median panel (many channels)
def test_constants_vs_run_is_at_least_800_px_wide(channels: int) -> None:
    payloads = tuple(PayloadRecord("Gains", 1 + i, IoV.parse(iov), (f"e0026.r{i + 1:05d}",), make_constants(channels, seed=i))
                     for i, iov in enumerate(("26,1,26,1", "26,2,-1,-1")))
    inputs = CalibrationInputs("Gains", "e0026.b0001", "2c", IoV.parse("26,1,-1,-1"), ("Gains",), payloads)
    assert _width(fig_constants_vs_run(inputs, last_run=2)) >= MIN_WIDTH_PX
