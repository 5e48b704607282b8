"""What each GraphQL root field and HTTP endpoint of dagster-webserver needs.

The mutation table is checked against the installed dagster-graphql schema by a test, so a
Dagster upgrade that adds a mutation fails CI instead of silently passing; at run time a
mutation missing from the table is denied.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    """Platform permissions; roles in the policy file are sets of these."""

    NONE = "none"  # any authenticated account (UI bookkeeping mutations)
    READ = "read"
    LAUNCH = "launch"  # materialise assets outside the protected (promotion) groups
    PROMOTE = "promote"  # materialise assets in the protected groups (sign-off)
    TERMINATE_OWN = "terminate_own"
    TERMINATE_ANY = "terminate_any"
    DELETE_OWN = "delete_own"
    DELETE_ANY = "delete_any"
    BACKFILL_MANAGE = "backfill_manage"  # cancel / resume backfills
    SCHEDULES = "schedules"
    SENSORS = "sensors"
    PARTITIONS = "partitions"
    WIPE = "wipe"
    CODE_LOCATIONS = "code_locations"
    AUTOMATION = "automation"
    REPORT_EVENTS = "report_events"
    CONCURRENCY = "concurrency"
    COMPONENTS = "components"
    INSTANCE_INFO = "instance_info"
    CAPTURED_LOGS = "captured_logs"
    RUN_CONFIG = "run_config"
    # Set the resources, executor or loggers of a run in runConfigData (the deployment's settings).
    DEPLOYMENT_CONFIG = "deployment_config"
    DEBUG_DOWNLOAD = "debug_download"
    NOTEBOOK = "notebook"


class MutationKind(StrEnum):
    """How the proxy reads a mutation's arguments before deciding."""

    PLAIN = "plain"  # the permission alone decides
    LAUNCH = "launch"  # executionParams / executionParamsList: asset groups + identity tags
    BACKFILL = "backfill"  # backfillParams: asset groups + identity tags
    REEXECUTE = "reexecute"  # the parent run's selection, or the selector sent; identity tags added
    REEXECUTE_BACKFILL = "reexecute_backfill"  # the parent backfill's assets; its tags are copied
    RESUME_BACKFILL = "resume_backfill"  # the backfill's assets again; its tags stay
    RUN_OWNER = "run_owner"  # terminate/delete: own runs or any run
    # cancel a backfill: own backfills or any (like terminating its runs), and the launch
    # permission of the backfill's asset groups (promote for the protected ones)
    BACKFILL_OWNER = "backfill_owner"


@dataclass(frozen=True)
class MutationRule:
    permission: Permission
    kind: MutationKind = MutationKind.PLAIN
    # For RUN_OWNER: the permission that allows acting on other people's runs.
    any_permission: Permission | None = None


_P, _K = Permission, MutationKind

