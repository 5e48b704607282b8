"""Collector (per bucket x run) and calibration (per bucket) assets, built from each discovered calibration.

The asset functions are thin: they find the inputs (run files, collector outputs, upstream
payloads of the same bucket), call the pure calibration code, and store the results (collector
output files, payloads with IoVs in the bucket's staging tag). The calibration asset's
decisions (which runs, which collector outputs, the IoV, the failure text, the payload summary)
are the pure steps of ``framework/bucket_calibration.py``, tested there.
"""
# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import warnings
from pathlib import Path

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    MultiPartitionKey,
    MultiToSingleDimensionPartitionMapping,
    asset,
)

from b2cal_assets.calibration.bucket_store import BucketStore
from b2cal_assets.calibration.framework.bucket_calibration import (
    MissingCollectorOutputError,
    NoRunPassesFiltersError,
    choose_runs,
    collector_output_files,
    describe_failure,
    payload_summary,
    payload_table,
    prompt_iov,
)
from b2cal_assets.calibration.framework.buckets import upstream_version
from b2cal_assets.calibration.framework.contract import Calibration, CollectorOutput
from b2cal_assets.calibration.framework.runner import run_calibration
from b2cal_assets.calibration.framework.settings import InvalidCalibrationSettingsError, merge_expert_config
from b2cal_assets.calibration.partitions import BUCKET_DIMENSION, RUN_DIMENSION, bucket_partitions, bucket_run_partitions
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import PayloadConstants
from b2cal_assets.conditions.staging import STAGING_TAG_PREFIX, current_staging_tag
from b2cal_assets.conditions.store import ConditionsStore, NewPayload
from b2cal_assets.resources import (
    CalibrationStorageResource,
    ExpertConfigOverridesResource,
    IncomingDataResource,
    PlatformDatabaseResource,
)
from b2cal_assets.runs.registry import RegisteredRun


def _dimension_mapping(dimension: str) -> MultiToSingleDimensionPartitionMapping:
    # Marked beta; it is the documented way to map the bucket x run collectors onto bucket and
    # run partitions (see partitions.py). The warning is silenced here, not for every importer.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*MultiToSingleDimensionPartitionMapping.*", category=Warning)
        return MultiToSingleDimensionPartitionMapping(dimension)

def calibration_key(calibration: Calibration) -> AssetKey:
    return AssetKey([calibration.settings.subsystem, calibration.name])


def collector_key(calibration: Calibration) -> AssetKey:
    return AssetKey([calibration.settings.subsystem, f"{calibration.name}_collector"])


def _owners(calibration: Calibration) -> list[str]:
    username = calibration.settings.expert_username
    return [username if "@" in username else f"team:{username}"]


def _upstream_payloads(
    store: ConditionsStore, bucket: str, calibration: Calibration, run: ExpRun, calibrations: dict[str, Calibration]
) -> dict[str, PayloadConstants]:
    """Payloads of the calibrations this one depends on, valid for ``run``, from the bucket's staging tag."""
    upstream: dict[str, PayloadConstants] = {}
    for dependency in calibration.settings.depends_on:
        for payload_name in calibrations[dependency.name].settings.produced_payloads:
            entry = store.find_payload(current_staging_tag(store, bucket), payload_name, run)
            if entry is None:
                raise Failure(
                    description=f"{calibration.name} needs payload {payload_name} of {dependency.name} for run {run} in "
                    f"{current_staging_tag(store, bucket)}, which has none: materialise {dependency.name} for bucket {bucket} first"
                )
            upstream[payload_name] = store.read_payload(entry.name, entry.revision)
    return upstream


def _open_staging_tag(store: ConditionsStore, bucket: str) -> str:
    """The bucket's current staging tag, created (open) on the bucket's first calibration."""
    tag = current_staging_tag(store, bucket)
    if tag not in {t.name for t in store.tags()}:
        store.create_tag(tag, description=f"prompt calibration staging tag of bucket {bucket}")
    return tag


def _upstream_version(store: BucketStore, bucket: str, calibration: Calibration) -> str:
    """The bucket version the upstream payloads were computed for ('' without depends_on)."""
    if not calibration.settings.depends_on:
        return ""
    return upstream_version(calibration.settings, store.calibrated_versions(bucket))


