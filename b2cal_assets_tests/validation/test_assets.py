"""The validation report asset on a calibrated deployment (SQLite and PostgreSQL): what the
reviewer opens is stored in the instance and points at files that exist."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from b2cal_assets.validation.assets import report_key
from b2cal_assets_tests.validation.conftest import Deployment, deployments


def _path(file_url: str) -> Path:
    return Path(unquote(urlparse(file_url).path))


@pytest.mark.parametrize("deployment_fixture", deployments("beam", "postgres"))
def test_report_of_a_clean_bucket_is_stored_with_embedded_plots_and_links_to_its_files(deployment_fixture, request):
    deployment: Deployment = request.getfixturevalue(deployment_fixture)
    key = report_key(deployment.calibrations["BeamSpot"])
    result = deployment.materialise([key], "e0026.b0001")
    assert result.success
    stored = deployment.instance.get_latest_materialization_event(key)
    assert stored is not None and stored.run_id == result.run_id
    assert stored.asset_materialization.partition == "e0026.b0001"
    metadata = stored.asset_materialization.metadata
    assert metadata["failed_blocking_checks"].value == 0
    assert metadata["calibration_run_id"].value == deployment.buckets.latest_calibration("e0026.b0001", "BeamSpot")["dagster_run_id"]
    assert _path(metadata["pdf_report"].value).read_bytes().startswith(b"%PDF")
    plots = sorted(name.removeprefix("plot_") for name in metadata if name.startswith("plot_"))
    assert plots and plots == sorted(name.removeprefix("png_") for name in metadata if name.startswith("png_"))
    for plot in plots:
        assert "](data:image/png;base64," in metadata[f"plot_{plot}"].value
        assert _path(metadata[f"png_{plot}"].value).read_bytes().startswith(b"\x89PNG")
