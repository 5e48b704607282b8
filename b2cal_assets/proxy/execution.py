"""What a work-starting mutation will execute, resolved as dagster-webserver resolves it, and
the (permission, scope) requirements that follow.

Pure: the facts about jobs, runs and backfills come from the webserver (upstream.py) and are
passed in. The resolution may over-approximate what runs (a step selection is ignored, an op
selection query is read as the whole job) but never under-approximate it; what cannot be
resolved is refused with a reason (:class:`Unresolvable`).

How dagster-graphql 1.13 reads the parameters (``implementation/utils.py``
``pipeline_selector_from_graphql``, ``JobDefinition.get_subset``, ``execution/backfill.py``):

- ``assetSelection`` missing or ``[]``: no asset selection; ``assetCheckSelection`` missing:
  no check selection, ``[]``: an empty one; when neither selects anything (and there is no
  ``solidSelection``) the **whole job** runs.
- ``solidSelection`` (op selection query) subsets the job's ops.
- ``launchRunReexecution(reexecutionParams)``: the parent run's job with its asset and check
  selection; every strategy reruns a subset of that.
- ``launchPartitionBackfill``: ``selector`` (a job's partition set: the whole job per
  partition), ``assetSelection`` (``[]`` means none) or ``partitionsByAssets``.
- ``reexecutePartitionBackfill`` / ``resumePartitionBackfill``: the parent backfill's assets
  or job, with the parent's tags copied (Dagster offers no way to change them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from b2cal_assets.auth.run_tags import IdentityTagError, RoleGrant, parse_identity_tags
from b2cal_assets.proxy.errors import ReverseProxyRefusal

from .permissions import MUTATIONS, REEXECUTION_STRATEGY_VALUES, Permission

AssetKey = tuple[str, ...]
CheckKey = tuple[AssetKey, str]  # (asset key, check name)

REEXECUTION_STRATEGIES = REEXECUTION_STRATEGY_VALUES
# Top-level run config sections that choose resources, executor and loggers: the deployment's
# settings, not a launcher's. Op and asset config (``ops``) stays open to launchers.
DEPLOYMENT_RUN_CONFIG_KEYS = ("resources", "execution", "loggers")
_PLAIN_OP_NAME = re.compile(r"[A-Za-z0-9_]+")


class Unresolvable(ReverseProxyRefusal):
    """The proxy cannot tell what the request would execute: refused (fail closed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- facts -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class JobRef:
    location: str
    repository: str
    job: str

    def __str__(self) -> str:
        return f"{self.job}@{self.repository}:{self.location}"


@dataclass(frozen=True, order=True)
class PartitionSetRef:
    location: str
    repository: str
    name: str


@dataclass(frozen=True)
class JobFacts:
    """A job as the webserver describes it: its top-level ops and what each materialises."""

    ref: JobRef
    op_assets: Mapping[str, frozenset[AssetKey]]  # every top-level op -> assets it materialises
    groups: Mapping[AssetKey, str | None]  # every asset of the job -> its asset group
    checks: frozenset[CheckKey] = frozenset()  # the job's asset checks

    def check_op(self, op: str) -> CheckKey | None:
        """The check a top-level op executes (Dagster names a check's op <asset>_<check>)."""
        for check in self.checks:
            if op == check_op_name(check):
                return check
        return None


def check_op_name(check: CheckKey) -> str:
    """dagster AssetCheckSpec.get_python_identifier for an asset key of plain segments."""
    key, name = check
    return re.sub(r"[^A-Za-z0-9_]", "_", "__".join(key)) + "_" + name.replace(".", "_")


@dataclass(frozen=True)
class RunFacts:
    """What the proxy learnt about an existing run from the webserver."""

    run_id: str
    owner: str | None  # its b2cal/user tag
    asset_keys: frozenset[AssetKey] | None  # its asset selection; None: none
    job: JobRef | None = None
    check_keys: frozenset[CheckKey] | None = None  # its asset check selection; None: none
    tags: Mapping[str, str] = field(default_factory=dict)
    # Its run config as YAML: a re-execution reuses it, deployment keys included.
    run_config: str | None = None


@dataclass(frozen=True)
class BackfillFacts:
    backfill_id: str
    tags: Mapping[str, str]
    asset_keys: frozenset[AssetKey] | None  # an asset backfill's assets
    partition_set: PartitionSetRef | None  # a job backfill's partition set
    status: str = ""


@dataclass
class FactsRequest:
    asset_keys: set[AssetKey] = field(default_factory=set)
    run_ids: set[str] = field(default_factory=set)
    run_jobs: set[str] = field(default_factory=set)  # runs whose job's facts are needed too
    jobs: set[JobRef] = field(default_factory=set)
    backfill_ids: set[str] = field(default_factory=set)
    partition_sets: set[PartitionSetRef] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.asset_keys or self.run_ids or self.jobs or self.backfill_ids or self.partition_sets)

    def update(self, other: FactsRequest) -> None:
        self.asset_keys |= other.asset_keys
        self.run_ids |= other.run_ids
        self.run_jobs |= other.run_jobs
        self.jobs |= other.jobs
        self.backfill_ids |= other.backfill_ids
        self.partition_sets |= other.partition_sets