def _expert_config(calibration: Calibration, overrides: ExpertConfigOverridesResource) -> dict:
    """The calibration's expert_config with the run-time overrides merged over it."""
    try:
        return merge_expert_config(calibration.settings, overrides.for_calibration(calibration.name))
    except (InvalidCalibrationSettingsError, ValueError) as error:
        raise Failure(description=f"{calibration.name}: bad run-time expert_config: {error}") from None


def _files_by_stream(root: Path, run: RegisteredRun, streams) -> dict[str, list[Path]]:  # type: ignore[no-untyped-def]
    return {stream: [root / path for path in run.files_of_stream(stream)] for stream in streams}


def _bucket_and_run(key: str) -> tuple[str, str]:
    """(bucket, run) of a collector cell key ``e0026.b0001|e0026.r00012``."""
    if isinstance(key, MultiPartitionKey):
        return key.keys_by_dimension[BUCKET_DIMENSION], key.keys_by_dimension[RUN_DIMENSION]
    parts = str(key).split("|")
    if len(parts) != 2:
        raise Failure(description=f"collector partition {key!r} is not a bucket|run key like e0026.b0001|e0026.r00012")
    return parts[0], parts[1]


def build_collector_asset(calibration: Calibration, calibrations: dict[str, Calibration]) -> AssetsDefinition:
    settings = calibration.settings
    deps = [AssetDep(AssetKey("raw_run"), partition_mapping=_dimension_mapping(RUN_DIMENSION))]
    deps += [
        AssetDep(calibration_key(calibrations[d.name]), partition_mapping=_dimension_mapping(BUCKET_DIMENSION))
        for d in settings.depends_on
    ]

    @asset(
        key=collector_key(calibration),
        partitions_def=bucket_run_partitions,
        deps=deps,
        group_name=settings.subsystem,
        owners=_owners(calibration),
        kinds={"python", "numpy"},
        tags={"b2cal/step": "collector", "b2cal/calibration": calibration.name},
        description=f"Collector of {calibration.name} (map step over one run of a bucket): histograms and sums "
        f"from {', '.join(settings.input_data_names)}. {settings.description}",
    )
    def collector(
        context: AssetExecutionContext,
        platform_db: PlatformDatabaseResource,
        incoming: IncomingDataResource,
        calibration_storage: CalibrationStorageResource,
        expert_config_overrides: ExpertConfigOverridesResource,
    ) -> MaterializeResult:
        expert_config = _expert_config(calibration, expert_config_overrides)
        # One cell (bucket|run), or a range of one bucket's runs: the scheduler collects a bucket's
        # runs in one run (one process start) instead of one run per run.
        cells = [_bucket_and_run(key) for key in context.partition_keys]
        bucket = cells[0][0]
        if any(cell_bucket != bucket for cell_bucket, _ in cells):
            raise Failure(description=f"a collector run covers the runs of one bucket; this one spans buckets {sorted({b for b, _ in cells})}: launch one run per bucket")
        buckets = platform_db.buckets()
        registry = platform_db.runs()
        store = platform_db.conditions(calibration_storage.payload_dir)
        upstream_of_bucket = _upstream_version(buckets, bucket, calibration)
        events = 0
        upstream_names: set[str] = set()
        for _, run_text in cells:
            if buckets.bucket_of(run_text) != bucket:
                raise Failure(description=f"run {run_text} is not in bucket {bucket} (it is in {buckets.bucket_of(run_text)}); nothing to collect")
            run = registry.get(ExpRun.parse(run_text))
            if run is None or run.quarantined:
                raise Failure(description=f"run {run_text} is {'quarantined' if run else 'not ingested'}; collectors never use it")
            exprun = ExpRun(run.exp, run.run)
            upstream = _upstream_payloads(store, bucket, calibration, exprun, calibrations)
            files = _files_by_stream(incoming.path, run, settings.input_data_names)
            output = calibration.collect(exprun, files, upstream, expert_config)
            path = calibration_storage.collector_output_path(calibration.name, bucket, run_text)
            partial = path.with_name(path.name + ".part")
            output.save(partial)
            partial.replace(path)
            buckets.record_collector_output(calibration.name, bucket, run_text, str(path), output.n_events, upstream_of_bucket)
            events += output.n_events
            upstream_names |= set(upstream)
        metadata: dict = {"events": events, "runs": len(cells), "upstream_payloads": ", ".join(sorted(upstream_names)) or "none"}
        if len(cells) == 1:
            metadata["collector_output"] = MetadataValue.path(str(path))
            metadata["arrays"] = ", ".join(f"{k}{list(v.shape)}" for k, v in sorted(output.arrays.items()))
        else:
            metadata["collector_outputs"] = MetadataValue.path(str(path.parent))
        return MaterializeResult(metadata=metadata)

    return collector


