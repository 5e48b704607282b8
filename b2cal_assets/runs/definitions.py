"""Everything of the runs domain, for the top-level Definitions."""

from dagster import Definitions

from b2cal_assets.runs.assets import raw_run
from b2cal_assets.runs.jobs import ingest_raw_runs_job
from b2cal_assets.runs.sensors import build_new_run_sensor

runs_defs = Definitions(
    assets=[raw_run],
    jobs=[ingest_raw_runs_job],
    sensors=[build_new_run_sensor(ingest_raw_runs_job.name)],
)