@dataclass(frozen=True)
class Facts:
    """Everything the webserver told the proxy for one decision (missing: unknown to it)."""

    groups: Mapping[AssetKey, str | None] = field(default_factory=dict)
    runs: Mapping[str, RunFacts] = field(default_factory=dict)
    jobs: Mapping[JobRef, JobFacts] = field(default_factory=dict)
    backfills: Mapping[str, BackfillFacts] = field(default_factory=dict)
    partition_sets: Mapping[PartitionSetRef, JobRef] = field(default_factory=dict)


# --- requirements ----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Requirement:
    """One permission (or any of several) the caller needs, and where.

    ``scope``: an asset group, or None for every group (an unscoped grant). ``anywhere``: a
    grant in any scope will do (the base permission of a launch). ``why`` is for messages.
    """

    permissions: tuple[Permission, ...]
    scope: str | None = None
    anywhere: bool = False
    why: str = field(default="", compare=False)  # short: may reach the client
    detail: str = field(default="", compare=False)  # for the audit log only (run ids, owners)

    def describe(self) -> str:
        names = " or ".join(p.value for p in self.permissions)
        where = " (in any asset group)" if self.anywhere else (f" on asset group {self.scope}" if self.scope else "")
        return names + where


def requirement(permission: Permission, scope: str | None = None, *, anywhere: bool = False, why: str = "",
                detail: str = "") -> Requirement:
    return Requirement((permission,), scope, anywhere, why, detail)


# The base permission of every work-starting mutation: starting work at all.
START_WORK = Requirement((Permission.LAUNCH, Permission.PROMOTE), None, True, "starts work")


# --- work ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobLaunch:
    """A run of ``job`` narrowed as the selector says (Nones/empties as Dagster reads them)."""

    job: JobRef
    assets: tuple[AssetKey, ...]  # () : no asset selection
    checks: tuple[CheckKey, ...] | None  # None: no check selection
    ops: tuple[str, ...]  # (): no op selection
    run_config: Any = None


@dataclass(frozen=True)
class RunReexecution:
    parent_run_id: str
    strategy: str


@dataclass(frozen=True)
class AssetBackfill:
    assets: tuple[AssetKey, ...]
    run_config: Any = None


@dataclass(frozen=True)
class JobBackfill:
    partition_set: PartitionSetRef
    run_config: Any = None


@dataclass(frozen=True)
class BackfillRestart:
    """reexecutePartitionBackfill / resumePartitionBackfill: the parent's work, its tags copied."""

    backfill_id: str
    how: str  # "re-execute" | "resume"


Work = JobLaunch | RunReexecution | AssetBackfill | JobBackfill | BackfillRestart


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Unresolvable(f"{what} missing or not a string")
    return value


def asset_key(value: Any, what: str) -> AssetKey:
    path = value.get("path") if isinstance(value, dict) else None
    if not isinstance(path, list) or not path or not all(isinstance(p, str) for p in path):
        raise Unresolvable(f"{what}: not an asset key {{path: [String!]!}}")
    return tuple(path)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise Unresolvable(f"{what} is not a list")
    return value


