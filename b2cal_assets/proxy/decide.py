"""The role check: (principal, GraphQL operation or path, facts) -> allow or deny, and identity tagging.

Two pure steps around the only I/O the check needs, which the server does in between:
``facts_needed`` / ``path_facts_needed`` list the asset keys whose groups and the runs whose
owner/assets matter; ``authorize`` / ``authorize_path`` decide with those facts.
``inject_identity`` then rewrites launch variables so the run carries who approved it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql.language import VariableNode

from .errors import LaunchParametersError
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
from .policy import AssetKey, Grant, Policy
from .transport import GraphQLRequest

TAG_PREFIX = "b2cal/"
TAG_USER = "b2cal/user"
TAG_ROLES = "b2cal/roles"
TAG_DN = "b2cal/dn"


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
    def roles_tag(self) -> str:
        return ",".join(sorted({g.describe() for g in self.grants})) or "none"

    def identity_tags(self) -> list[dict[str, str]]:
        return [
            {"key": TAG_USER, "value": self.username},
            {"key": TAG_ROLES, "value": self.roles_tag},
            {"key": TAG_DN, "value": self.dn},
        ]


@dataclass(frozen=True)
class RunFacts:
    """What the proxy learnt about an existing run from the webserver."""

    run_id: str
    owner: str | None  # its b2cal/user tag
    asset_keys: frozenset[AssetKey] | None  # None: not an asset-selection run


@dataclass
class FactsRequest:
    asset_keys: set[AssetKey] = field(default_factory=set)
    run_ids: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not self.asset_keys and not self.run_ids


@dataclass(frozen=True)
class Facts:
    groups: Mapping[AssetKey, str | None] = field(default_factory=dict)
    runs: Mapping[str, RunFacts] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # short, for the client
    detail: str = ""  # long, for the log
    permissions: tuple[str, ...] = ()


def _key(value: Any) -> AssetKey | None:
    if isinstance(value, dict):
        value = value.get("path")
    if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        return tuple(value)
    return None


def _keys(values: Any, inner: str | None = None) -> set[AssetKey] | None:
    """Asset keys from a list of AssetKeyInput (or of objects holding one under ``inner``)."""
    if values is None:
        return set()
    if not isinstance(values, list):
        return None
    keys: set[AssetKey] = set()
    for value in values:
        key = _key(value.get(inner) if inner and isinstance(value, dict) else value)
        if key is None:
            return None  # malformed: unknown selection, decided fail-closed
        keys.add(key)
    return keys


def _selection_of_execution_params(params: Any) -> set[AssetKey] | None:
    """Asset keys an ExecutionParams selects, None when it is a whole job (unknown here)."""
    if not isinstance(params, dict):
        return None
    selector = params.get("selector")
    if not isinstance(selector, dict):
        return None
    assets = _keys(selector.get("assetSelection"))
    checks = _keys(selector.get("assetCheckSelection"), "assetKey")
    if assets is None or checks is None or (selector.get("assetSelection") is None and selector.get("assetCheckSelection") is None):
        return None
    return assets | checks


def _selection_of_backfill(params: Any) -> set[AssetKey] | None:
    if not isinstance(params, dict) or params.get("selector") is not None:
        return None  # a job/partition-set backfill: its assets are not listed
    assets = _keys(params.get("assetSelection"))
    by_assets = _keys(params.get("partitionsByAssets"), "assetKey")
    if assets is None or by_assets is None or not (assets or by_assets):
        return None
    return assets | by_assets


def _variable_value(root: RootField, argument: str, request: GraphQLRequest) -> Any:
    variable = root.launch_variable() if root.name in LAUNCH_ARGUMENTS else None
    if variable is None:
        return root.argument_value(argument, request.variables)
    if variable not in (request.variables or {}):
        # A default in the operation would be an inline literal the proxy cannot tag.
        raise LaunchParametersError(
            f"{root.name}: variable ${variable} is not supplied in variables", reason=f"supply variable ${variable} explicitly"
        )
    return (request.variables or {})[variable]


def launch_selection(root: RootField, request: GraphQLRequest) -> list[set[AssetKey] | None]:
    """Per launched run/backfill: the asset keys it selects (None: unknown)."""
    argument, is_list = LAUNCH_ARGUMENTS[root.name]
    value = _variable_value(root, argument, request)
    if root.name == "launchPartitionBackfill":
        return [_selection_of_backfill(value)]
    if is_list:
        return [_selection_of_execution_params(v) for v in value] if isinstance(value, list) and value else [None]
    return [_selection_of_execution_params(value)]


def _reexecution_parent(root: RootField, request: GraphQLRequest) -> str | None:
    params = root.argument_value("reexecutionParams", request.variables)
    if isinstance(params, dict) and isinstance(params.get("parentRunId"), str):
        return params["parentRunId"]
    execution = root.argument_value("executionParams", request.variables)
    if isinstance(execution, dict) and isinstance(execution.get("executionMetadata"), dict):
        parent = execution["executionMetadata"].get("parentRunId")
        return parent if isinstance(parent, str) else None
    return None


def _run_ids(root: RootField, request: GraphQLRequest) -> list[str] | None:
    if root.argument_node("runIds") is not None:
        value = root.argument_value("runIds", request.variables)
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
    value = root.argument_value("runId", request.variables)
    return [value] if isinstance(value, str) else None


def _reads_log_key(operation: Operation, root: RootField) -> bool:
    return operation.kind in ("query", "subscription") and root.name in LOG_KEY_FIELDS


def facts_needed(operation: Operation, request: GraphQLRequest) -> FactsRequest:
    """Asset keys and run ids whose facts ``authorize`` will consult."""
    needed = FactsRequest()
    if operation.kind != "mutation":
        for root in operation.root_fields:
            run_id = run_of_log_key(root.argument_value("logKey", request.variables)) if _reads_log_key(operation, root) else None
            if run_id is not None:
                needed.run_ids.add(run_id)
        return needed
    for root in operation.root_fields:
        rule = MUTATIONS.get(root.name)
        if rule is None:
            continue
        if rule.kind in (MutationKind.LAUNCH, MutationKind.BACKFILL):
            for selection in launch_selection(root, request):
                needed.asset_keys |= selection or set()
        elif rule.kind is MutationKind.REEXECUTE:
            parent = _reexecution_parent(root, request)
            if parent:
                needed.run_ids.add(parent)
        elif rule.kind is MutationKind.RUN_OWNER:
            needed.run_ids |= set(_run_ids(root, request) or [])
    return needed


def _deny(reason: str, detail: str, permissions: Iterable[str] = ()) -> Decision:
    return Decision(False, reason, detail, tuple(permissions))


def _check_selection(
    policy: Policy, principal: Principal, root: RootField, selections: list[set[AssetKey] | None], facts: Facts
) -> Decision | None:
    groups: set[str] = set()
    unknown = False
    for selection in selections:
        if selection is None:
            unknown = True
            continue
        for key in selection:
            group = facts.groups.get(key)
            if group is None:
                unknown = True  # an asset the webserver does not know: fail closed
            else:
                groups.add(group)
    if unknown and not policy.may_launch_unknown_selection(principal.grants):
        return _deny(
            f"{root.name}: selection not limited to known assets; needs unscoped launch",
            f"{root.label}: the selection is a whole job, a partition set or unknown assets, so its asset groups "
            f"cannot be checked; only an unscoped launch (+promote) grant may do this; grants: {principal.roles_tag}",
            ["launch"],
        )
    missing = policy.missing_groups(principal.grants, groups)
    if missing:
        return _deny(
            f"{root.name}: not allowed for asset group(s) {', '.join(missing)}",
            f"{root.label}: selection touches asset groups {sorted(groups)}; grants {principal.roles_tag} do not cover "
            f"{missing} (protected groups need promote: {sorted(policy.protected_asset_groups)})",
            [policy.launch_permission(g).value for g in missing],
        )
    return None


def _check_mutation(policy: Policy, principal: Principal, root: RootField, rule: MutationRule, request: GraphQLRequest, facts: Facts) -> Decision | None:
    grants = principal.grants
    if rule.kind in (MutationKind.LAUNCH, MutationKind.BACKFILL):
        return _check_selection(policy, principal, root, launch_selection(root, request), facts)
    if rule.kind is MutationKind.REEXECUTE:
        parent = _reexecution_parent(root, request)
        run = facts.runs.get(parent) if parent else None
        selection = None if run is None or run.asset_keys is None else set(run.asset_keys)
        return _check_selection(policy, principal, root, [selection], facts)
    if rule.kind is MutationKind.REEXECUTE_BACKFILL:
        return _check_selection(policy, principal, root, [None], facts)
    if rule.kind is MutationKind.RUN_OWNER:
        assert rule.any_permission is not None
        if policy.has(grants, rule.any_permission):
            return None
        if not policy.has(grants, rule.permission):
            return _deny(
                f"{root.name} needs {rule.permission.value}",
                f"{root.label}: needs {rule.permission.value} or {rule.any_permission.value}; grants {principal.roles_tag}",
                [rule.permission.value],
            )
        run_ids = _run_ids(root, request)
        if run_ids is None:
            return _deny(f"{root.name}: run ids unreadable", f"{root.label}: runId(s) argument missing or malformed", [rule.any_permission.value])
        others = [r for r in run_ids if (facts.runs.get(r) is None or facts.runs[r].owner != principal.username)]
        if others:
            return _deny(
                f"{root.name}: only your own runs",
                f"{root.label}: runs {others} were not launched by {principal.username} (b2cal/user tag differs or run "
                f"unknown); needs {rule.any_permission.value}",
                [rule.any_permission.value],
            )
        return None
    if not policy.has(grants, rule.permission):
        return _deny(
            f"{root.name} needs {rule.permission.value}",
            f"{root.label}: needs permission {rule.permission.value}; grants {principal.roles_tag}",
            [rule.permission.value],
        )
    return None


def _may_read_own_run_logs(policy: Policy, grants: Iterable[Grant]) -> bool:
    """OWN_RUN_LOGS in any grant, scoped or not: an ECL expert reads the logs of runs they launched."""
    return any(OWN_RUN_LOGS in policy.permissions(grant.role) for grant in grants)


def _check_log_key(policy: Policy, principal: Principal, what: str, log_key: Any, facts: Facts) -> Decision:
    """May ``principal`` read the captured logs under ``log_key``? ``what`` names the request in messages.

    Every log with CAPTURED_LOGS; with OWN_RUN_LOGS only a run's compute-log key whose run
    carries the principal's b2cal/user tag. A key that is not a run's, or a run the webserver
    does not know, is refused (fail closed).
    """
    everything = Permission.CAPTURED_LOGS.value
    if policy.has(principal.grants, Permission.CAPTURED_LOGS):
        return Decision(True, "allowed", f"{what}: captured logs {log_key!r}", (everything,))
    if not _may_read_own_run_logs(policy, principal.grants):
        return _deny(
            f"{what}: needs {everything}",
            f"{what}: captured logs need {everything} (or {OWN_RUN_LOGS.value}, for one's own runs); grants {principal.roles_tag}",
            [everything],
        )
    run_id = run_of_log_key(log_key)
    if run_id is None:
        return _deny(
            f"{what}: only the logs of your own runs",
            f"{what}: log key {log_key!r} is not a run's [run_id, compute_logs, file_key]; reading it needs {everything}; "
            f"grants {principal.roles_tag}",
            [everything],
        )
    run = facts.runs.get(run_id)
    if run is None or run.owner != principal.username:
        whose = "is unknown to the webserver" if run is None else f"was launched by {run.owner or 'nobody recorded'}"
        return _deny(
            f"{what}: only the logs of your own runs",
            f"{what}: run {run_id} {whose}, not by {principal.username}; its captured logs need {everything}",
            [everything],
        )
    return Decision(True, "allowed", f"{what}: captured logs of own run {run_id}", (OWN_RUN_LOGS.value,))


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
        return _check_log_key(policy, principal, "log download", log_key, facts)
    if not policy.has(principal.grants, rule.permission):
        return _deny(
            f"needs {rule.permission.value} permission",
            f"{what} needs {rule.permission.value}; grants {principal.roles_tag}",
            [rule.permission.value],
        )
    return Decision(True, "allowed", what, (rule.permission.value,))


def authorize(
    policy: Policy,
    principal: Principal,
    operation: Operation,
    request: GraphQLRequest,
    facts: Facts,
    *,
    mutations_allowed: bool,
    transport: str,
) -> Decision:
    """Decide one GraphQL request; every root field must be allowed."""
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
    needed: set[str] = set()
    notes: list[str] = []
    for root in operation.root_fields:
        reads_log_key = _reads_log_key(operation, root)
        for permission in sorted(root.sensitive):
            if reads_log_key and permission is Permission.CAPTURED_LOGS:
                # The root field itself: decided by its logKey below. (Its result types,
                # CapturedLogs and CapturedLogsMetadata, have no captured-log fields.)
                continue
            needed.add(permission.value)
            if not policy.has(principal.grants, permission):
                return _deny(
                    f"{root.name}: needs {permission.value}",
                    f"{root.label}: selects a sensitive field needing {permission.value}; grants {principal.roles_tag}",
                    [permission.value],
                )
        if operation.kind == "mutation":
            rule = MUTATIONS.get(root.name)
            if rule is None:
                return _deny(f"unknown mutation {root.name}", f"mutation {root.label} is not in the proxy's table: denied")
            needed.add(rule.permission.value)
            refusal = _check_mutation(policy, principal, root, rule, request, facts)
        elif reads_log_key:
            verdict = _check_log_key(policy, principal, root.label, root.argument_value("logKey", request.variables), facts)
            needed.update(verdict.permissions)
            notes.append(verdict.detail)
            refusal = None if verdict.allowed else verdict
        elif operation.kind == "subscription":
            permission = SUBSCRIPTIONS.get(root.name)
            if permission is None:
                return _deny(f"unknown subscription {root.name}", f"subscription {root.label} is not in the proxy's table: denied")
            needed.add(permission.value)
            refusal = None if policy.has(principal.grants, permission) else _deny(
                f"{root.name} needs {permission.value}", f"{root.label}: needs {permission.value}; grants {principal.roles_tag}", [permission.value]
            )
        else:
            needed.add(Permission.READ.value)
            refusal = None if policy.has(principal.grants, Permission.READ) else _deny(
                "read access needed", f"{root.label}: needs read; grants {principal.roles_tag}", ["read"]
            )
        if refusal is not None:
            return refusal
    return Decision(True, "allowed", "; ".join([operation.describe(), *notes]), tuple(sorted(needed)))


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
    """Rewrite ``request.variables`` so runs launched by ``operation`` carry the identity tags.

    Returns True if anything was rewritten. Launch parameters must be variables (checked by
    :meth:`RootField.launch_variable`); re-execution parameters given inline are made
    variables by refusing them here.
    """
    if operation.kind != "mutation":
        return False
    changed = False
    for root in operation.root_fields:
        rule = MUTATIONS.get(root.name)
        if rule is None or rule.kind not in (MutationKind.LAUNCH, MutationKind.BACKFILL, MutationKind.REEXECUTE, MutationKind.REEXECUTE_BACKFILL):
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
        # Re-execution: tags go to reexecutionParams.extraTags or executionParams' metadata.
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
