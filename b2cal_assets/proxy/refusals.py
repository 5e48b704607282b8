"""Refusals shaped so the Dagster UI shows them: GraphQL answers instead of bare HTTP errors.

The UI renders a mutation's ``UnauthorizedError`` member (32 of the 41 mutations of
dagster-graphql 1.13.27 have it in their result union) and GraphQL ``errors``; a bare HTTP 403
leaves its launch dialog spinning. Which mutations have the member is read from the
webserver's own schema (:class:`UnauthorizedUnions`), never from a hand list. The launch
handlers are the exception (:data:`PYTHON_ERROR_REFUSALS`): they show a ``PythonError``'s
message but not an ``UnauthorizedError``'s, so those mutations are refused with the former.

Pure graphql-core: the selection the client asked for (aliases, inline fragments, named
fragments) decides which keys the answer holds, as the webserver would have shaped it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLSchema, GraphQLUnionType, get_named_type
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from .graphql_ops import _parse, _select

UNAUTHORIZED = "UnauthorizedError"
PYTHON_ERROR = "PythonError"
REFUSED_HEADER = "X-B2cal-Refused"

# Mutations that start work and whose Dagster 1.13 UI handler does not show an UnauthorizedError's
# message: these are refused with the PythonError member instead (message = the reason,
# className "UnauthorizedError", no stack), which each handler renders in full or behind "View error".
# Every other mutation keeps UnauthorizedError. Checked against ui-core's handlers in the installed
# dagster-webserver bundle (source maps under dagster_webserver/webapp/build).
PYTHON_ERROR_REFUSALS: Mapping[str, str] = {
    "launchRun": "handleLaunchResult says '<job> cannot be executed with the provided config.' for UnauthorizedError",
    "launchPipelineExecution": "same handler as launchRun (handleLaunchResult)",
    "launchRunReexecution": "same handler as launchRun (handleLaunchResult, re-execute menus)",
    "launchPipelineReexecution": "same handler as launchRun (handleLaunchResult)",
    "launchMultipleRuns": "no UnauthorizedError member; handleLaunchMultipleResult toasts 'Launched 0 runs' for anything but PythonError",
    "launchPartitionBackfill": "showBackfillErrorToast links 'View error' only for PythonError; UnauthorizedError gets a bare 'unexpected error'",
    "reexecutePartitionBackfill": "its handler says 'read-only mode' for UnauthorizedError; PythonError gets 'View error' with the reason",
    "resumePartitionBackfill": "its handler says 'read-only mode' for UnauthorizedError; PythonError gets 'View error' with the reason",
}


@dataclass(frozen=True)
class UnauthorizedUnions:
    """For each mutation a refusal can answer with a union member: the union's name and the
    member (``UnauthorizedError``, or ``PythonError`` for :data:`PYTHON_ERROR_REFUSALS`); and per
    member the type names a fragment may be conditioned on to reach its fields."""

    mutations: Mapping[str, str]
    member_types: frozenset[str]  # UnauthorizedError and the interfaces it implements
    members: Mapping[str, str] = field(default_factory=dict)  # mutation -> member type name
    python_error_types: frozenset[str] = frozenset({PYTHON_ERROR})

    def member(self, mutation: str) -> str:
        return self.members.get(mutation, UNAUTHORIZED)

    def types_of(self, member: str) -> frozenset[str]:
        return self.python_error_types if member == PYTHON_ERROR else self.member_types

    @classmethod
    def from_schema(cls, schema: GraphQLSchema) -> UnauthorizedUnions:
        mutations: dict[str, str] = {}
        members: dict[str, str] = {}
        unauthorized = schema.get_type(UNAUTHORIZED)
        python_error = schema.get_type(PYTHON_ERROR)
        interfaces = frozenset(i.name for i in getattr(unauthorized, "interfaces", ()) or ())
        python_interfaces = frozenset(i.name for i in getattr(python_error, "interfaces", ()) or ())
        if schema.mutation_type is not None:
            for name, definition in schema.mutation_type.fields.items():
                result = get_named_type(definition.type)
                if not isinstance(result, GraphQLUnionType):
                    continue
                held = {t.name for t in result.types}
                if name in PYTHON_ERROR_REFUSALS and PYTHON_ERROR in held:
                    mutations[name], members[name] = result.name, PYTHON_ERROR
                elif UNAUTHORIZED in held:
                    mutations[name], members[name] = result.name, UNAUTHORIZED
        return cls(mutations, frozenset({UNAUTHORIZED}) | interfaces, members,
                   frozenset({PYTHON_ERROR}) | python_interfaces)


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


# What a refusal's PythonError holds besides the message: no stack, no cause (nothing crashed).
_PYTHON_ERROR_FIELDS: Mapping[str, Any] = {"className": UNAUTHORIZED, "stack": [], "errorChain": [],
                                           "cause": None, "causes": []}


def _member(selection_set: SelectionSetNode | None, union: str, member: str, applies: frozenset[str],
            fragments: Mapping[str, FragmentDefinitionNode], reason: str, out: dict[str, Any], depth: int = 0) -> None:
    """Fill ``out`` with the keys the client selected on the refusal's ``member`` of ``union``."""
    if selection_set is None or depth > 32:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            name = selection.name.value
            if name == "__typename":
                out[key] = member
            elif name == "message":
                out[key] = reason
            elif member == PYTHON_ERROR and name in _PYTHON_ERROR_FIELDS:
                out[key] = _PYTHON_ERROR_FIELDS[name]
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else union
            if condition in applies or condition == union:
                _member(selection.selection_set, union, member, applies, fragments, reason, out, depth + 1)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None and (fragment.type_condition.name.value in applies
                                         or fragment.type_condition.name.value == union):
                _member(fragment.selection_set, union, member, applies, fragments, reason, out, depth + 1)