MUTATIONS: dict[str, MutationRule] = {
    # launch
    "launchPipelineExecution": MutationRule(_P.LAUNCH, _K.LAUNCH),
    "launchRun": MutationRule(_P.LAUNCH, _K.LAUNCH),
    "launchMultipleRuns": MutationRule(_P.LAUNCH, _K.LAUNCH),
    "launchPipelineReexecution": MutationRule(_P.LAUNCH, _K.REEXECUTE),
    "launchRunReexecution": MutationRule(_P.LAUNCH, _K.REEXECUTE),
    "launchPartitionBackfill": MutationRule(_P.LAUNCH, _K.BACKFILL),
    "reexecutePartitionBackfill": MutationRule(_P.LAUNCH, _K.REEXECUTE_BACKFILL),
    # Resuming restarts work: judged as a new launch of the backfill's assets by the caller.
    "resumePartitionBackfill": MutationRule(_P.LAUNCH, _K.RESUME_BACKFILL),
    "cancelPartitionBackfill": MutationRule(_P.BACKFILL_MANAGE, _K.BACKFILL_OWNER, _P.TERMINATE_ANY),
    # runs
    "terminatePipelineExecution": MutationRule(_P.TERMINATE_OWN, _K.RUN_OWNER, _P.TERMINATE_ANY),
    "terminateRun": MutationRule(_P.TERMINATE_OWN, _K.RUN_OWNER, _P.TERMINATE_ANY),
    "terminateRuns": MutationRule(_P.TERMINATE_OWN, _K.RUN_OWNER, _P.TERMINATE_ANY),
    "deletePipelineRun": MutationRule(_P.DELETE_OWN, _K.RUN_OWNER, _P.DELETE_ANY),
    "deleteRun": MutationRule(_P.DELETE_OWN, _K.RUN_OWNER, _P.DELETE_ANY),
    # schedules and sensors (dry runs evaluate user code: same permission as starting them)
    "startSchedule": MutationRule(_P.SCHEDULES),
    "stopRunningSchedule": MutationRule(_P.SCHEDULES),
    "resetSchedule": MutationRule(_P.SCHEDULES),
    "scheduleDryRun": MutationRule(_P.SCHEDULES),
    "startSensor": MutationRule(_P.SENSORS),
    "stopSensor": MutationRule(_P.SENSORS),
    "resetSensor": MutationRule(_P.SENSORS),
    "setSensorCursor": MutationRule(_P.SENSORS),
    "sensorDryRun": MutationRule(_P.SENSORS),
    # code locations
    "reloadRepositoryLocation": MutationRule(_P.CODE_LOCATIONS),
    "shutdownRepositoryLocation": MutationRule(_P.CODE_LOCATIONS),
    "reloadWorkspace": MutationRule(_P.CODE_LOCATIONS),
    # assets
    "wipeAssets": MutationRule(_P.WIPE),
    "reportRunlessAssetEvents": MutationRule(_P.REPORT_EVENTS),
    "reportAssetCheckEvaluations": MutationRule(_P.REPORT_EVENTS),
    "addDynamicPartition": MutationRule(_P.PARTITIONS),
    "deleteDynamicPartitions": MutationRule(_P.PARTITIONS),
    "setAutoMaterializePaused": MutationRule(_P.AUTOMATION),
    # concurrency
    "setConcurrencyLimit": MutationRule(_P.CONCURRENCY),
    "deleteConcurrencyLimit": MutationRule(_P.CONCURRENCY),
    "freeConcurrencySlots": MutationRule(_P.CONCURRENCY),
    "freeConcurrencySlotsForRun": MutationRule(_P.CONCURRENCY),
    # components
    "setAppManagedComponent": MutationRule(_P.COMPONENTS),
    "deleteAppManagedComponent": MutationRule(_P.COMPONENTS),
    "refreshComponentState": MutationRule(_P.COMPONENTS),
    # UI bookkeeping, unchecked by Dagster itself
    "logTelemetry": MutationRule(_P.NONE),
    "setNuxSeen": MutationRule(_P.NONE),
}

# Subscriptions (the webserver runs only these over the websocket). Unknown ones are denied.
SUBSCRIPTIONS: dict[str, Permission] = {
    "pipelineRunLogs": Permission.READ,
    "locationStateChangeEvents": Permission.READ,
    "capturedLogs": Permission.CAPTURED_LOGS,  # any log key; own runs' logs: see LOG_KEY_FIELDS
}

# Fields anywhere in a query that expose secrets or other people's output.
SENSITIVE_FIELDS: dict[str, Permission] = {
    "capturedLogs": Permission.CAPTURED_LOGS,
    "capturedLogsMetadata": Permission.CAPTURED_LOGS,
    # InstigationTick.logEvents and PartitionBackfill.logEvents: the captured log lines of
    # sensor/schedule ticks and backfill daemon iterations (README: admin-only, like tick logs).
    "logEvents": Permission.CAPTURED_LOGS,
    "runConfigYaml": Permission.RUN_CONFIG,
    "runConfig": Permission.RUN_CONFIG,
    "runConfigOrError": Permission.RUN_CONFIG,
    "configuredValues": Permission.RUN_CONFIG,  # resource configuration
    # Fields that make the code server evaluate user code (schema review: EVALUATING_TYPES).
    # DryRunInstigationTick.evaluationResult runs a schedule or sensor (a sensor with cursor
    # None) exactly as scheduleDryRun/sensorDryRun do: the same permission as a dry run. The
    # proxy cannot tell a schedule tick from a sensor tick by name; schedules and sensors are
    # granted together (editor, admin).
    "evaluationResult": Permission.SCHEDULES,
    # Partition.tagsOrError evaluates the job's partition tags (user code), as runConfigOrError
    # evaluates its run config: what the launchpad shows to those who may set run config.
    "tagsOrError": Permission.RUN_CONFIG,
}
# The schema review (a test walks the installed schema): every field whose type carries what
# a sensitive field guards must be in SENSITIVE_FIELDS, and these are the reviewed exceptions.
GUARDED_TYPES: dict[str, Permission] = {
    "CapturedLogs": Permission.CAPTURED_LOGS,  # stdout/stderr text
    "CapturedLogsMetadata": Permission.CAPTURED_LOGS,  # where the logs are, download URLs
    "InstigationEventConnection": Permission.CAPTURED_LOGS,  # tick / backfill captured log lines
    "RunConfigData": Permission.RUN_CONFIG,  # a run's config (may hold settings and secrets)
    "ConfiguredValue": Permission.RUN_CONFIG,  # resource configuration
    # Types whose resolution evaluates user code in the code server (schedules, sensors,
    # partition config and tags): every field returning one needs the permission.
    "TickEvaluation": Permission.SCHEDULES,
    "PartitionTagsOrError": Permission.RUN_CONFIG,
    "PartitionRunConfigOrError": Permission.RUN_CONFIG,
}
READ_REVIEWED: dict[str, str] = {
    "Run.eventConnection": "the structured Dagster event log of a run (what the run page shows): read",
    "PipelineRun.eventConnection": "same as Run.eventConnection: read",
    "Query.logsForRun": "same as Run.eventConnection: read",
    "LogsCapturedEvent.shellCmd": "a command naming where captured logs are, not their content: read",
    "LogsCapturedEvent.logKey": "a key only; reading the logs under it is checked: read",
    "InstigationTick.logKey": "a key only; reading the logs under it is checked: read",
    "CapturedLogs.logKey": "inside capturedLogs, already guarded",
    "InstigationTick.runIds": "run ids only: read",
}

