"""GraphQL classification: operation selection, fragments, aliases, sensitive fields."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2cal_assets.proxy.errors import GraphQLSyntaxError, LaunchParametersError, OperationSelectionError
from b2cal_assets.proxy.graphql_ops import classify_operation
from b2cal_assets.proxy.permissions import MUTATIONS, SUBSCRIPTIONS, Permission


def test_every_mutation_of_the_installed_schema_is_classified() -> None:
    from dagster_graphql.schema import create_schema

    schema = create_schema().graphql_schema
    assert set(schema.mutation_type.fields) == set(MUTATIONS)
    assert set(schema.subscription_type.fields) == set(SUBSCRIPTIONS)


def test_alias_does_not_hide_the_field_name() -> None:
    operation = classify_operation("mutation { harmless: wipeAssets(assetPartitionRanges: []) { __typename } }", None)
    assert operation.kind == "mutation"
    assert operation.field_names == ("wipeAssets",)
    assert operation.root_fields[0].label == "harmless:wipeAssets"


def test_named_and_inline_fragments_at_the_root_are_resolved() -> None:
    query = """
    mutation M { ...F ... on Mutation { stopSensor(id: "x") { __typename } } }
    fragment F on Mutation { ...G }
    fragment G on Mutation { terminateRun(runId: "r") { __typename } }
    """
    assert set(classify_operation(query, None).field_names) == {"terminateRun", "stopSensor"}


def test_operation_name_selects_the_operation_and_ambiguity_is_refused() -> None:
    query = "query A { version } mutation B { setNuxSeen }"
    assert classify_operation(query, "A").kind == "query"
    assert classify_operation(query, "B").kind == "mutation"
    with pytest.raises(OperationSelectionError):
        classify_operation(query, None)
    with pytest.raises(OperationSelectionError):
        classify_operation(query, "C")
    with pytest.raises(OperationSelectionError):
        classify_operation("query A { version } mutation A { setNuxSeen }", "A")


def test_malformed_document_is_a_syntax_error_with_a_clear_reason() -> None:
    with pytest.raises(GraphQLSyntaxError) as caught:
        classify_operation("query { version", None)
    assert "GraphQL syntax error" in caught.value.reason


def test_fragment_cycles_and_unknown_fragments_are_refused() -> None:
    with pytest.raises(GraphQLSyntaxError):
        classify_operation("query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }", None)
    with pytest.raises(GraphQLSyntaxError):
        classify_operation("query { ...Nope }", None)


def test_sensitive_fields_are_found_through_fragments() -> None:
    query = """
    query { instance { ...I } runsOrError { ... on Runs { results { ...R } } } }
    fragment I on Instance { info }
    fragment R on Run { runConfigYaml }
    """
    operation = classify_operation(query, None)
    found = set().union(*(f.sensitive for f in operation.root_fields))
    assert found == {Permission.INSTANCE_INFO, Permission.RUN_CONFIG}


def test_info_elsewhere_is_not_instance_info() -> None:
    operation = classify_operation("query { instance { hasInfo daemonHealth { id } } }", None)
    assert operation.root_fields[0].sensitive == frozenset()


def test_launch_parameters_must_be_variables() -> None:
    inline = classify_operation('mutation { launchRun(executionParams: {mode: "default"}) { __typename } }', None)
    with pytest.raises(LaunchParametersError):
        inline.root_fields[0].launch_variable()
    variable = classify_operation("mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename } }", None)
    assert variable.root_fields[0].launch_variable() == "p"


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
mutation_names = st.sampled_from(sorted(MUTATIONS))


@st.composite
def disguised_mutations(draw: st.DrawFn) -> tuple[str, str, str | None]:
    """A mutation field hidden behind aliases, fragments and extra operations."""
    field = draw(mutation_names)
    alias = draw(st.one_of(st.none(), names))
    selection = f"{alias + ': ' if alias else ''}{field} {{ __typename }}"
    wrapping = draw(st.sampled_from(["plain", "inline", "named", "nested"]))
    fragments = ""
    if wrapping == "inline":
        selection = f"... on Mutation {{ {selection} }}"
    elif wrapping == "named":
        fragments = f"fragment Frag on Mutation {{ {selection} }}"
        selection = "...Frag"
    elif wrapping == "nested":
        fragments = f"fragment Inner on Mutation {{ {selection} }} fragment Outer on Mutation {{ ...Inner }}"
        selection = "... on Mutation { ...Outer }"
    op_name = draw(st.one_of(st.none(), names))
    decoys = draw(st.integers(0, 2)) if op_name else 0
    parts = [f"mutation {op_name or ''} {{ {selection} }}"]
    parts += [f"query Decoy{i} {{ version }}" for i in range(decoys)]
    parts = draw(st.permutations(parts))
    return " ".join([*parts, fragments]), field, op_name


@settings(max_examples=300, deadline=None, database=None)
@given(disguised_mutations())
def test_hidden_mutations_are_always_found(case: tuple[str, str, str | None]) -> None:
    document, field, op_name = case
    operation = classify_operation(document, op_name)
    assert operation.kind == "mutation"
    assert field in operation.field_names


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=10)))
def test_arbitrary_text_classifies_or_fails_with_a_bad_request(text: str, op_name: str | None) -> None:
    from b2cal_assets.proxy.errors import BadRequestError

    try:
        operation = classify_operation(text, op_name)
    except BadRequestError:
        return
    assert operation.kind in ("query", "mutation", "subscription")


def test_log_key_fields_are_the_schemas_and_hold_no_nested_captured_logs() -> None:
    from dagster_graphql.schema import create_schema
    from graphql import get_named_type

    from b2cal_assets.proxy.permissions import LOG_KEY_FIELDS, SENSITIVE_FIELDS

    schema = create_schema().graphql_schema
    roots = {(kind, name): field for kind, root in (("query", schema.query_type), ("subscription", schema.subscription_type))
             for name, field in root.fields.items()}
    with_log_key = {name for (_, name), field in roots.items() if "logKey" in field.args}
    assert with_log_key == LOG_KEY_FIELDS
    # decide.py lets the owner rule replace captured_logs for these root fields only because
    # nothing under them is itself sensitive.
    for (_, name), field in roots.items():
        if name in LOG_KEY_FIELDS:
            assert not set(get_named_type(field.type).fields) & set(SENSITIVE_FIELDS), name


# --- schema completeness: what the role check resolves is everything that selects work -------


def _schema():
    from dagster_graphql.schema import create_schema

    return create_schema().graphql_schema


def test_every_argument_of_a_work_starting_mutation_is_classified() -> None:
    """A new argument, input field or strategy that could select work fails here until the
    resolution (execution.py) and LAUNCH_INPUT_FIELDS take it into account."""
    from graphql import GraphQLEnumType, GraphQLInputObjectType, get_named_type

    from b2cal_assets.proxy.decide import WORK_KINDS
    from b2cal_assets.proxy.permissions import LAUNCH_INPUT_FIELDS, REEXECUTION_STRATEGY_VALUES, WORK_ARGUMENTS

    schema = _schema()
    work = {name for name, rule in MUTATIONS.items() if rule.kind in WORK_KINDS}
    assert work == set(WORK_ARGUMENTS)
    seen: set[str] = set()
    pending = []
    for name in work:
        field = schema.mutation_type.fields[name]
        assert set(field.args) == WORK_ARGUMENTS[name], name
        pending.extend(get_named_type(arg.type) for arg in field.args.values())
    while pending:
        named = pending.pop()
        if named.name in seen:
            continue
        seen.add(named.name)
        if isinstance(named, GraphQLInputObjectType):
            assert named.name in LAUNCH_INPUT_FIELDS, f"input type {named.name} is not classified"
            assert set(named.fields) == set(LAUNCH_INPUT_FIELDS[named.name]), named.name
            pending.extend(get_named_type(f.type) for f in named.fields.values())
        elif isinstance(named, GraphQLEnumType):
            assert named.name == "ReexecutionStrategy", f"enum {named.name} is not classified"
            assert set(named.values) == REEXECUTION_STRATEGY_VALUES
    # Every classified type is still in use (a renamed type would leave a stale entry).
    assert set(LAUNCH_INPUT_FIELDS) <= seen
    assert {kind for fields in LAUNCH_INPUT_FIELDS.values() for kind in fields.values()} <= {"resolved", "narrows", "checked", "inert"}


def test_every_field_returning_guarded_data_is_guarded_or_reviewed() -> None:
    from graphql import GraphQLInterfaceType, GraphQLObjectType, get_named_type

    from b2cal_assets.proxy.permissions import GUARDED_TYPES, READ_REVIEWED, SENSITIVE_FIELDS

    schema = _schema()
    unguarded = []
    for type_name, named in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(named, (GraphQLObjectType, GraphQLInterfaceType)):
            continue
        for field_name, field in named.fields.items():
            guarded = GUARDED_TYPES.get(get_named_type(field.type).name)
            if guarded is not None and SENSITIVE_FIELDS.get(field_name) != guarded:
                unguarded.append(f"{type_name}.{field_name}")
    assert unguarded == []
    for reviewed in READ_REVIEWED:
        type_name, field_name = reviewed.split(".")
        assert field_name in schema.type_map[type_name].fields, reviewed


def test_tick_and_backfill_log_events_need_captured_logs() -> None:
    for query in ('{ instigationStateOrError(instigationSelector: {repositoryName: "r", repositoryLocationName: "l", name: "s"})'
                  " { ... on InstigationState { ticks { logEvents { events { message } } } } } }",
                  '{ partitionBackfillOrError(backfillId: "b") { ... on PartitionBackfill { logEvents(cursor: null) { events { message } } } } }'):
        assert Permission.CAPTURED_LOGS in classify_operation(query, None).root_fields[0].sensitive
