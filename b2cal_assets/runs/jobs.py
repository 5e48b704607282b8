"""Jobs of the runs domain."""

from dagster import AssetSelection, define_asset_job

ingest_raw_runs_job = define_asset_job(
    "ingest_raw_runs",
    selection=AssetSelection.assets("raw_run"),
    description="Verify and register one run (one partition of raw_run).",
)