# Fields sensitive only under a given root field: instance { info } shows dagster.yaml.
SENSITIVE_UNDER_ROOT: dict[tuple[str, str], Permission] = {
    ("instance", "info"): Permission.INSTANCE_INFO,
}

# Launch-type mutations: argument holding the parameters, and whether it is a list.
LAUNCH_ARGUMENTS: dict[str, tuple[str, bool]] = {
    "launchPipelineExecution": ("executionParams", False),
    "launchRun": ("executionParams", False),
    "launchMultipleRuns": ("executionParamsList", True),
    "launchPartitionBackfill": ("backfillParams", False),
}


# Every field of the input types a work-starting mutation reads, and how the proxy treats it.
# A test compares this with the installed schema: an unclassified field fails the suite, so a
# Dagster upgrade adding a way to select work is looked at before it is trusted.
#   resolved:  decides what runs (execution.py)
#   narrows:   can only shrink what runs; ignored, so the judgement covers more than runs
#   checked:   read by the role check (run config keys, identity tags)
#   inert:     does not change what runs or who it runs as
LAUNCH_INPUT_FIELDS: dict[str, dict[str, str]] = {
    "ExecutionParams": {"selector": "resolved", "runConfigData": "checked", "mode": "inert",
                        "executionMetadata": "checked", "stepKeys": "narrows", "preset": "inert"},
    "JobOrPipelineSelector": {"pipelineName": "resolved", "jobName": "resolved", "repositoryName": "resolved",
                              "repositoryLocationName": "resolved", "solidSelection": "resolved",
                              "assetSelection": "resolved", "assetCheckSelection": "resolved"},
    "ExecutionMetadata": {"tags": "checked", "rootRunId": "inert", "parentRunId": "inert"},
    "ReexecutionParams": {"parentRunId": "resolved", "strategy": "resolved", "extraTags": "checked",
                          "useParentRunTags": "checked"},
    "LaunchBackfillParams": {"selector": "resolved", "partitionNames": "narrows", "partitionsByAssets": "resolved",
                             "reexecutionSteps": "narrows", "assetSelection": "resolved", "fromFailure": "narrows",
                             "allPartitions": "narrows", "tags": "checked", "forceSynchronousSubmission": "inert",
                             "title": "inert", "description": "inert", "runConfigData": "checked"},
    "PartitionSetSelector": {"partitionSetName": "resolved", "repositorySelector": "resolved"},
    "RepositorySelector": {"repositoryName": "resolved", "repositoryLocationName": "resolved"},
    "PartitionsByAssetSelector": {"assetKey": "resolved", "partitions": "narrows"},
    "PartitionsSelector": {"range": "narrows", "ranges": "narrows"},
    "PartitionRangeSelector": {"start": "narrows", "end": "narrows"},
    "AssetCheckHandleInput": {"assetKey": "resolved", "name": "resolved"},
    "AssetKeyInput": {"path": "resolved"},
    "ExecutionTag": {"key": "checked", "value": "checked"},
}
# Values of enums that choose what re-runs; each is a subset of the parent's work.
REEXECUTION_STRATEGY_VALUES = frozenset({"ALL_STEPS", "FROM_FAILURE", "FROM_ASSET_FAILURE"})
# Arguments of the work-starting mutations (their input types are classified above).
WORK_ARGUMENTS: dict[str, frozenset[str]] = {
    "launchPipelineExecution": frozenset({"executionParams"}),
    "launchRun": frozenset({"executionParams"}),
    "launchMultipleRuns": frozenset({"executionParamsList"}),
    "launchPipelineReexecution": frozenset({"executionParams", "reexecutionParams"}),
    "launchRunReexecution": frozenset({"executionParams", "reexecutionParams"}),
    "launchPartitionBackfill": frozenset({"backfillParams"}),
    "reexecutePartitionBackfill": frozenset({"reexecutionParams"}),
    "resumePartitionBackfill": frozenset({"backfillId"}),
}


