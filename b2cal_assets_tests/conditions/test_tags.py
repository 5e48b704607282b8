"""Global-tag life cycle: every allowed and refused transition, immutability, processing rules."""

from __future__ import annotations

import itertools

import pytest

from b2cal_assets.conditions.errors import (
    InvalidTagNameError,
    TagExistsError,
    TagImmutableError,
    TagNotUsableError,
    TagTransitionError,
    UnknownTagError,
)
from b2cal_assets.conditions.tags import ALLOWED_TRANSITIONS, TagState
from b2cal_assets_tests.conditions.helpers import bring_to_state, entry_rows, make_tag, new_payload

ALL_PAIRS = list(itertools.product(TagState, TagState))
ALLOWED = [(a, b) for a, b in ALL_PAIRS if b in ALLOWED_TRANSITIONS[a]]
REFUSED = [(a, b) for a, b in ALL_PAIRS if b not in ALLOWED_TRANSITIONS[a]]


def _ids(pairs):
    return [f"{a.value}->{b.value}" for a, b in pairs]


def test_transition_table_follows_belle2():
    assert ALLOWED_TRANSITIONS == {
        TagState.OPEN: {TagState.TESTING, TagState.INVALID},
        TagState.TESTING: {TagState.OPEN, TagState.VALIDATED, TagState.INVALID},
        TagState.VALIDATED: {TagState.PUBLISHED, TagState.RUNNING, TagState.INVALID},
        TagState.RUNNING: {TagState.PUBLISHED, TagState.INVALID},
        TagState.PUBLISHED: {TagState.INVALID},
        TagState.INVALID: set(),
    }


def test_new_tags_are_open_and_record_their_creation(store):
    tag = store.create_tag("staging_e0026", "bucket 3")
    assert tag.state is TagState.OPEN and tag.description == "bucket 3"
    assert [(c.from_state, c.to_state) for c in store.tag_history("staging_e0026")] == [(None, TagState.OPEN)]


@pytest.mark.parametrize(("current", "requested"), ALLOWED, ids=_ids(ALLOWED))
def test_allowed_transition_changes_state_and_is_recorded(store, current, requested):
    store.create_tag("gt")
    bring_to_state(store, "gt", current)
    tag = store.set_tag_state("gt", requested, reason="because")
    assert tag.state is requested
    last = store.tag_history("gt")[-1]
    assert (last.from_state, last.to_state, last.reason) == (current, requested, "because")


@pytest.mark.parametrize(("current", "requested"), REFUSED, ids=_ids(REFUSED))
def test_refused_transition_raises_and_keeps_state(store, current, requested):
    store.create_tag("gt")
    bring_to_state(store, "gt", current)
    with pytest.raises(TagTransitionError, match=f"cannot go from {current.value} to {requested.value}") as refusal:
        store.set_tag_state("gt", requested)
    assert refusal.value.allowed == tuple(s.value for s in TagState if s in ALLOWED_TRANSITIONS[current])
    assert store.tag("gt").state is current


def test_invalid_is_final_and_says_so(store):
    store.create_tag("gt")
    store.set_tag_state("gt", TagState.INVALID)
    with pytest.raises(TagTransitionError, match="none: this state is final"):
        store.set_tag_state("gt", TagState.OPEN)


@pytest.mark.parametrize("state", [s for s in TagState if s is not TagState.OPEN], ids=lambda s: s.value)
def test_only_open_tags_accept_payloads(store, state):
    make_tag(store, "gt", state, [new_payload("BeamSpot", "26,0,26,-1")])
    with pytest.raises(TagImmutableError, match=f"is {state.value}"):
        store.add_payloads("gt", [new_payload("BeamSpot", "27,0,-1,-1")])
    assert entry_rows(store, "gt") == [("BeamSpot", 1, "26,0,26,-1")]
    assert [p.revision for p in store.payload_revisions("BeamSpot")] == [1]  # no payload stored either


def test_running_tag_refusal_points_to_the_running_tag_update(store):
    make_tag(store, "running", TagState.RUNNING, [new_payload("BeamSpot", "0,0,-1,-1")])
    with pytest.raises(TagImmutableError, match="update_running_tag"):
        store.add_payloads("running", [new_payload("BeamSpot", "30,0,-1,-1")])


def test_reopened_testing_tag_accepts_payloads_again(store):
    make_tag(store, "gt", TagState.TESTING, [])
    store.set_tag_state("gt", TagState.OPEN, reason="fix BeamSpot")
    store.add_payloads("gt", [new_payload("BeamSpot", "26,0,-1,-1")])
    assert entry_rows(store, "gt") == [("BeamSpot", 1, "26,0,-1,-1")]


@pytest.mark.parametrize("state", [TagState.OPEN, TagState.INVALID], ids=lambda s: s.value)
def test_processing_refuses_open_and_invalid_tags(store, state):
    make_tag(store, "gt", state, [])
    with pytest.raises(TagNotUsableError, match=f"is {state.value} and cannot be used for processing"):
        store.entries_for_processing("gt")


@pytest.mark.parametrize(
    "state", [TagState.TESTING, TagState.VALIDATED, TagState.PUBLISHED, TagState.RUNNING], ids=lambda s: s.value
)
def test_processing_accepts_frozen_tags(store, state):
    make_tag(store, "gt", state, [new_payload("BeamSpot", "26,0,-1,-1")])
    assert [e.name for e in store.entries_for_processing("gt")] == ["BeamSpot"]


def test_tag_names_are_unique(store):
    store.create_tag("gt")
    with pytest.raises(TagExistsError, match="already exists"):
        store.create_tag("gt")


@pytest.mark.parametrize("name", ["", "has space", "../escape", "-leading-dash", "x" * 129])
def test_unsafe_tag_names_are_refused(store, name):
    with pytest.raises(InvalidTagNameError):
        store.create_tag(name)


def test_unknown_tag_is_reported_by_name(store):
    with pytest.raises(UnknownTagError, match="'nope' does not exist"):
        store.set_tag_state("nope", TagState.TESTING)
    with pytest.raises(UnknownTagError):
        store.tag_entries("nope")


def test_tags_list_counts_iovs(store):
    make_tag(store, "b", TagState.OPEN, [new_payload("BeamSpot", "26,0,-1,-1"), new_payload("CDCTimeZeros", "26,0,-1,-1")])
    store.create_tag("a")
    assert [(t.name, t.iov_count) for t in store.tags()] == [("a", 0), ("b", 2)]