def job_launch(params: Any, what: str) -> JobLaunch:
    """The run an ExecutionParams asks for (pipeline_selector_from_graphql's reading)."""
    if not isinstance(params, dict):
        raise Unresolvable(f"{what}: execution parameters missing or not an object")
    selector = params.get("selector")
    if not isinstance(selector, dict):
        raise Unresolvable(f"{what}: selector missing or not an object")
    name = selector.get("pipelineName") or selector.get("jobName")  # the webserver's `or`
    job = JobRef(_string(selector.get("repositoryLocationName"), f"{what}: repositoryLocationName"),
                 _string(selector.get("repositoryName"), f"{what}: repositoryName"), _string(name, f"{what}: jobName"))
    raw_assets = selector.get("assetSelection")
    assets = tuple(asset_key(v, f"{what}: assetSelection") for v in _list(raw_assets, f"{what}: assetSelection")) if raw_assets else ()
    raw_checks = selector.get("assetCheckSelection")
    checks = None
    if raw_checks is not None:
        checks = tuple(_check_key(v, f"{what}: assetCheckSelection") for v in _list(raw_checks, f"{what}: assetCheckSelection"))
    raw_ops = selector.get("solidSelection")
    ops = tuple(_string(v, f"{what}: solidSelection item") for v in _list(raw_ops, f"{what}: solidSelection")) if raw_ops else ()
    return JobLaunch(job, assets, checks, ops, params.get("runConfigData"))


def _check_key(value: Any, what: str) -> CheckKey:
    if not isinstance(value, dict):
        raise Unresolvable(f"{what}: not an AssetCheckHandleInput")
    return asset_key(value.get("assetKey"), what), _string(value.get("name"), f"{what}: name")


def backfill_work(params: Any, what: str) -> list[Work]:
    """The work of a LaunchBackfillParams (create_and_launch_partition_backfill's reading).

    Every branch the webserver could take is included, so a request mixing them (which it
    refuses) is judged by everything it names.
    """
    if not isinstance(params, dict):
        raise Unresolvable(f"{what}: backfill parameters missing or not an object")
    run_config = params.get("runConfigData")
    work: list[Work] = []
    selector = params.get("selector")
    if selector is not None:
        if not isinstance(selector, dict) or not isinstance(selector.get("repositorySelector"), dict):
            raise Unresolvable(f"{what}: selector is not a PartitionSetSelector")
        repository = selector["repositorySelector"]
        work.append(JobBackfill(PartitionSetRef(
            _string(repository.get("repositoryLocationName"), f"{what}: repositoryLocationName"),
            _string(repository.get("repositoryName"), f"{what}: repositoryName"),
            _string(selector.get("partitionSetName"), f"{what}: partitionSetName"),
        ), run_config))
    raw_assets = params.get("assetSelection")
    keys = [asset_key(v, f"{what}: assetSelection") for v in _list(raw_assets, f"{what}: assetSelection")] if raw_assets else []
    by_assets = params.get("partitionsByAssets")
    if by_assets is not None:
        for item in _list(by_assets, f"{what}: partitionsByAssets"):
            keys.append(asset_key(item.get("assetKey") if isinstance(item, dict) else None, f"{what}: partitionsByAssets"))
    if keys or by_assets is not None or selector is None:
        work.append(AssetBackfill(tuple(dict.fromkeys(keys)), run_config))
    return work


def reexecution_work(reexecution: Any, execution: Any, what: str) -> list[Work]:
    """launchRunReexecution: ReexecutionParams (the parent's selection) or ExecutionParams (the
    selector sent, judged as a launch; stepKeys only narrow it further)."""
    work: list[Work] = []
    if reexecution is not None:
        if not isinstance(reexecution, dict):
            raise Unresolvable(f"{what}: reexecutionParams is not an object")
        strategy = reexecution.get("strategy")
        if strategy not in REEXECUTION_STRATEGIES:
            raise Unresolvable(f"{what}: re-execution strategy {strategy!r} unknown to the proxy")
        work.append(RunReexecution(_string(reexecution.get("parentRunId"), f"{what}: parentRunId"), strategy))
    if execution is not None:
        work.append(job_launch(execution, what))
    if not work:
        raise Unresolvable(f"{what}: neither reexecutionParams nor executionParams given")
    return work