# Root fields (query and subscription) reading captured stdout/stderr by a ``logKey``
# argument. CAPTURED_LOGS reads any key; a principal holding OWN_RUN_LOGS in any scope reads
# the keys of runs whose b2cal/user tag is theirs (decide.py). Under another root field
# (Run.capturedLogs(fileKey)) the key is built by the webserver from a client-chosen file key,
# so those stay CAPTURED_LOGS only.
LOG_KEY_FIELDS = frozenset({"capturedLogs", "capturedLogsMetadata"})
OWN_RUN_LOGS = Permission.LAUNCH
# A run's captured logs: [run_id, "compute_logs", file_key] (dagster ComputeLogManager
# .build_log_key_for_run; the UI asks for [runId, "compute_logs", fileKey] too).
RUN_LOG_NAMESPACE = "compute_logs"
# File extensions of the /logs/ download route: stdout, stderr (dagster IO_TYPE_EXTENSION).
LOG_FILE_EXTENSIONS = frozenset({"out", "err"})
LOGS_ROUTE = "/logs/"


def _plain_segment(value: object) -> bool:
    """A key element that names one file or directory: the local compute log manager joins the
    elements into a path (a '..' or '/' would reach another run's directory)."""
    return isinstance(value, str) and value not in ("", ".", "..") and not any(c in value for c in "/\\\x00")


def run_of_log_key(log_key: object) -> str | None:
    """The run whose captured logs ``log_key`` names, or None when it is not a run's key.

    Only the exact shape [run_id, "compute_logs", file_key] with plain elements counts; any
    other key (sensor and schedule ticks, malformed input) is None, which decide.py refuses
    unless the principal may read every captured log (fail closed).
    """
    if not isinstance(log_key, list) or len(log_key) != 3 or not all(_plain_segment(v) for v in log_key):
        return None
    run_id, namespace, _ = log_key
    return run_id if namespace == RUN_LOG_NAMESPACE else None


def log_download_key(path: str) -> tuple[list[str], str] | None:
    """(log key, file extension) of a /logs/ path, split as the webserver's route does
    (``[*log_key, extension] = path.split("/")``); None for other paths."""
    if not path.startswith(LOGS_ROUTE):
        return None
    *log_key, extension = path[len(LOGS_ROUTE):].split("/")
    return log_key, extension


@dataclass(frozen=True)
class EndpointRule:
    """What a non-GraphQL path needs; ``methods`` None means any method.

    ``run_logs``: a captured-log download whose run decides for those without ``permission``.
    """

    permission: Permission
    methods: frozenset[str] | None = None
    run_logs: bool = False


def classify_path(path: str, method: str) -> EndpointRule | None:
    """The rule for a decoded, prefix-stripped path, or None for GraphQL (handled separately).

    Unknown paths are the single-page app or static files: readable with GET/HEAD, and any
    other method is refused (the webserver has no other write endpoint; fail closed).
    """
    if path in ("/graphql", "/graphql/"):
        return None
    if path.startswith(LOGS_ROUTE):
        return EndpointRule(Permission.CAPTURED_LOGS, frozenset({"GET", "HEAD"}), run_logs=True)
    if path.startswith("/download_debug/"):
        return EndpointRule(Permission.DEBUG_DOWNLOAD)
    if path.startswith("/report_asset_"):
        return EndpointRule(Permission.REPORT_EVENTS)
    if path.rstrip("/") in ("/notebook", "/dagit/notebook"):
        return EndpointRule(Permission.NOTEBOOK)
    return EndpointRule(Permission.READ, frozenset({"GET", "HEAD", "OPTIONS"}))