def build_calibration_asset(calibration: Calibration, calibrations: dict[str, Calibration]) -> AssetsDefinition:
    settings = calibration.settings
    deps = [AssetDep(collector_key(calibration), partition_mapping=_dimension_mapping(BUCKET_DIMENSION))]
    deps += [AssetDep(calibration_key(calibrations[d.name])) for d in settings.depends_on]

    @asset(
        key=calibration_key(calibration),
        partitions_def=bucket_partitions,
        deps=deps,
        group_name=settings.subsystem,
        owners=_owners(calibration),
        kinds={"python", "root"},
        tags={"b2cal/step": "calibration", "b2cal/calibration": calibration.name},
        pool="conditions_db",  # writes payloads: dagster.yaml bounds concurrent writers (pools > default_limit)
        description=f"{settings.description} Payloads: {', '.join(settings.produced_payloads)}; written with their "
        f"IoVs into the bucket's staging tag ({STAGING_TAG_PREFIX}<bucket>).",
        metadata={"expert_config": MetadataValue.json(dict(settings.expert_config)), "inputs": ", ".join(settings.input_data_names)},
    )
    def calibration_asset(
        context: AssetExecutionContext,
        platform_db: PlatformDatabaseResource,
        calibration_storage: CalibrationStorageResource,
        expert_config_overrides: ExpertConfigOverridesResource,
    ) -> MaterializeResult:
        runtime_config = expert_config_overrides.for_calibration(calibration.name)
        expert_config = _expert_config(calibration, expert_config_overrides)
        bucket = context.partition_key
        buckets = platform_db.buckets()
        bucket_row = buckets.bucket(bucket)
        if bucket_row is None:
            raise Failure(description=f"bucket {bucket} is unknown to the bucket store")
        registry = platform_db.runs()
        runs = [run for run in (registry.get(ExpRun.parse(key)) for key in buckets.runs_of(bucket)) if run is not None]
        try:
            chosen = choose_runs(calibration.name, bucket, settings, runs)
            files = collector_output_files(calibration.name, bucket, chosen.used, buckets.collector_outputs(bucket).get(calibration.name, {}))
        except (NoRunPassesFiltersError, MissingCollectorOutputError) as refusal:
            raise Failure(description=str(refusal)) from None
        collected = {run: CollectorOutput.load(path) for run, path in files.items()}
        store = platform_db.conditions(calibration_storage.payload_dir)
        upstream = _upstream_payloads(store, bucket, calibration, chosen.used[0], calibrations)
        algorithm = calibration.make_algorithm(collected, upstream, expert_config)
        outcome = run_calibration(
            settings, algorithm, calibration.strategy(), list(chosen.used), prompt_iov(chosen.used), runtime_config=runtime_config
        )
        if not outcome.succeeded:
            failure = describe_failure(calibration.name, bucket, outcome)
            raise Failure(
                description=failure.description,
                metadata={"result": failure.result, "algorithm_messages": MetadataValue.json(failure.messages)},
            )
        tag = _open_staging_tag(store, bucket)
        payloads = outcome.payloads()
        stored = store.add_payloads(
            tag,
            [NewPayload(p.name, p.iov, p.constants) for p in payloads],
            replace_overlapping=True,
            created_by=f"dagster run {context.run.run_id}",
        )
        summary = payload_summary(stored, payloads)
        buckets.record_calibration(calibration.name, bucket, bucket_row.version, summary, chosen.labels, context.run.run_id)
        return MaterializeResult(
            metadata={
                "staging_tag": tag,
                "bucket_version": str(bucket_row.version),
                "bucket_closed": bucket_row.closed,
                "result": outcome.result.value,
                "iterations": len(outcome.iterations),
                "runs_used": MetadataValue.md(", ".join(chosen.labels)),
                "runs_excluded": MetadataValue.json(chosen.excluded),
                "payloads": MetadataValue.md(payload_table(summary)),
                "n_payloads": len(summary),
                "expert_config_overrides": MetadataValue.json(runtime_config),
            }
        )

    return calibration_asset


def build_calibration_assets(calibrations: dict[str, Calibration]) -> list[AssetsDefinition]:
    assets = []
    for calibration in calibrations.values():
        assets.append(build_collector_asset(calibration, calibrations))
        assets.append(build_calibration_asset(calibration, calibrations))
    return assets