def facts_for(work: Iterable[Work]) -> FactsRequest:
    """What to ask the webserver (it follows runs and backfills to their jobs itself)."""
    needed = FactsRequest()
    for item in work:
        if isinstance(item, JobLaunch):
            needed.jobs.add(item.job)
        elif isinstance(item, RunReexecution):
            needed.run_ids.add(item.parent_run_id)
            needed.run_jobs.add(item.parent_run_id)
        elif isinstance(item, AssetBackfill):
            needed.asset_keys |= set(item.assets)
        elif isinstance(item, JobBackfill):
            needed.partition_sets.add(item.partition_set)
        elif isinstance(item, BackfillRestart):
            needed.backfill_ids.add(item.backfill_id)
    return needed


# --- resolution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """What will run: asset groups touched, plain (non-asset) ops, and by which job."""

    groups: frozenset[str | None] = frozenset()
    plain_ops: frozenset[tuple[JobRef, str]] = frozenset()
    copied_tags: Mapping[str, str] | None = None  # restarts: the identity tags Dagster will copy
    notes: tuple[str, ...] = ()


def _job(facts: Facts, ref: JobRef) -> JobFacts:
    job = facts.jobs.get(ref)
    if job is None:
        raise Unresolvable(f"job {ref} is unknown to the webserver")
    return job


def resolve_launch(launch: JobLaunch, facts: Facts) -> Resolved:
    """The asset groups and plain ops a run of ``launch`` executes (a superset)."""
    job = _job(facts, launch.job)
    ops: set[str] = set()
    if launch.ops:
        plain = all(_PLAIN_OP_NAME.fullmatch(op) and op in job.op_assets for op in launch.ops)
        # An op selection query (*op, op+, a.b...) is read as the whole job: a superset.
        ops |= set(launch.ops) if plain else set(job.op_assets)
    assets: set[AssetKey] = set()
    checks: set[CheckKey] = set()
    if launch.assets or launch.checks:
        for key in launch.assets:
            if key not in job.groups:
                raise Unresolvable(f"asset {'/'.join(key)} is not part of job {launch.job.job}")
            assets.add(key)
        # A multi-asset op runs whole unless it can subset: count all of its assets.
        for op_keys in job.op_assets.values():
            if op_keys & assets:
                assets |= op_keys
        checks = set(launch.checks) if launch.checks is not None else {c for c in job.checks if c[0] in assets}
    elif not launch.ops:
        ops |= set(job.op_assets)  # no selection at all: the whole job
    groups: set[str | None] = set()
    plain_ops: set[tuple[JobRef, str]] = set()
    for op in ops:
        if job.op_assets.get(op):
            assets |= job.op_assets[op]
            continue
        check = job.check_op(op)
        if check is not None:
            checks.add(check)
        else:
            plain_ops.add((launch.job, op))
    for key in assets:
        groups.add(job.groups[key])
    for key, name in checks:
        if key not in job.groups and key not in facts.groups:
            raise Unresolvable(f"asset check {'/'.join(key)}:{name} checks an asset unknown to the webserver")
        groups.add(job.groups.get(key, facts.groups.get(key)))
    return Resolved(frozenset(groups), frozenset(plain_ops))


def _asset_groups(keys: Iterable[AssetKey], facts: Facts) -> frozenset[str | None]:
    groups = set()
    for key in keys:
        if key not in facts.groups:
            raise Unresolvable(f"asset {'/'.join(key)} is unknown to the webserver")
        groups.add(facts.groups[key])
    return frozenset(groups)


def resolve(item: Work, facts: Facts) -> Resolved:
    if isinstance(item, JobLaunch):
        return resolve_launch(item, facts)
    if isinstance(item, RunReexecution):
        run = facts.runs.get(item.parent_run_id)
        if run is None or run.job is None:
            raise Unresolvable(f"parent run {item.parent_run_id} is unknown to the webserver")
        # launch_reexecution_from_parent_run: the parent's job, asset and check selection.
        launch = JobLaunch(run.job, tuple(sorted(run.asset_keys or ())), None if run.check_keys is None else tuple(sorted(run.check_keys)), ())
        return resolve_launch(launch, facts)
    if isinstance(item, AssetBackfill):
        return Resolved(_asset_groups(item.assets, facts))
    if isinstance(item, JobBackfill):
        job = facts.partition_sets.get(item.partition_set)
        if job is None:
            raise Unresolvable(f"partition set {item.partition_set.name} is unknown to the webserver")
        return resolve_launch(JobLaunch(job, (), None, ()), facts)
    backfill = facts.backfills.get(item.backfill_id)
    if backfill is None:
        raise Unresolvable(f"backfill {item.backfill_id} is unknown to the webserver")
    if backfill.asset_keys is not None:
        resolved = Resolved(_asset_groups(backfill.asset_keys, facts))
    elif backfill.partition_set is not None:
        resolved = resolve(JobBackfill(backfill.partition_set), facts)
    else:
        raise Unresolvable(f"backfill {item.backfill_id} names neither assets nor a partition set")
    return Resolved(resolved.groups, resolved.plain_ops, dict(backfill.tags))



