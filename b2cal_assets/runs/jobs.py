"""Jobs of the runs domain."""

from dagster import AssetSelection, define_asset_job

from b2cal_assets.runs.partitions import run_partitions

ingest_raw_runs_job = define_asset_job(
    "ingest_raw_runs",
    selection=AssetSelection.assets("raw_run"),
    partitions_def=run_partitions,
    description="Verify and register one run (one partition of raw_run).",
)
