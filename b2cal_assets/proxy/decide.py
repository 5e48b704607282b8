"""The role check: (principal, GraphQL operation or path, facts) -> allow or deny, and identity tagging.

One route for every decision: the request is turned into the set of (permission, scope)
:class:`Requirement` s of what it would do (for work-starting mutations: of what Dagster will
*execute*, resolved in :mod:`execution`), and the policy is asked once whether the caller's
grants meet them all. Two pure steps around the only I/O the check needs, which the server
does in between: ``facts_needed`` / ``path_facts_needed`` list what to ask the webserver
(jobs, runs, backfills, asset groups); ``authorize`` / ``authorize_path`` decide with those
facts. ``inject_identity`` then rewrites launch variables so the run carries its launcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql.language import VariableNode

from b2cal_assets.auth.run_tags import (
    TAG_DN,
    TAG_PREFIX,
    TAG_ROLES,
    TAG_USER,
    IdentityTagError,
    RoleGrant,
    format_identity_tags,
    parse_identity_tags,
)

from .errors import LaunchParametersError, ReverseProxyRefusal
from .execution import (
    REEXECUTION_STRATEGIES,
    START_WORK,
    BackfillFacts,
    BackfillRestart,
    Facts,
    FactsRequest,
    JobFacts,
    JobRef,
    Requirement,
    RunFacts,
    RunReexecution,
    Unresolvable,
    Work,
    backfill_work,
    cancel_backfill_requirements,
    facts_for,
    job_launch,
    reexecution_work,
    requirement,
    resolve,
    restart_keeps_identity,
    run_config_keys,
    run_config_of,
)
from .graphql_ops import Operation, RootField
from .permissions import (
    LAUNCH_ARGUMENTS,
    LOG_FILE_EXTENSIONS,
    LOG_KEY_FIELDS,
    MUTATIONS,
    OWN_RUN_LOGS,
    SUBSCRIPTIONS,
    MutationKind,
    MutationRule,
    Permission,
    classify_path,
    log_download_key,
    run_of_log_key,
)
from .policy import Grant, Policy
from .transport import GraphQLRequest

__all__ = [
    "TAG_DN", "TAG_PREFIX", "TAG_ROLES", "TAG_USER", "BackfillFacts", "Decision", "Facts", "FactsRequest", "JobFacts",
    "JobRef", "Principal", "RunFacts", "authorize", "authorize_path", "facts_needed", "inject_identity",
    "path_facts_needed", "requirements",
]


@dataclass(frozen=True)
class Principal:
    """Who is asking, with the grants the policy gave them."""

    dn: str
    username: str
    grants: tuple[Grant, ...]
    role_source: str  # "voms" (AC FQANs) or "dirac" (account groups)
    fqans: tuple[str, ...] = ()
    note: str | None = None  # e.g. degraded to viewer because the accounts set is stale

    @property
    def role_grants(self) -> tuple[RoleGrant, ...]:
        return tuple(RoleGrant(g.role, g.asset_groups) for g in self.grants)

    @property
    def roles_tag(self) -> str:
        return format_identity_tags(self.username or "?", self.role_grants, self.dn)[TAG_ROLES]

    def identity_tags(self) -> list[dict[str, str]]:
        return [{"key": k, "value": v} for k, v in format_identity_tags(self.username, self.role_grants, self.dn).items()]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # short, for the client
    detail: str = ""  # long, for the log
    permissions: tuple[str, ...] = ()


class _Refused(ReverseProxyRefusal):
    """A request refused before any requirement is weighed (unknown field, identity not carried)."""

    def __init__(self, reason: str, detail: str, permissions: Iterable[str] = ()) -> None:
        super().__init__(reason)
        self.reason, self.detail, self.permissions = reason, detail, tuple(permissions)


def _deny(reason: str, detail: str, permissions: Iterable[str] = ()) -> Decision:
    return Decision(False, reason, detail, tuple(permissions))


# --- reading the request -------------------------------------------------------------------


def _variable_value(root: RootField, argument: str, request: GraphQLRequest) -> Any:
    """A launch argument's value; it must be a supplied variable (the proxy tags it there)."""
    variable = root.launch_variable() if root.name in LAUNCH_ARGUMENTS else None
    if variable is None:
        return root.argument_value(argument, request.variables)
    if variable not in (request.variables or {}):
        # A default in the operation would be an inline literal the proxy cannot tag.
        raise LaunchParametersError(
            f"{root.name}: variable ${variable} is not supplied in variables", reason=f"supply variable ${variable} explicitly"
        )
    return (request.variables or {})[variable]


