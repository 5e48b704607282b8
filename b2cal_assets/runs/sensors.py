"""The new-run sensor: notices complete runs and launches their ingestion."""


from datetime import timedelta

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from b2cal_assets.operations.executors import single_process_run_config
from b2cal_assets.operations.pacing import HANDOFF_SENSOR_INTERVAL_SECONDS, INGESTION_PRIORITY, priority_tags
from b2cal_assets.resources import IncomingDataResource
from b2cal_assets.runs.assets import RECORD_DIGEST_TAG, RECORD_PATH_TAG
from b2cal_assets.runs.discovery import DEFAULT_RETRY_FOR, DiscoveryCursor, discover
from b2cal_assets.runs.partitions import run_partitions

NEW_RUN_SENSOR_NAME = "new_run_files"
DEFAULT_MAX_RUNS_PER_TICK = 500


def build_new_run_sensor(
    job_name: str,
    *,
    name: str = NEW_RUN_SENSOR_NAME,
    minimum_interval_seconds: int = HANDOFF_SENSOR_INTERVAL_SECONDS,
    max_runs_per_tick: int = DEFAULT_MAX_RUNS_PER_TICK,
    retry_for: timedelta = DEFAULT_RETRY_FOR,
) -> SensorDefinition:
    """A sensor reading the arrival journal from its cursor; at most ``max_runs_per_tick`` per tick.

    Each run request carries a run_key made of the run and its record digest, so a run is
    never ingested twice, also when a tick is replayed after a daemon restart.
    """

    @sensor(
        name=name,
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Watches the incoming-data root's arrival journal for complete runs (record written), "
            f"adds their run partitions and launches ingestion, at most {max_runs_per_tick} runs per tick."
        ),
    )
    def new_run_files(context: SensorEvaluationContext, incoming: IncomingDataResource):  # type: ignore[no-untyped-def]
        cursor = DiscoveryCursor.from_json(context.cursor)
        result = discover(incoming.path, cursor, max_runs=max_runs_per_tick, retry_for=retry_for)
        for report in result.reports:
            context.log.warning(str(report))
        new_cursor = result.cursor.to_json()
        if not result.ready:
            return SensorResult(
                skip_reason=SkipReason(f"no new complete runs ({result.journal_entries_read} journal entries read)"),
                cursor=new_cursor,
            )
        keys = sorted({str(ready.key) for ready in result.ready})
        context.log.info(f"{len(result.ready)} complete run(s): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}")
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=ready.run_key,
                    partition_key=str(ready.key),
                    tags={RECORD_PATH_TAG: ready.record_path, RECORD_DIGEST_TAG: ready.digest, **priority_tags(INGESTION_PRIORITY)},
                    run_config=single_process_run_config(),  # one step: no second process
                )
                for ready in result.ready
            ],
            dynamic_partitions_requests=[run_partitions.build_add_request(keys)],
            cursor=new_cursor,
        )

    return new_run_files