class LaunchRules(Protocol):
    """What launching needs per asset group and per job (the role policy answers)."""

    @property
    def protected_asset_groups(self) -> frozenset[str]: ...

    def launch_permission(self, asset_group: str | None) -> Permission: ...

    def op_permission(self, job_name: str) -> Permission: ...


def cancel_backfill_requirements(rules: LaunchRules, what: str, backfill_id: str, owner: str | None, username: str,
                                 resolved: Resolved | None) -> list[Requirement]:
    """cancelPartitionBackfill, judged like terminating its runs and launching its work.

    The one statement of the rule, for the proxy's decision and for the UI's
    ``PartitionBackfill.hasCancelPermission`` alike: backfill_manage in any scope; the caller's
    own backfill (its ``b2cal/user`` tag) or terminate_any; the launch permission of every asset
    group it runs (promote for protected ones) and of its plain ops. ``resolved`` None: its work
    is not known (a job backfill seen in an answer): every asset group, protected ones too.
    """
    rule = MUTATIONS["cancelPartitionBackfill"]
    assert rule.any_permission is not None
    # In any scope: the backfill's groups are checked below (an ECL expert cancels an ECL backfill).
    needs = [requirement(rule.permission, anywhere=True, why=f"{what}: needs {rule.permission.value}")]
    if owner is None or owner != username:
        needs.append(requirement(rule.any_permission, why=f"{what}: only your own backfills",
                                 detail=f"backfill {backfill_id} was launched by {owner or 'nobody recorded'}"))
    if resolved is None:
        needs.append(requirement(Permission.LAUNCH, why=f"{what}: stops a job's assets (any asset group)"))
        needs += [requirement(Permission.PROMOTE, g, why=f"{what}: stops assets of group {g}") for g in sorted(rules.protected_asset_groups)]
        return needs
    for group in sorted(resolved.groups, key=lambda g: (g is None, g or "")):
        needs.append(requirement(rules.launch_permission(group), group,
                                 why=f"{what}: stops assets of group {group}" if group else f"{what}: stops assets without a group"))
    for job, op in sorted(resolved.plain_ops):
        needs.append(requirement(rules.op_permission(job.job), None, why=f"{what}: stops op {op} of job {job.job}"))
    return needs


def restart_keeps_identity(copied: Mapping[str, str], username: str, grants: Iterable[RoleGrant]) -> bool:
    """Whether restarting (resume, re-execute) a backfill whose tags are ``copied`` runs under
    the caller's own identity: Dagster copies the parent's tags to the restart and its runs
    and offers no way to replace them, so they must already name the caller with its grants."""
    try:
        carried = parse_identity_tags(copied)
    except IdentityTagError:
        return False
    return bool(carried.user) and carried.user == username and set(carried.grants) == set(grants)

def run_config_keys(run_config: Any, what: str) -> list[str]:
    """Top-level run config sections a request sets that only the deployment may set.

    The webserver takes run config as an object or as YAML text (parse_run_config_input).
    """
    if run_config is None:
        return []
    if isinstance(run_config, str):
        try:
            run_config = yaml.safe_load(run_config) if run_config.strip() else None
        except yaml.YAMLError:
            raise Unresolvable(f"{what}: runConfigData is not valid YAML") from None
        if run_config is None:
            return []
    if not isinstance(run_config, dict):
        raise Unresolvable(f"{what}: runConfigData is not an object")
    return [key for key in DEPLOYMENT_RUN_CONFIG_KEYS if key in run_config]


def run_config_of(item: Work) -> Any:
    return getattr(item, "run_config", None)
