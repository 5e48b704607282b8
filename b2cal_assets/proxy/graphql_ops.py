"""Parse a GraphQL document and say what its selected operation touches.

Pure graphql-core, no schema needed: the decision rests on root field *names* after
operation selection, fragment and alias resolution, which is what dagster-webserver will
execute. Directives (@skip/@include) are ignored on purpose: a field that might run counts.
Parsed documents are cached by text, because the UI sends the same few documents all day.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
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


# Budget on the document as a naive walker would expand it (every fragment spread re-walked).
# Why: fragments spreading others several times grow exponentially (2^N selections from N
# fragments); this proxy and the webserver both walk expanded selections, so such a document
# is refused before anything walks it. Dagster UI documents expand to a few thousand.
MAX_EXPANDED_SELECTIONS = 100_000
# Field depth plus fragment-spread nesting (bounds recursion of every walker).
MAX_NESTING = 2 * MAX_DEPTH


class _Walker:
    """Walks a document's selections visiting each fragment and each field node once.

    Results are memoised per fragment name and per field node, so the cost is linear in the
    document's size whatever the fragment re-use; the expanded size is computed (memoised too)
    first and bounded by MAX_EXPANDED_SELECTIONS.
    """

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self._size: dict[str, tuple[int, int]] = {}  # fragment -> (expanded selections, nesting)
        self._in_progress: set[str] = set()
        self._flat: dict[str, tuple[FieldNode, ...]] = {}
        self._field: dict[int, tuple[frozenset[Permission], int]] = {}  # id(field) -> (perms, height)
        self.walks = 0  # selection-set walks done (tests count them)

    def _fragment(self, name: str) -> FragmentDefinitionNode:
        fragment = self.fragments.get(name)
        if fragment is None:
            raise GraphQLSyntaxError(f"unknown fragment {name}", reason=f"unknown fragment {name}")
        return fragment

    def check_size(self, selection_set: SelectionSetNode) -> None:
        """Refuse cycles, over-deep nesting and documents too large once expanded."""
        size, nesting = self._measure(selection_set, 0)
        if nesting > MAX_NESTING:
            raise GraphQLSyntaxError(f"selection nested deeper than {MAX_NESTING} levels", reason="query too deep")
        if size > MAX_EXPANDED_SELECTIONS:
            raise GraphQLSyntaxError(
                f"document expands to {size} selections (limit {MAX_EXPANDED_SELECTIONS})",
                reason="query too complex: fragments expand beyond the limit",
            )

    def _measure(self, selection_set: SelectionSetNode, depth: int) -> tuple[int, int]:
        """(expanded selections, nesting height) of a selection set, fragments memoised."""
        if depth > MAX_NESTING:
            raise GraphQLSyntaxError(f"selection nested deeper than {MAX_NESTING} levels", reason="query too deep")
        self.walks += 1
        size, height = 0, 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                below, h = (0, 0) if selection.selection_set is None else self._measure(selection.selection_set, depth + 1)
                size, height = size + 1 + below, max(height, h + 1)
            elif isinstance(selection, InlineFragmentNode):
                below, h = self._measure(selection.selection_set, depth + 1)
                size, height = size + below, max(height, h + 1)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in self._size:
                    if name in self._in_progress:
                        raise GraphQLSyntaxError(f"fragment {name} spreads itself", reason=f"fragment cycle through {name}")
                    self._in_progress.add(name)
                    self._size[name] = self._measure(self._fragment(name).selection_set, depth + 1)
                    self._in_progress.discard(name)
                below, h = self._size[name]
                size, height = size + below, max(height, h + 1)
            if size > MAX_EXPANDED_SELECTIONS:
                break  # already refused; stop counting
        if depth + height > MAX_NESTING:
            raise GraphQLSyntaxError(f"selection nested deeper than {MAX_NESTING} levels", reason="query too deep")
        return size, height

    def fields(self, selection_set: SelectionSetNode) -> tuple[FieldNode, ...]:
        """The distinct field nodes of a selection set, spreads and inline fragments flattened.

        A fragment spread twice at one level contributes its fields once (GraphQL merges them).
        """
        self.walks += 1
        out: dict[int, FieldNode] = {}
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                out.setdefault(id(selection), selection)
            elif isinstance(selection, InlineFragmentNode):
                for node in self.fields(selection.selection_set):
                    out.setdefault(id(node), node)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in self._flat:
                    self._flat[name] = self.fields(self._fragment(name).selection_set)
                for node in self._flat[name]:
                    out.setdefault(id(node), node)
        return tuple(out.values())

    def sensitive(self, node: FieldNode) -> frozenset[Permission]:
        """Permissions demanded by sensitive fields at or under ``node`` (memoised per node)."""
        key = id(node)
        if key not in self._field:
            found: set[Permission] = set()
            if node.name.value in SENSITIVE_FIELDS:
                found.add(SENSITIVE_FIELDS[node.name.value])
            height = 0
            if node.selection_set is not None:
                for child in self.fields(node.selection_set):
                    perms, child_height = self._field_info(child)
                    found |= perms
                    height = max(height, child_height + 1)
            self._field[key] = (frozenset(found), height)
        return self._field[key][0]

    def _field_info(self, node: FieldNode) -> tuple[frozenset[Permission], int]:
        self.sensitive(node)
        return self._field[id(node)]

    def sensitive_under_root(self, root: FieldNode) -> frozenset[Permission]:
        """As ``sensitive``, plus the fields sensitive only directly under this root field."""
        found = set(self.sensitive(root))
        if self._field[id(root)][1] > MAX_DEPTH:
            raise GraphQLSyntaxError(f"selection deeper than {MAX_DEPTH} levels", reason="query too deep")
        root_name = root.name.value
        if root.selection_set is not None:
            for child in self.fields(root.selection_set):
                if (root_name, child.name.value) in SENSITIVE_UNDER_ROOT:
                    found.add(SENSITIVE_UNDER_ROOT[(root_name, child.name.value)])
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
    walker = _Walker(fragments)
    walker.check_size(chosen.selection_set)
    roots = []
    for node in walker.fields(chosen.selection_set):
        roots.append(
            RootField(
                name=node.name.value,
                alias=node.alias.value if node.alias else None,
                arguments=tuple((argument.name.value, argument.value) for argument in node.arguments or ()),
                sensitive=walker.sensitive_under_root(node),
            )
        )
    return Operation(
        kind=chosen.operation.value,
        name=chosen.name.value if chosen.name else None,
        root_fields=tuple(roots),
    )
