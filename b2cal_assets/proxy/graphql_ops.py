"""Parse a GraphQL document and say what its selected operation touches.

Pure graphql-core, no schema needed: the decision rests on root field *names* after
operation selection, fragment and alias resolution, which is what dagster-webserver will
execute. Directives (@skip/@include) are ignored on purpose: a field that might run counts.
Parsed documents are cached by text, because the UI sends the same few documents all day.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError, parse
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
)
from graphql.utilities import value_from_ast_untyped

from .errors import GraphQLSyntaxError, LaunchParametersError, OperationSelectionError
from .permissions import LAUNCH_ARGUMENTS, SENSITIVE_FIELDS, SENSITIVE_UNDER_ROOT, Permission

MAX_DOCUMENT_BYTES = 1 << 20
MAX_TOKENS = 100_000  # graphql-core's guard against pathological documents
MAX_DEPTH = 64


@dataclass(frozen=True)
class RootField:
    """One root field as the webserver will resolve it (alias kept for the audit log)."""

    name: str
    alias: str | None
    arguments: tuple[tuple[str, ValueNode], ...]
    # Permissions demanded by sensitive fields anywhere under this root field.
    sensitive: frozenset[Permission] = frozenset()

    def argument_node(self, name: str) -> ValueNode | None:
        for key, node in self.arguments:
            if key == name:
                return node
        return None

    def argument_value(self, name: str, variables: Mapping[str, Any] | None) -> Any:
        """The argument as a Python value with variables substituted (None if absent)."""
        node = self.argument_node(name)
        return None if node is None else value_from_ast_untyped(node, dict(variables or {}))

    def launch_variable(self) -> str:
        """Variable carrying this launch mutation's parameters; refuse inline literals.

        Why: the proxy rewrites the parameters to add identity tags, which it does on the
        variables; an inline literal would need a document rewrite.
        """
        argument, _ = LAUNCH_ARGUMENTS[self.name]
        node = self.argument_node(argument)
        if not isinstance(node, VariableNode):
            raise LaunchParametersError(
                f"{self.name}: argument {argument} is {'missing' if node is None else 'an inline literal'}; "
                "the proxy only accepts launch parameters passed as a variable",
                reason=f"pass {argument} of {self.name} as a GraphQL variable",
            )
        return node.name.value

    @property
    def label(self) -> str:
        return self.name if not self.alias or self.alias == self.name else f"{self.alias}:{self.name}"


@dataclass(frozen=True)
class Operation:
    """The selected operation of a document."""

    kind: str  # "query" | "mutation" | "subscription"
    name: str | None
    root_fields: tuple[RootField, ...] = field(default=())

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.root_fields)

    def describe(self) -> str:
        fields = ",".join(f.label for f in self.root_fields)
        return f"{self.kind} {self.name or '(anonymous)'} {{{fields}}}"


def _collect(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    visiting: frozenset[str] = frozenset(),
) -> Iterator[FieldNode]:
    """The fields of a selection set with fragment spreads and inline fragments flattened."""
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _collect(selection.selection_set, fragments, visiting)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in visiting:
                raise GraphQLSyntaxError(f"fragment {name} spreads itself", reason=f"fragment cycle through {name}")
            fragment = fragments.get(name)
            if fragment is None:
                raise GraphQLSyntaxError(f"unknown fragment {name}", reason=f"unknown fragment {name}")
            yield from _collect(fragment.selection_set, fragments, visiting | {name})


def _sensitive_under(
    root: FieldNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> frozenset[Permission]:
    """Permissions required by sensitive fields in the subtree of a root field."""
    found: set[Permission] = set()
    root_name = root.name.value
    stack: list[tuple[FieldNode, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise GraphQLSyntaxError(f"selection deeper than {MAX_DEPTH} levels", reason="query too deep")
        if node.selection_set is None:
            continue
        for child in _collect(node.selection_set, fragments):
            name = child.name.value
            if name in SENSITIVE_FIELDS:
                found.add(SENSITIVE_FIELDS[name])
            if depth == 0 and (root_name, name) in SENSITIVE_UNDER_ROOT:
                found.add(SENSITIVE_UNDER_ROOT[(root_name, name)])
            stack.append((child, depth + 1))
    if root_name in SENSITIVE_FIELDS:
        found.add(SENSITIVE_FIELDS[root_name])
    return frozenset(found)


def _select(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if not operations:
        raise OperationSelectionError("document has no operation", reason="GraphQL document has no operation")
    if operation_name is None:
        if len(operations) > 1:
            raise OperationSelectionError(
                f"document has {len(operations)} operations and no operationName",
                reason="several operations and no operationName",
            )
        return operations[0]
    chosen = [op for op in operations if op.name is not None and op.name.value == operation_name]
    if len(chosen) != 1:
        raise OperationSelectionError(
            f"operationName {operation_name!r} matches {len(chosen)} operations of the document",
            reason=f"operationName {operation_name!r} does not select exactly one operation",
        )
    return chosen[0]


@functools.lru_cache(maxsize=1024)
def _parse(query: str) -> DocumentNode:
    try:
        return parse(query, no_location=True, max_tokens=MAX_TOKENS)
    except GraphQLError as error:
        raise GraphQLSyntaxError(f"GraphQL syntax error: {error.message}", reason=f"GraphQL syntax error: {error.message}") from None


@functools.lru_cache(maxsize=2048)
def classify_operation(query: str, operation_name: str | None) -> Operation:
    """Parse ``query`` and describe the operation ``operation_name`` selects.

    Raises :class:`GraphQLSyntaxError` or :class:`OperationSelectionError` (both 400).
    """
    if not isinstance(query, str):
        raise GraphQLSyntaxError(f"query is a {type(query).__name__}, not a string", reason="query must be a string")
    if len(query.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise GraphQLSyntaxError(f"document of {len(query)} characters exceeds {MAX_DOCUMENT_BYTES} bytes", reason="query too large")
    if operation_name is not None and not isinstance(operation_name, str):
        raise OperationSelectionError("operationName is not a string", reason="operationName must be a string")
    document = _parse(query)
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            name = definition.name.value
            if name in fragments:
                raise GraphQLSyntaxError(f"fragment {name} defined twice", reason=f"fragment {name} defined twice")
            fragments[name] = definition
        elif not isinstance(definition, OperationDefinitionNode):
            # Type-system definitions are not executable; the webserver refuses them too.
            raise GraphQLSyntaxError(
                f"document contains a {definition.kind} definition", reason="only operations and fragments are allowed"
            )
    chosen = _select(document, operation_name)
    roots = []
    for node in _collect(chosen.selection_set, fragments):
        roots.append(
            RootField(
                name=node.name.value,
                alias=node.alias.value if node.alias else None,
                arguments=tuple((argument.name.value, argument.value) for argument in node.arguments or ()),
                sensitive=_sensitive_under(node, fragments),
            )
        )
    return Operation(
        kind=chosen.operation.value,
        name=chosen.name.value if chosen.name else None,
        root_fields=tuple(roots),
    )
