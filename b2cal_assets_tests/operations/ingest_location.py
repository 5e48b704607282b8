"""A code location with the runs domain only, its new-run sensor ticking fast and in small bites.

The real sensor (same code as ``runs/sensors.py``) with a 1 s interval and 2 runs per tick, so
that a daemon killed during ingestion is killed between ticks, with runs in flight and a cursor
behind them. Locations come from the environment (``B2CAL_INCOMING``, ``B2CAL_DATABASE_URL``).
"""

from dagster import Definitions

from b2cal_assets.resources import IncomingDataResource, PlatformDatabaseResource
from b2cal_assets.runs.assets import raw_run
from b2cal_assets.runs.jobs import ingest_raw_runs_job
from b2cal_assets.runs.sensors import build_new_run_sensor

defs = Definitions(
    assets=[raw_run],
    jobs=[ingest_raw_runs_job],
    sensors=[build_new_run_sensor(ingest_raw_runs_job.name, minimum_interval_seconds=1, max_runs_per_tick=2)],
    resources={"incoming": IncomingDataResource(), "platform_db": PlatformDatabaseResource()},
)
