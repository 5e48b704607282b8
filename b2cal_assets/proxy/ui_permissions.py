"""Permission fields told truthfully: what the Dagster UI reads to enable its buttons, rewritten
for the authenticated user.

dagster-webserver answers every permission field with ``true`` (it knows no users). The UI
disables a button only when the field says ``false``, so the proxy rewrites them in answers:

1. :func:`plan` injects, into every selection set of a document that selects a permission
   field, the facts the decision needs, under aliases starting with ``__b2cal_`` (the runtime
   ``__typename``; an asset's ``groupName``; a run's tags and asset selection; a permission's
   name; an instigator's type). Aliases and fragments of the client are kept as sent.
2. :func:`rewrite_answer` walks the answer alongside the client's own selection (aliases,
   inline and named fragments, resolved against the runtime type), replaces each permission
   field by the policy's verdict (never widening what the webserver said), sets
   ``disabledReason`` naming what is missing, and removes the injected keys.

The verdicts come from :class:`Judge`, which asks the role policy only through its public
questions (``has``, ``missing_groups``, ``may_launch_unknown_selection``). Enforcement stays in
decide.py: this module only makes the UI show what the proxy will allow. Pure graphql-core.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    is_abstract_type,
    parse,
    print_ast,
)
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from b2cal_assets.auth.run_tags import TAG_USER, RoleGrant

from .errors import BadRequestError
from .execution import START_WORK, Requirement, Resolved, cancel_backfill_requirements, requirement, restart_keeps_identity
from .permissions import Permission
from .policy import ROLE_NAMES, SCOPED, AssetKey, Grant, Policy

INJECTED = "__b2cal_"
TYPENAME = "__b2cal_t"
GROUP = "__b2cal_g"
PERMISSION_NAME = "__b2cal_p"
TAGS = "__b2cal_tags"
ASSETS = "__b2cal_assets"
INSTIGATION = "__b2cal_it"
OWNER_TAG = TAG_USER  # the launcher's username; auth/run_tags.py owns the identity tags

# Every permission field of the installed schema, by (type, field); a test lists the schema's
# fields and fails when one is missing here. The value names the question asked (Judge).
PERMISSION_FIELDS: dict[tuple[str, str], str] = {
    ("Query", "permissions"): "permission_list",
    ("WorkspaceLocationEntry", "permissions"): "permission_list",
    ("WorkspaceLocationStatusEntry", "permissions"): "permission_list",
    ("AssetNode", "hasMaterializePermission"): "materialize_asset",
    ("AssetNode", "hasWipePermission"): "wipe",
    ("AssetNode", "hasReportRunlessAssetEventPermission"): "report_events",
    ("Job", "hasLaunchExecutionPermission"): "launch_job",
    ("Job", "hasLaunchReexecutionPermission"): "launch_job",
    ("Pipeline", "hasLaunchExecutionPermission"): "launch_job",
    ("Pipeline", "hasLaunchReexecutionPermission"): "launch_job",
    ("Run", "hasReExecutePermission"): "reexecute_run",
    ("Run", "hasTerminatePermission"): "terminate_run",
    ("Run", "hasDeletePermission"): "delete_run",
    ("InstigationState", "hasStartPermission"): "instigator",
    ("InstigationState", "hasStopPermission"): "instigator",
    ("PartitionSet", "hasLaunchBackfillPermission"): "launch_job",
    ("PartitionSet", "hasCancelBackfillPermission"): "backfill_manage",
    ("PartitionBackfill", "hasCancelPermission"): "cancel_backfill",
    ("PartitionBackfill", "hasResumePermission"): "resume_backfill",
    ("Sensor", "hasCursorUpdatePermissions"): "sensors",
}

# Facts injected into selection sets of these types (alias -> field selection).
_FACTS: dict[str, dict[str, str]] = {
    "AssetNode": {GROUP: "groupName"},
    "Permission": {PERMISSION_NAME: "permission"},
    "Run": {TAGS: "tags { key value }", ASSETS: "assetSelection { path }"},
    "PartitionBackfill": {TAGS: "tags { key value }", ASSETS: "assetSelection { path }"},
    "InstigationState": {INSTIGATION: "instigationType"},
}

# Dagster's permission names (root and location ``permissions``) -> the platform permission
# that allows what they enable. None: launching anything, which needs an unscoped grant.
# A test fails when the installed Dagster has a permission missing here.
DAGSTER_PERMISSIONS: dict[str, Permission | None] = {
    "launch_pipeline_execution": None,
    "launch_pipeline_reexecution": None,
    "launch_partition_backfill": None,
    "start_schedule": Permission.SCHEDULES,
    "stop_running_schedule": Permission.SCHEDULES,
    "schedule_dry_run": Permission.SCHEDULES,
    "edit_sensor": Permission.SENSORS,
    "sensor_dry_run": Permission.SENSORS,
    "update_sensor_cursor": Permission.SENSORS,
    "terminate_pipeline_execution": Permission.TERMINATE_OWN,
    "delete_pipeline_run": Permission.DELETE_OWN,
    "reload_repository_location": Permission.CODE_LOCATIONS,
    "reload_workspace": Permission.CODE_LOCATIONS,
    "wipe_assets": Permission.WIPE,
    "report_runless_asset_events": Permission.REPORT_EVENTS,
    "cancel_partition_backfill": Permission.BACKFILL_MANAGE,
    "edit_dynamic_partitions": Permission.PARTITIONS,
    "toggle_auto_materialize": Permission.AUTOMATION,
    "edit_concurrency_limit": Permission.CONCURRENCY,
    "edit_app_managed_components": Permission.COMPONENTS,
    "refresh_component_state": Permission.COMPONENTS,
}
INSTIGATOR_PERMISSIONS = {"SCHEDULE": Permission.SCHEDULES, "SENSOR": Permission.SENSORS, "AUTO_MATERIALIZE": Permission.SENSORS}

Verdict = tuple[bool, str | None]  # (allowed, disabled reason)
ALLOWED: Verdict = (True, None)


# --- the questions ---------------------------------------------------------------------------


class Judge:
    """Verdicts for one principal (grants + username) under one policy."""

    def __init__(self, policy: Policy, grants: Iterable[Grant], username: str, groups: Mapping[AssetKey, str | None]) -> None:
        self.policy = policy
        self.grants = tuple(grants)
        self.username = username
        self.groups = groups  # asset key -> group, for runs' and backfills' selections

    def _role_with(self, permission: Permission) -> str:
        holders = [r for r in self.policy.roles if permission in self.policy.permissions(r) and self.policy.permissions(r) != frozenset(Permission)]
        holders = holders or [r for r in self.policy.roles if permission in self.policy.permissions(r)]
        order = {name: i for i, name in enumerate(ROLE_NAMES)}
        holders.sort(key=lambda r: (order.get(r, len(order)), r))
        return holders[0] if holders else "(no role of the policy)"

    def needs(self, permission: Permission, group: str | None = None) -> str:
        return f"needs the {self._role_with(permission)} role" + (f" for asset group {group}" if group else "")

    def _verdict(self, needs: list[Requirement]) -> Verdict:
        """The policy's one question (issue 12's route): which requirements are unmet."""
        unmet = self.policy.unmet(self.grants, needs)
        if not unmet:
            return ALLOWED
        need = unmet[0]
        reason = self.needs(need.permissions[0], need.scope)
        scoped = sorted({g for grant in self.grants if grant.asset_groups for g in grant.asset_groups})
        if need.scope is None and not need.anywhere and scoped and need.permissions[0] in SCOPED:
            reason += f" for every asset group (yours covers {', '.join(scoped)})"
        return False, reason

    def permission(self, permission: Permission) -> Verdict:
        return self._verdict([requirement(permission)])

    def launch_groups(self, groups: Iterable[str | None]) -> Verdict:
        """May launch assets of these groups (None: an asset without a known group: unscoped)."""
        return self._verdict([START_WORK] + [requirement(self.policy.launch_permission(g), g) for g in sorted(set(groups), key=str)])

    def launch_anything(self) -> Verdict:
        """A whole job or partition set, whose assets are not listed here: every asset group,
        protected ones too (an over-approximation, as the proxy's own resolution)."""
        needs = [START_WORK, requirement(Permission.LAUNCH)]
        needs += [requirement(Permission.PROMOTE, g) for g in sorted(self.policy.protected_asset_groups)]
        return self._verdict(needs)

    def selection(self, assets: Any) -> Verdict:
        """A run's or backfill's asset selection (None: the whole job)."""
        if not isinstance(assets, list):
            return self.launch_anything()
        keys = [tuple(a["path"]) for a in assets if isinstance(a, dict) and isinstance(a.get("path"), list)]
        if len(keys) != len(assets) or not keys:
            return self.launch_anything()
        return self.launch_groups(self.groups.get(k) for k in keys)

    def own_or_any(self, own: Permission, any_: Permission, tags: Any, what: str) -> Verdict:
        if self.policy.has(self.grants, any_):
            return ALLOWED
        if not self.policy.has(self.grants, own):
            return False, self.needs(own)
        owner = {t.get("key"): t.get("value") for t in tags if isinstance(t, dict)}.get(OWNER_TAG) if isinstance(tags, list) else None
        if owner is not None and owner == self.username:
            return ALLOWED
        return False, f"{self.needs(any_)} to {what} runs of others (launched by {owner or 'nobody recorded'})"

    def cancel_backfill(self, obj: Mapping[str, Any]) -> Verdict:
        """The proxy's own rule for cancelPartitionBackfill (execution.cancel_backfill_requirements),
        over the backfill's owner tag and asset selection (none: a job backfill, every group)."""
        tags = obj.get(TAGS)
        owner = {t.get("key"): t.get("value") for t in tags if isinstance(t, dict)}.get(OWNER_TAG) if isinstance(tags, list) else None
        assets = obj.get(ASSETS)
        keys = [tuple(a["path"]) for a in assets if isinstance(a, dict) and isinstance(a.get("path"), list)] if isinstance(assets, list) else []
        resolved = Resolved(frozenset(self.groups.get(k) for k in keys)) if keys and len(keys) == len(assets) else None
        return self._verdict(cancel_backfill_requirements(self.policy, "cancel", str(obj.get("id") or "?"), owner, self.username, resolved))

    def resume_backfill(self, obj: Mapping[str, Any]) -> Verdict:
        """As the proxy judges resumePartitionBackfill: a launch of the backfill's assets, allowed
        only to the user its identity tags name, with the same grants (execution.restart_keeps_identity)."""
        tags = obj.get(TAGS)
        copied = {t.get("key"): t.get("value") for t in tags if isinstance(t, dict)} if isinstance(tags, list) else {}
        if not restart_keeps_identity(copied, self.username, [RoleGrant(g.role, g.asset_groups) for g in self.grants]):
            return False, f"only {copied.get(OWNER_TAG) or 'its launcher'}, with the same roles, restarts this backfill (Dagster keeps its identity tags)"
        return self.selection(obj.get(ASSETS))

    def field(self, question: str, obj: Mapping[str, Any]) -> Verdict:
        if question == "materialize_asset":
            return self.launch_groups([obj.get(GROUP)]) if GROUP in obj else self.launch_anything()
        if question == "wipe":
            return self.permission(Permission.WIPE)
        if question == "report_events":
            return self.permission(Permission.REPORT_EVENTS)
        if question == "launch_job":
            return self.launch_anything()
        if question == "reexecute_run":
            return self.selection(obj.get(ASSETS))
        if question == "terminate_run":
            return self.own_or_any(Permission.TERMINATE_OWN, Permission.TERMINATE_ANY, obj.get(TAGS), "terminate")
        if question == "delete_run":
            return self.own_or_any(Permission.DELETE_OWN, Permission.DELETE_ANY, obj.get(TAGS), "delete")
        if question == "instigator":
            permission = INSTIGATOR_PERMISSIONS.get(str(obj.get(INSTIGATION)))
            return self.permission(permission) if permission is not None else (False, "unknown instigator type")
        if question == "sensors":
            return self.permission(Permission.SENSORS)
        if question == "backfill_manage":
            return self.permission(Permission.BACKFILL_MANAGE)
        if question == "cancel_backfill":
            return self.cancel_backfill(obj)
        if question == "resume_backfill":
            return self.resume_backfill(obj)
        return False, f"unknown permission field ({question})"

    def dagster_permission(self, name: Any) -> Verdict:
        if name not in DAGSTER_PERMISSIONS:
            return False, f"{name} is not granted by the b2cal policy"
        permission = DAGSTER_PERMISSIONS[name]
        return self.launch_anything() if permission is None else self.permission(permission)


# --- the document ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A document that selects permission fields: what to send upstream and how to read the answer."""

    schema: GraphQLSchema
    upstream_query: str  # the client's document with the injected facts
    operation: OperationDefinitionNode  # the client's selected operation (as sent)
    fragments: Mapping[str, FragmentDefinitionNode]


def _fields_of(type_: Any) -> Mapping[str, Any]:
    return getattr(type_, "fields", None) or {}


def _facts_for(type_name: str) -> tuple[FieldNode, ...]:
    extra = " ".join(f"{alias}: {field}" for alias, field in _FACTS.get(type_name, {}).items())
    return _snippet(f"{{ {TYPENAME}: __typename {extra} }}")


@functools.lru_cache(maxsize=64)
def _snippet(text: str) -> tuple[FieldNode, ...]:
    return tuple(parse(text, no_location=True).definitions[0].selection_set.selections)  # type: ignore[attr-defined]


class _Injector:
    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self.found = False  # a permission field is selected somewhere

    def selection_set(self, node: SelectionSetNode, type_: Any, depth: int = 0) -> SelectionSetNode:
        if depth > 64:
            raise BadRequestError("selection deeper than 64 levels", reason="query too deep")
        selections = []
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if (getattr(type_, "name", None), name) in PERMISSION_FIELDS:
                    self.found = True
                field = _fields_of(type_).get(name)
                if selection.selection_set is not None and field is not None:
                    selection = copy.copy(selection)
                    selection.selection_set = self.selection_set(selection.selection_set, get_named_type(field.type), depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                condition = self.schema.get_type(selection.type_condition.name.value) if selection.type_condition else type_
                selection = copy.copy(selection)
                selection.selection_set = self.selection_set(selection.selection_set, condition, depth + 1)
            selections.append(selection)
        # Facts are injected for the static type; for an abstract one only __typename (the
        # object types below get their facts in their own fragments, where fields are valid).
        name = getattr(type_, "name", "")
        facts = _facts_for(name) if isinstance(type_, GraphQLObjectType) else _snippet(f"{{ {TYPENAME}: __typename }}")
        return SelectionSetNode(selections=tuple(selections) + facts)


def _root_type(schema: GraphQLSchema, operation: OperationDefinitionNode) -> Any:
    return {"query": schema.query_type, "mutation": schema.mutation_type, "subscription": schema.subscription_type}[operation.operation.value]


@functools.lru_cache(maxsize=512)
def _plan(schema: GraphQLSchema, query: str, operation_name: str | None) -> Plan | None:
    from .graphql_ops import _parse, _select

    if INJECTED in query:
        raise BadRequestError(f"document uses the reserved prefix {INJECTED}", reason=f"names starting with {INJECTED} are reserved")
    document: DocumentNode = _parse(query)
    operation = _select(document, operation_name)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    injector = _Injector(schema)
    definitions = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            root = _root_type(schema, definition)
            if root is None:
                definitions.append(definition)
                continue
            rewritten = copy.copy(definition)
            rewritten.selection_set = injector.selection_set(definition.selection_set, root)
            definitions.append(rewritten)
        elif isinstance(definition, FragmentDefinitionNode):
            condition = schema.get_type(definition.type_condition.name.value)
            rewritten = copy.copy(definition)
            rewritten.selection_set = injector.selection_set(definition.selection_set, condition)
            definitions.append(rewritten)
        else:
            definitions.append(definition)
    if not injector.found:
        return None
    upstream = print_ast(DocumentNode(definitions=tuple(definitions)))
    return Plan(schema, upstream, operation, fragments)


def plan(schema: GraphQLSchema, query: str, operation_name: str | None) -> Plan | None:
    """How to ask for ``query`` so its permission fields can be told truthfully; None when it
    selects none (then it is forwarded untouched)."""
    if "ermission" not in query:  # every permission field's name holds it: skip parsing for the rest
        return None
    return _plan(schema, query, operation_name)


# --- the answer -----------------------------------------------------------------------------


def _applies(schema: GraphQLSchema, condition: Any, runtime: Any) -> bool:
    if condition is None or runtime is None:
        return False
    if condition.name == runtime.name:
        return True
    return is_abstract_type(condition) and isinstance(runtime, GraphQLObjectType) and schema.is_sub_type(condition, runtime)


def _runtime(schema: GraphQLSchema, obj: Mapping[str, Any], static: Any) -> Any:
    name = obj.get(TYPENAME)
    return schema.get_type(name) if isinstance(name, str) else static


def _walk(plan: Plan, node: SelectionSetNode, value: Any, static: Any, judge: Judge, depth: int = 0) -> None:
    if depth > 128 or value is None:
        return
    if isinstance(value, list):
        for item in value:
            _walk(plan, node, item, static, judge, depth + 1)
        return
    if not isinstance(value, dict):
        return
    schema = plan.schema
    runtime = _runtime(schema, value, static)
    for selection in node.selections:
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            if key not in value:
                continue
            name = selection.name.value
            question = PERMISSION_FIELDS.get((getattr(runtime, "name", None), name))
            if question == "permission_list":
                _permission_list(selection, value[key], judge, plan.fragments)
            elif question is not None:
                if isinstance(value[key], bool):
                    allowed, _ = judge.field(question, value)
                    value[key] = value[key] and allowed
            elif selection.selection_set is not None:
                field = _fields_of(runtime).get(name)
                if field is not None:
                    _walk(plan, selection.selection_set, value[key], get_named_type(field.type), judge, depth + 1)
        elif isinstance(selection, InlineFragmentNode):
            condition = schema.get_type(selection.type_condition.name.value) if selection.type_condition else runtime
            if _applies(schema, condition, runtime):
                _walk(plan, selection.selection_set, value, runtime, judge, depth + 1)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = plan.fragments.get(selection.name.value)
            if fragment is not None and _applies(schema, schema.get_type(fragment.type_condition.name.value), runtime):
                _walk(plan, fragment.selection_set, value, runtime, judge, depth + 1)


def _permission_keys(node: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode], depth: int = 0) -> Iterator[tuple[str, str]]:
    """(response key, field name) selected on a Permission object."""
    if node is None or depth > 16:
        return
    for selection in node.selections:
        if isinstance(selection, FieldNode):
            yield (selection.alias.value if selection.alias else selection.name.value), selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _permission_keys(selection.selection_set, fragments, depth + 1)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            yield from _permission_keys(fragments[selection.name.value].selection_set, fragments, depth + 1)


def _permission_list(selection: FieldNode, items: Any, judge: Judge, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
    if not isinstance(items, list):
        return
    keys = list(_permission_keys(selection.selection_set, fragments))
    for item in items:
        if not isinstance(item, dict):
            continue
        allowed, reason = judge.dagster_permission(item.get(PERMISSION_NAME))
        upstream = all(item[k] is not False for k, name in keys if name == "value" and k in item)
        for key, name in keys:
            if key not in item:
                continue
            if name == "value":
                item[key] = bool(item[key]) and allowed
            elif name == "disabledReason" and not allowed:
                item[key] = reason
            elif name == "disabledReason" and upstream:
                item[key] = None


def _strip(value: Any, depth: int = 0) -> None:
    if depth > 256:
        return
    if isinstance(value, list):
        for item in value:
            _strip(item, depth + 1)
    elif isinstance(value, dict):
        for key in [k for k in value if k.startswith(INJECTED)]:
            del value[key]
        for item in value.values():
            _strip(item, depth + 1)


def asset_keys_in(answer: Any, depth: int = 0) -> set[AssetKey]:
    """Asset keys of runs' and backfills' selections in an answer (their groups are facts)."""
    found: set[AssetKey] = set()
    if depth > 256:
        return found
    if isinstance(answer, list):
        for item in answer:
            found |= asset_keys_in(item, depth + 1)
    elif isinstance(answer, dict):
        selection = answer.get(ASSETS)
        if isinstance(selection, list):
            found |= {tuple(a["path"]) for a in selection if isinstance(a, dict) and isinstance(a.get("path"), list)}
        for item in answer.values():
            if isinstance(item, (dict, list)):
                found |= asset_keys_in(item, depth + 1)
    return found


def rewrite_answer(plan: Plan, answer: Any, judge: Judge) -> Any:
    """Tell ``answer``'s permission fields truthfully (in place) and drop the injected facts."""
    if isinstance(answer, dict) and isinstance(answer.get("data"), dict):
        root = _root_type(plan.schema, plan.operation)
        _walk(plan, plan.operation.selection_set, answer["data"], root, judge)
    _strip(answer)
    return answer
