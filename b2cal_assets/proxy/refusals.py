"""Refusals shaped so the Dagster UI shows them: GraphQL answers instead of bare HTTP errors.

The UI renders a mutation's ``UnauthorizedError`` member (32 of the 41 mutations of
dagster-graphql 1.13.27 have it in their result union) and GraphQL ``errors``; a bare HTTP 403
leaves its launch dialog spinning. Which mutations have the member is read from the
webserver's own schema (:class:`UnauthorizedUnions`), never from a hand list.

Pure graphql-core: the selection the client asked for (aliases, inline fragments, named
fragments) decides which keys the answer holds, as the webserver would have shaped it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
REFUSED_HEADER = "X-B2cal-Refused"


@dataclass(frozen=True)
class UnauthorizedUnions:
    """For each mutation whose result union holds ``UnauthorizedError``: the union's name; and
    the type names a fragment may be conditioned on to reach that member's fields."""

    mutations: Mapping[str, str]
    member_types: frozenset[str]  # UnauthorizedError and the interfaces it implements

    @classmethod
    def from_schema(cls, schema: GraphQLSchema) -> UnauthorizedUnions:
        mutations: dict[str, str] = {}
        member = schema.get_type(UNAUTHORIZED)
        interfaces = frozenset(i.name for i in getattr(member, "interfaces", ()) or ())
        if schema.mutation_type is not None and member is not None:
            for name, definition in schema.mutation_type.fields.items():
                result = get_named_type(definition.type)
                if isinstance(result, GraphQLUnionType) and any(t.name == UNAUTHORIZED for t in result.types):
                    mutations[name] = result.name
        return cls(mutations, frozenset({UNAUTHORIZED}) | interfaces)


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _member(selection_set: SelectionSetNode | None, union: str, unions: UnauthorizedUnions,
            fragments: Mapping[str, FragmentDefinitionNode], reason: str, out: dict[str, Any], depth: int = 0) -> None:
    """Fill ``out`` with the keys the client selected on an UnauthorizedError member."""
    if selection_set is None or depth > 32:
        return
    applies = unions.member_types | {union}
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            if selection.name.value == "__typename":
                out[key] = UNAUTHORIZED
            elif selection.name.value == "message":
                out[key] = reason
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else union
            if condition in applies:
                _member(selection.selection_set, union, unions, fragments, reason, out, depth + 1)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None and fragment.type_condition.name.value in applies:
                _member(fragment.selection_set, union, unions, fragments, reason, out, depth + 1)


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
    UI shows where the user clicked; anything else (queries, mutations without the member, a
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
        member: dict[str, Any] = {}
        _member(node.selection_set, union, unions, fragments, reason, member)
        key = node.alias.value if node.alias else node.name.value
        data.setdefault(key, {}).update(member)
    return {"data": data} if data else error