def _root_fields(selection_set: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode], depth: int = 0) -> list[FieldNode]:
    fields: list[FieldNode] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            fields.append(selection)
        elif depth < 32 and isinstance(selection, InlineFragmentNode):
            fields += _root_fields(selection.selection_set, fragments, depth + 1)
        elif depth < 32 and isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            fields += _root_fields(fragments[selection.name.value].selection_set, fragments, depth + 1)
    return fields


def graphql_refusal(query: str | None, operation_name: str | None, reason: str,
                    unions: UnauthorizedUnions | None) -> dict[str, Any]:
    """The GraphQL answer refusing one request with ``reason``.

    A mutation whose every root field can answer ``UnauthorizedError`` gets that member per
    field (under its alias, holding the keys selected: ``__typename``, ``message``), which the
    UI shows where the user clicked; the work-starting mutations of :data:`PYTHON_ERROR_REFUSALS`
    get ``PythonError`` instead (the member their UI handlers display); anything else (queries, mutations without the member, a
    schema not known yet, a document that does not parse) gets a GraphQL error.
    """
    error = {"data": None, "errors": [{"message": reason, "extensions": {"code": "FORBIDDEN"}}]}
    if unions is None or query is None:
        return error
    try:
        document = _parse(query)
        operation = _select(document, operation_name)
    except Exception:  # noqa: BLE001 - a document the webserver could not run either: plain error
        return error
    if not isinstance(operation, OperationDefinitionNode) or operation.operation.value != "mutation":
        return error
    fragments = _fragments(document)
    data: dict[str, Any] = {}
    for node in _root_fields(operation.selection_set, fragments):
        union = unions.mutations.get(node.name.value)
        if union is None:
            return error
        kind = unions.member(node.name.value)
        answer: dict[str, Any] = {}
        _member(node.selection_set, union, kind, unions.types_of(kind), fragments, reason, answer)
        key = node.alias.value if node.alias else node.name.value
        data.setdefault(key, {}).update(answer)
    return {"data": data} if data else error