def work_of(root: RootField, rule: MutationRule, request: GraphQLRequest) -> list[Work]:
    """What a work-starting mutation asks Dagster to run (raises Unresolvable / LaunchParametersError)."""
    what = root.label
    if rule.kind is MutationKind.LAUNCH:
        argument, is_list = LAUNCH_ARGUMENTS[root.name]
        value = _variable_value(root, argument, request)
        if not is_list:
            return [job_launch(value, what)]
        if not isinstance(value, list) or not value:
            raise Unresolvable(f"{what}: {argument} is not a non-empty list")
        return [job_launch(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if rule.kind is MutationKind.BACKFILL:
        return backfill_work(_variable_value(root, "backfillParams", request), what)
    if rule.kind is MutationKind.REEXECUTE:
        return reexecution_work(root.argument_value("reexecutionParams", request.variables),
                                root.argument_value("executionParams", request.variables), what)
    if rule.kind is MutationKind.REEXECUTE_BACKFILL:
        params = root.argument_value("reexecutionParams", request.variables)
        if not isinstance(params, dict) or not isinstance(params.get("parentRunId"), str):
            raise Unresolvable(f"{what}: reexecutionParams.parentRunId (the backfill id) missing")
        if params.get("strategy") not in REEXECUTION_STRATEGIES:
            raise Unresolvable(f"{what}: re-execution strategy {params.get('strategy')!r} unknown to the proxy")
        return [BackfillRestart(params["parentRunId"], "re-execute")]
    if rule.kind is MutationKind.RESUME_BACKFILL:
        backfill_id = root.argument_value("backfillId", request.variables)
        if not isinstance(backfill_id, str):
            raise Unresolvable(f"{what}: backfillId missing")
        return [BackfillRestart(backfill_id, "resume")]
    return []


def _run_ids(root: RootField, request: GraphQLRequest) -> list[str] | None:
    if root.argument_node("runIds") is not None:
        value = root.argument_value("runIds", request.variables)
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
    value = root.argument_value("runId", request.variables)
    return [value] if isinstance(value, str) else None


def _reads_log_key(operation: Operation, root: RootField) -> bool:
    return operation.kind in ("query", "subscription") and root.name in LOG_KEY_FIELDS


def _starts_work(rule: MutationRule) -> bool:
    return rule.kind in WORK_KINDS


WORK_KINDS = frozenset({MutationKind.LAUNCH, MutationKind.BACKFILL, MutationKind.REEXECUTE, MutationKind.REEXECUTE_BACKFILL,
                        MutationKind.RESUME_BACKFILL})


def facts_needed(operation: Operation, request: GraphQLRequest) -> FactsRequest:
    """What ``authorize`` will consult: jobs, runs, backfills, asset groups (the webserver's
    answer follows runs and backfills to their jobs). Unreadable parameters need nothing:
    ``authorize`` refuses them."""
    needed = FactsRequest()
    for root in operation.root_fields:
        if operation.kind != "mutation":
            run_id = run_of_log_key(root.argument_value("logKey", request.variables)) if _reads_log_key(operation, root) else None
            if run_id is not None:
                needed.run_ids.add(run_id)
            continue
        rule = MUTATIONS.get(root.name)
        if rule is None:
            continue
        if _starts_work(rule):
            try:
                needed.update(facts_for(work_of(root, rule, request)))
            except (Unresolvable, LaunchParametersError):
                continue
        elif rule.kind is MutationKind.RUN_OWNER:
            needed.run_ids |= set(_run_ids(root, request) or [])
        elif rule.kind is MutationKind.BACKFILL_OWNER:
            backfill_id = root.argument_value("backfillId", request.variables)
            if isinstance(backfill_id, str):
                needed.update(facts_for([BackfillRestart(backfill_id, "cancel")]))
    return needed


# Upstream look-ups (jobs, backfills, partition sets, re-executed runs' jobs: one webserver
# query each) one request may cause. Why: a list of many distinct jobs would make the proxy
# query the webserver thousands of times for one request.
MAX_FACT_LOOKUPS = 50


def lookups_refused(needed: FactsRequest) -> Decision | None:
    """A refusal when ``needed`` would take more than MAX_FACT_LOOKUPS webserver queries."""
    count = len(needed.jobs) + len(needed.backfill_ids) + len(needed.partition_sets) + len(needed.run_jobs)
    if count <= MAX_FACT_LOOKUPS:
        return None
    return _deny(f"too many distinct jobs, backfills or runs in one request (at most {MAX_FACT_LOOKUPS}): split it",
                 f"the request names {count} jobs/backfills/partition sets/parent runs; limit {MAX_FACT_LOOKUPS}")


# --- requirements ----------------------------------------------------------------------------


def _may_read_own_run_logs(policy: Policy, grants: Iterable[Grant]) -> bool:
    """OWN_RUN_LOGS in any grant, scoped or not: an ECL expert reads the logs of runs they launched."""
    return any(OWN_RUN_LOGS in policy.permissions(grant.role) for grant in grants)


def _log_key_requirement(policy: Policy, principal: Principal, what: str, log_key: Any, facts: Facts) -> Requirement:
    """Reading the captured logs under ``log_key``: CAPTURED_LOGS reads every log; OWN_RUN_LOGS
    (in any scope) only a run's compute-log key whose run carries the principal's b2cal/user.
    A key that is not a run's, or a run the webserver does not know, needs CAPTURED_LOGS."""
    everything = Permission.CAPTURED_LOGS
    if policy.has(principal.grants, everything) or not _may_read_own_run_logs(policy, principal.grants):
        return requirement(everything, why=f"{what}: captured logs", detail=f"log key {log_key!r}")
    run_id = run_of_log_key(log_key)
    if run_id is None:
        return requirement(everything, why=f"{what}: only the logs of your own runs",
                           detail=f"log key {log_key!r} is not a run's [run_id, compute_logs, file_key]")
    run = facts.runs.get(run_id)
    if run is None or run.owner != principal.username:
        whose = "is unknown to the webserver" if run is None else f"was launched by {run.owner or 'nobody recorded'}"
        return requirement(everything, why=f"{what}: only the logs of your own runs", detail=f"run {run_id} {whose}")
    return requirement(OWN_RUN_LOGS, anywhere=True, why=f"{what}: captured logs of own run {run_id}")


def _identity_carried(principal: Principal, copied: Mapping[str, str], what: str, restart: BackfillRestart) -> None:
    """Dagster copies a restarted backfill's tags to it and its runs: allowed only when they
    already name the caller with the caller's grants (the proxy cannot replace them)."""
    if not restart_keeps_identity(copied, principal.username, principal.role_grants):
        try:
            owner = parse_identity_tags(copied).user or "nobody recorded"
        except IdentityTagError:
            owner = "nobody recorded"
        raise _Refused(
            f"{what}: Dagster keeps backfill {restart.backfill_id}'s identity tags ({owner}) on its runs; "
            "only that user with the same roles may restart it: launch a new backfill instead",
            f"{what}: {restart.how} backfill {restart.backfill_id}: its tags name {owner} with roles "
            f"{copied.get(TAG_ROLES, 'none')!r}; the caller is {principal.username} with {principal.roles_tag}; "
            "dagster-graphql copies the parent's tags and offers no way to set new ones",
        )


def _work_requirements(policy: Policy, principal: Principal, what: str, work: list[Work], facts: Facts | None) -> list[Requirement]:
    needs = [Requirement(START_WORK.permissions, None, True, f"{what}: starts work")]
    for item in work:
        for key in run_config_keys(run_config_of(item), what):
            needs.append(requirement(Permission.DEPLOYMENT_CONFIG, why=f"{what}: runConfigData.{key} is set by the deployment"))
    if facts is None:
        return needs
    for item in work:
        resolved = resolve(item, facts)
        for group in sorted(resolved.groups, key=lambda g: (g is None, g or "")):
            needs.append(requirement(policy.launch_permission(group), group,
                                     why=f"{what}: runs assets of group {group}" if group else f"{what}: runs assets without a group"))
        for job, op in sorted(resolved.plain_ops):
            needs.append(requirement(policy.op_permission(job.job), None, why=f"{what}: runs op {op} of job {job.job}"))
        if isinstance(item, BackfillRestart):
            _identity_carried(principal, resolved.copied_tags or {}, what, item)
        if isinstance(item, RunReexecution):
            # Dagster re-runs with the parent's run config: its deployment keys count as sent.
            parent = facts.runs.get(item.parent_run_id)
            for key in run_config_keys(parent.run_config if parent is not None else None, what):
                needs.append(requirement(Permission.DEPLOYMENT_CONFIG,
                                         why=f"{what}: the parent run's runConfigData.{key} is set by the deployment"))
    return needs


def _mutation_requirements(policy: Policy, principal: Principal, root: RootField, request: GraphQLRequest,
                           facts: Facts | None) -> list[Requirement]:
    rule = MUTATIONS.get(root.name)
    if rule is None:
        raise _Refused(f"unknown mutation {root.name}", f"mutation {root.label} is not in the proxy's table: denied")
    what = root.label
    if _starts_work(rule):
        return _work_requirements(policy, principal, what, work_of(root, rule, request), facts)
    if rule.kind is MutationKind.RUN_OWNER:
        assert rule.any_permission is not None
        needs = [requirement(rule.permission, why=f"{what}: needs {rule.permission.value}")]
        run_ids = _run_ids(root, request)
        if run_ids is None:
            raise Unresolvable(f"{what}: runId(s) argument missing or malformed")
        for run_id in run_ids if facts is not None else ():
            run = facts.runs.get(run_id)
            if run is None or run.owner != principal.username:
                whose = "is unknown" if run is None else "was launched by " + (run.owner or "nobody recorded")
                needs.append(requirement(rule.any_permission, why=f"{what}: only your own runs", detail=f"run {run_id} {whose}"))
        return needs
    if rule.kind is MutationKind.BACKFILL_OWNER:
        return _cancel_requirements(policy, principal, root, rule, request, facts)
    return [requirement(rule.permission, why=f"{what}: needs {rule.permission.value}")]


def _cancel_requirements(policy: Policy, principal: Principal, root: RootField, rule: MutationRule,
                         request: GraphQLRequest, facts: Facts | None) -> list[Requirement]:
    """Cancelling a backfill: execution.cancel_backfill_requirements (the UI's hasCancelPermission
    asks the same); without facts only its base permission (backfill_manage in any scope)."""
    what = root.label
    backfill_id = root.argument_value("backfillId", request.variables)
    if not isinstance(backfill_id, str):
        raise Unresolvable(f"{what}: backfillId missing")
    if facts is None:
        return [requirement(rule.permission, anywhere=True, why=f"{what}: needs {rule.permission.value}")]
    resolved = resolve(BackfillRestart(backfill_id, "cancel"), facts)  # Unresolvable when the webserver does not know it
    owner = facts.backfills[backfill_id].tags.get(TAG_USER)
    return cancel_backfill_requirements(policy, what, backfill_id, owner, principal.username, resolved)


def requirements(policy: Policy, principal: Principal, operation: Operation, request: GraphQLRequest,
                 facts: Facts | None) -> list[Requirement]:
    """Every (permission, scope) the operation needs. Raises Unresolvable or _Refused.

    ``facts`` None: only the requirements that need no facts from the webserver (the base
    permission of each field): judged first, so a refused caller costs no upstream query."""
    needs: list[Requirement] = []
    for root in operation.root_fields:
        reads_log_key = _reads_log_key(operation, root)
        for permission in sorted(root.sensitive):
            if reads_log_key and permission is Permission.CAPTURED_LOGS:
                continue  # the root field itself: decided by its logKey below
            needs.append(requirement(permission, why=f"{root.label}: selects a field needing {permission.value}"))
        if operation.kind == "mutation":
            needs.extend(_mutation_requirements(policy, principal, root, request, facts))
        elif reads_log_key and facts is None:
            needs.append(Requirement((Permission.CAPTURED_LOGS, OWN_RUN_LOGS), None, True, f"{root.label}: captured logs"))
        elif reads_log_key:
            needs.append(_log_key_requirement(policy, principal, root.label, root.argument_value("logKey", request.variables), facts))
        elif operation.kind == "subscription":
            permission = SUBSCRIPTIONS.get(root.name)
            if permission is None:
                raise _Refused(f"unknown subscription {root.name}", f"subscription {root.label} is not in the proxy's table: denied")
            needs.append(requirement(permission, why=f"{root.label}: needs {permission.value}"))
        else:
            needs.append(requirement(Permission.READ, why=f"{root.label}: read access needed"))
    return needs


def _judge(policy: Policy, principal: Principal, needs: list[Requirement], allowed_detail: str) -> Decision:
    """The one question to the policy: are all ``needs`` met?"""
    unmet = policy.unmet(principal.grants, needs)
    if unmet:
        first = unmet[0]
        reason = first.why if first.why.endswith(f"needs {first.describe()}") else f"{first.why}: needs {first.describe()}"
        detail = "; ".join(f"{_explain(n)} -> needs {n.describe()}" for n in unmet) + f"; grants {principal.roles_tag}"
        return _deny(reason, detail, sorted({p.value for n in unmet for p in n.permissions}))
    notes = [_explain(n) for n in dict.fromkeys(needs) if n.permissions != (Permission.READ,)]
    permissions = sorted({n.permissions[0].value if len(n.permissions) == 1 else _first_held(policy, principal, n)
                          for n in needs})
    return Decision(True, "allowed", "; ".join([allowed_detail, *notes]), tuple(permissions))


def _explain(need: Requirement) -> str:
    return f"{need.why} ({need.detail})" if need.detail else need.why


def _first_held(policy: Policy, principal: Principal, need: Requirement) -> str:
    for permission in need.permissions:
        if policy.satisfies(principal.grants, Requirement((permission,), need.scope, need.anywhere)):
            return permission.value
    return need.permissions[0].value


# --- entry points ----------------------------------------------------------------------------


def authorize(
    policy: Policy,
    principal: Principal,
    operation: Operation,
    request: GraphQLRequest,
    facts: Facts | None,
    *,
    mutations_allowed: bool,
    transport: str,
) -> Decision:
    """Decide one GraphQL request: what it would do, against the caller's grants.

    ``facts`` None judges only what needs no facts (see ``requirements``); the caller then
    fetches the facts and asks again with them."""
    if operation.kind == "mutation" and not mutations_allowed:
        return _deny(
            "mutations must be POSTed as application/json",
            f"mutation {operation.describe()} over {transport}: refused (CSRF protection: only POST with media type "
            "application/json may carry mutations)",
        )
    if transport == "websocket" and operation.kind != "subscription":
        return _deny("only subscriptions over the websocket", f"{operation.kind} over the websocket refused")
    if not operation.root_fields:
        return _deny("empty operation", "operation selects no root field")
    try:
        needs = requirements(policy, principal, operation, request, facts)
    except Unresolvable as error:
        return _deny(f"cannot tell what this would execute: {error.reason}",
                     f"{operation.describe()}: refused (fail closed): {error.reason}; grants {principal.roles_tag}")
    except _Refused as refused:
        return _deny(refused.reason, refused.detail, refused.permissions)
    return _judge(policy, principal, needs, operation.describe())


def path_facts_needed(path: str) -> FactsRequest:
    """Run ids whose facts ``authorize_path`` will consult (a /logs/ download's run)."""
    needed = FactsRequest()
    download = log_download_key(path)
    run_id = run_of_log_key(download[0]) if download is not None else None
    if run_id is not None:
        needed.run_ids.add(run_id)
    return needed


def authorize_path(policy: Policy, principal: Principal, path: str, method: str, facts: Facts) -> Decision:
    """Decide a request for a decoded, prefix-stripped path other than /graphql."""
    rule = classify_path(path, method)
    if rule is None:
        raise ValueError(f"authorize_path({path!r}): GraphQL is decided by authorize(), not by path")
    what = f"{method} {path}"
    if rule.methods is not None and method not in rule.methods:
        return _deny(f"{method} not allowed here", f"{what}: only {', '.join(sorted(rule.methods))} (no write endpoint here)")
    download = log_download_key(path) if rule.run_logs else None
    if download is not None and not policy.has(principal.grants, rule.permission):
        log_key, extension = download
        if extension not in LOG_FILE_EXTENSIONS:
            return _deny(
                "only stdout (out) and stderr (err) logs of your own runs",
                f"{what}: file extension {extension!r} is not one of {sorted(LOG_FILE_EXTENSIONS)}; needs {rule.permission.value}",
                [rule.permission.value],
            )
        # Named without the path: the client's short reason should not echo it (the audit record has it).
        return _judge(policy, principal, [_log_key_requirement(policy, principal, "log download", log_key, facts)], what)
    return _judge(policy, principal, [requirement(rule.permission, why=what)], what)


# --- identity tags ---------------------------------------------------------------------------


def _set_tags(tags: Any, principal: Principal) -> list[dict[str, Any]]:
    """Client tags minus any b2cal/* (a client must not claim an identity), plus ours."""
    kept = [t for t in tags if not (isinstance(t, dict) and str(t.get("key", "")).startswith(TAG_PREFIX))] if isinstance(tags, list) else []
    return kept + principal.identity_tags()


def _tag_execution_params(params: Any, principal: Principal) -> None:
    if not isinstance(params, dict):
        return
    metadata = params.get("executionMetadata")
    if not isinstance(metadata, dict):
        metadata = {}
        params["executionMetadata"] = metadata
    metadata["tags"] = _set_tags(metadata.get("tags"), principal)


def inject_identity(operation: Operation, request: GraphQLRequest, principal: Principal) -> bool:
    """Rewrite ``request.variables`` so runs started by ``operation`` carry the caller's identity tags.

    Returns True if anything was rewritten. Launch parameters must be variables (checked by
    :meth:`RootField.launch_variable`); re-execution parameters given inline are refused here.
    Backfill restarts keep the parent's tags, which ``authorize`` allowed only when they are
    the caller's already.
    """
    if operation.kind != "mutation":
        return False
    changed = False
    for root in operation.root_fields:
        rule = MUTATIONS.get(root.name)
        if rule is None or rule.kind not in (MutationKind.LAUNCH, MutationKind.BACKFILL, MutationKind.REEXECUTE):
            continue
        variables = request.variables if request.variables is not None else {}
        request.variables = variables
        if rule.kind in (MutationKind.LAUNCH, MutationKind.BACKFILL):
            name = root.launch_variable()
            value = variables.get(name)
            if root.name == "launchPartitionBackfill":
                if isinstance(value, dict):
                    value["tags"] = _set_tags(value.get("tags"), principal)
            elif isinstance(value, list):
                for params in value:
                    _tag_execution_params(params, principal)
            else:
                _tag_execution_params(value, principal)
            changed = True
            continue
        # Re-execution: tags go to reexecutionParams.extraTags (they override the parent's) or
        # executionParams' metadata.
        tagged = False
        for argument in ("reexecutionParams", "executionParams"):
            node = root.argument_node(argument)
            if node is None:
                continue
            if not isinstance(node, VariableNode) or node.name.value not in variables:
                raise LaunchParametersError(
                    f"{root.name}: {argument} is not a supplied variable", reason=f"pass {argument} of {root.name} as a GraphQL variable"
                )
            value = variables[node.name.value]
            if argument == "reexecutionParams" and isinstance(value, dict):
                value["extraTags"] = _set_tags(value.get("extraTags"), principal)
                tagged = True
            elif argument == "executionParams":
                _tag_execution_params(value, principal)
                tagged = tagged or isinstance(value, dict)
        if not tagged:
            raise LaunchParametersError(f"{root.name}: no parameters to tag", reason=f"{root.name} needs parameters passed as variables")
        changed = True
    return changed
