"""The ``raw_run`` asset: one partition per run, materialised by verifying the run's files."""
# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from b2cal_assets.resources import IncomingDataResource, PlatformDatabaseResource
from b2cal_assets.run_identity import ExpRun, InvalidRunError
from b2cal_assets.runs.errors import RunsError
from b2cal_assets.runs.naming import RECORD_NAME_TEMPLATE
from b2cal_assets.runs.partitions import run_partitions
from b2cal_assets.runs.records import RunRecordError, read_record
from b2cal_assets.runs.registry import STATUS_INGESTED, STATUS_QUARANTINED, RegisteredRun
from b2cal_assets.runs.verification import verify_run

RECORD_PATH_TAG = "b2cal/record_path"
RECORD_DIGEST_TAG = "b2cal/record_digest"
FILES_VERIFIED_CHECK = "files_verified"


class RunRecordNotFoundError(RunsError, FileNotFoundError):
    """No completion record for a run partition."""


def locate_record(root: Path, key: ExpRun, tagged_path: str | None) -> str:
    """Relative path of a run's record: from the sensor's tag, else by its fixed name."""
    if tagged_path:
        return tagged_path
    name = RECORD_NAME_TEMPLATE.format(exp=key.exp, run=key.run)
    # A handful of beam-energy folders per experiment: a cheap glob, not a scan of all runs.
    found = sorted(root.glob(f"e{key.exp:04d}/*/r{key.run:05d}/{name}"))
    if not found:
        raise RunRecordNotFoundError(
            f"run {key}: no completion record {name} under {root}/e{key.exp:04d}/*/r{key.run:05d}; "
            "the run is not complete yet, or the incoming root is wrong"
        )
    return str(found[0].relative_to(root))


@asset(
    partitions_def=run_partitions,
    group_name="runs",
    kinds={"root", "python"},
    owners=["team:data-production"],
    description=(
        "A raw Belle II run (cDST skims hlt_mumu_2trk, hlt_bhabha, hlt_hadron). Materialising a "
        "partition verifies every file against the run's completion record (exists, size, adler32, "
        "ROOT format, branches, events) and records the run in the run registry; a run that fails is "
        "quarantined with the reason, and no calibration uses it."
    ),
    check_specs=[
        AssetCheckSpec(
            FILES_VERIFIED_CHECK,
            asset="raw_run",
            blocking=True,
            description="Every file of the run matches its completion record; otherwise the run is quarantined.",
        )
    ],
)
def raw_run(
    context: AssetExecutionContext, incoming: IncomingDataResource, platform_db: PlatformDatabaseResource
) -> MaterializeResult:
    try:
        key = ExpRun.parse(context.partition_key)
    except InvalidRunError as error:
        raise Failure(description=str(error)) from None
    root = incoming.path
    record_path = locate_record(root, key, context.run.tags.get(RECORD_PATH_TAG))
    try:
        record = read_record(root / record_path)
    except (OSError, RunRecordError) as error:
        raise Failure(description=f"run {key}: cannot use its completion record: {error}") from None
    if record.key != key:
        raise Failure(description=f"partition {key}: the record at {record_path} describes run {record.key}")
    verification = verify_run(root, record)
    status = STATUS_INGESTED if verification.passed else STATUS_QUARANTINED
    reason = "" if verification.passed else verification.reason()
    platform_db.runs().record_run(
        RegisteredRun(
            exp=record.exp,
            run=record.run,
            status=status,
            reason=reason,
            run_type=record.run_type,
            beam_energy=record.beam_energy,
            magnet=record.magnet,
            data_quality=record.data_quality,
            data_tags=record.data_tags,
            integrated_luminosity_pb=record.integrated_luminosity_pb,
            start_time=record.start_time,
            end_time=record.end_time,
            her_energy_gev=record.her_energy_gev,
            ler_energy_gev=record.ler_energy_gev,
            events_per_stream=verification.events_per_stream,
            files=tuple({"path": f.path, "stream": f.stream, "events": f.events, "size": f.size} for f in record.files),
            record_path=record_path,
            record_digest=record.digest(),
            dagster_run_id=context.run.run_id,
        )
    )
    if verification.passed:
        context.log.info(f"run {key}: {len(record.files)} files verified, {sum(verification.events_per_stream.values())} events")
    else:
        context.log.error(f"run {key} quarantined: {reason}")
    metadata = {
        "status": status,
        "quarantine_reason": MetadataValue.md(reason) if reason else "",
        "experiment": record.exp,
        "run": record.run,
        "integrated_luminosity_pb": record.integrated_luminosity_pb,
        "run_type": record.run_type,
        "beam_energy": record.beam_energy,
        "magnet": record.magnet,
        "data_quality": record.data_quality,
        "data_tags": ", ".join(record.data_tags),
        "start_time": record.start_time,
        "end_time": record.end_time,
        "files": len(record.files),
        "bytes_verified": verification.bytes_verified,
        "record": record_path,
        **{f"events/{stream}": count for stream, count in sorted(verification.events_per_stream.items())},
    }
    check = AssetCheckResult(
        check_name=FILES_VERIFIED_CHECK,
        passed=verification.passed,
        severity=AssetCheckSeverity.ERROR,
        description=None if verification.passed else reason,
        metadata={
            "failed_checks": len(verification.problems),
            "problems": MetadataValue.md("\n".join(f"- `{p.path}`: **{p.check}**: {p.detail}" for p in verification.problems) or "none"),
        },
    )
    return MaterializeResult(metadata=metadata, check_results=[check])
