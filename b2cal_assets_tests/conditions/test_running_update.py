"""The running-tag update: VALIDATED staging merged into RUNNING from valid_from."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from b2cal_assets.conditions import schema
from b2cal_assets.conditions.errors import RunningUpdateError, TagImmutableError, UnknownTagError
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.running_update import update_running_tag
from b2cal_assets.conditions.tags import TagState
from b2cal_assets_tests.conditions.helpers import entry_rows, make_tag, new_payload

R, V = TagState.RUNNING, TagState.VALIDATED


def _update(store, valid_from, **kwargs):
    return update_running_tag(store, running_tag="running", staging_tag="staging", valid_from=valid_from, **kwargs)


def _refusal(store, valid_from) -> str:
    before = entry_rows(store, "running")
    with pytest.raises(RunningUpdateError) as refusal:
        _update(store, valid_from)
    assert entry_rows(store, "running") == before  # nothing changed
    return str(refusal.value)


def test_open_running_payload_is_closed_just_before_valid_from_and_staging_added(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,-1,-1")])
    plan = _update(store, (26, 12))
    assert entry_rows(store, "running") == [("BeamSpot", 1, "0,0,26,11"), ("BeamSpot", 2, "26,12,-1,-1")]
    assert [str(item.new_iov) for item in plan.closed] == ["0,0,26,11"]
    assert "close BeamSpot rev 1 0,0,-1,-1 -> 0,0,26,11" in plan.summary()


def test_closing_before_run_zero_of_an_experiment_closes_at_the_end_of_the_previous_one(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "26,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "27,0,-1,-1")])
    _update(store, ExpRun(27, 0))
    assert entry_rows(store, "running") == [("BeamSpot", 1, "26,0,26,-1"), ("BeamSpot", 2, "27,0,-1,-1")]


def test_staging_iovs_are_cut_to_start_at_valid_from(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,0,26,9"), new_payload("BeamSpot", "26,10,-1,-1")])
    plan = _update(store, (26, 30))
    assert entry_rows(store, "running") == [("BeamSpot", 1, "0,0,26,29"), ("BeamSpot", 3, "26,30,-1,-1")]
    assert [(entry.revision, str(iov)) for entry, iov in plan.added] == [(3, "26,30,-1,-1")]


def test_sequential_staging_payloads_all_enter_the_running_tag(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,26,20"), new_payload("BeamSpot", "26,21,-1,-1")])
    _update(store, (26, 12))
    assert entry_rows(store, "running") == [
        ("BeamSpot", 1, "0,0,26,11"),
        ("BeamSpot", 2, "26,12,26,20"),
        ("BeamSpot", 3, "26,21,-1,-1"),
    ]


def test_payloads_absent_from_staging_stay_open_and_new_names_are_added(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1"), new_payload("CDCTimeZeros", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,-1,-1"), new_payload("ECLCrystalEnergy", "26,12,-1,-1")])
    _update(store, (26, 12))
    assert entry_rows(store, "running") == [
        ("BeamSpot", 1, "0,0,26,11"),
        ("BeamSpot", 2, "26,12,-1,-1"),
        ("CDCTimeZeros", 1, "0,0,-1,-1"),
        ("ECLCrystalEnergy", 1, "26,12,-1,-1"),
    ]


def test_update_is_recorded_and_running_tag_stays_immutable_otherwise(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,-1,-1")])
    _update(store, (26, 12))
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(schema.running_update)).one()
    assert (row.valid_from_exp, row.valid_from_run, row.closed_iovs, row.added_iovs) == (26, 12, 1, 1)
    assert store.tag("running").state is R
    with pytest.raises(TagImmutableError):
        store.add_payloads("running", [new_payload("BeamSpot", "30,0,-1,-1")])


def test_consecutive_updates_chain(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,-1,-1")])
    _update(store, (26, 12))
    make_tag(store, "staging2", V, [new_payload("BeamSpot", "26,40,-1,-1")])
    update_running_tag(store, running_tag="running", staging_tag="staging2", valid_from=(26, 40))
    assert entry_rows(store, "running") == [
        ("BeamSpot", 1, "0,0,26,11"),
        ("BeamSpot", 2, "26,12,26,39"),
        ("BeamSpot", 3, "26,40,-1,-1"),
    ]


def test_dry_run_checks_but_changes_nothing(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,-1,-1")])
    plan = _update(store, (26, 12), dry_run=True)
    assert len(plan.closed) == 1 and len(plan.added) == 1
    assert entry_rows(store, "running") == [("BeamSpot", 1, "0,0,-1,-1")]


@pytest.mark.parametrize("staging_state", [s for s in TagState if s is not V], ids=lambda s: s.value)
def test_staging_must_be_validated(store, staging_state):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", staging_state, [new_payload("BeamSpot", "26,12,-1,-1")])
    assert f"staging tag 'staging' is {staging_state.value}, it must be VALIDATED" in _refusal(store, (26, 12))


@pytest.mark.parametrize("running_state", [s for s in TagState if s is not R], ids=lambda s: s.value)
def test_running_tag_must_be_running(store, running_state):
    make_tag(store, "running", running_state, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,-1,-1")])
    assert f"running tag 'running' is {running_state.value}, it must be RUNNING" in _refusal(store, (26, 12))


def test_staging_must_be_open_ended(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,26,-1")])
    message = _refusal(store, (26, 12))
    assert "BeamSpot rev 2 26,12,26,-1 is not open-ended" in message
    assert "no payload for runs" not in message  # the open end is reported once, not also as a gap


def test_staging_must_be_free_of_gaps(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,26,20"), new_payload("BeamSpot", "26,25,-1,-1")])
    assert "BeamSpot has no payload for runs 26,21,26,24" in _refusal(store, (26, 12))


def test_staging_starting_after_valid_from_would_leave_a_gap(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,20,-1,-1")])
    assert "BeamSpot has no payload for runs 26,12,26,19" in _refusal(store, (26, 12))


def test_staging_must_be_free_of_overlaps(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    store.create_tag("staging")
    store.add_payloads("staging", [new_payload("BeamSpot", "26,12,-1,-1")])
    # An overlap can only come from a direct write; simulate an imported staging tag.
    with store.transaction() as conn:
        payload_id = conn.execute(sa.select(schema.payload.c.id).where(schema.payload.c.revision == 2)).scalar_one()
        tag_id = store.lock_tag(conn, "staging").tag_id
        conn.execute(
            schema.payload_iov.insert().values(
                tag_id=tag_id, payload_id=payload_id, first_exp=26, first_run=30, final_exp=26, final_run=40,
                created_at=sa.func.now(),
            )
        )
    store.set_tag_state("staging", TagState.TESTING)
    store.set_tag_state("staging", V)
    assert "BeamSpot IoVs 26,12,-1,-1 and 26,30,26,40 overlap" in _refusal(store, (26, 12))


def test_empty_staging_is_refused(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    make_tag(store, "staging", V, [])
    assert "staging tag 'staging' is empty" in _refusal(store, (26, 12))


def test_running_payload_starting_at_or_after_valid_from_is_refused(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,26,-1"), new_payload("BeamSpot", "27,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,-1,-1")])
    message = _refusal(store, (26, 12))
    assert "BeamSpot rev 2 27,0,-1,-1 starts at or after valid_from 26,12" in message
    assert "BeamSpot rev 1 0,0,26,-1 is closed but reaches valid_from 26,12" in message


def test_closed_running_iov_reaching_valid_from_is_refused_for_any_payload(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1"), new_payload("CDCTimeZeros", "0,0,26,50")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,-1,-1")])
    assert "CDCTimeZeros rev 1 0,0,26,50 is closed but reaches valid_from 26,12" in _refusal(store, (26, 12))


def test_all_violations_are_reported_together(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "27,0,-1,-1")])
    make_tag(store, "staging", V, [new_payload("BeamSpot", "26,12,26,20"), new_payload("CDCTimeZeros", "26,30,-1,-1")])
    message = _refusal(store, (26, 12))
    assert message.count("\n  - ") >= 3 and "nothing was changed" in message


def test_same_tag_and_unknown_tags_are_refused(store):
    make_tag(store, "running", R, [new_payload("BeamSpot", "0,0,-1,-1")])
    with pytest.raises(RunningUpdateError, match="same tag"):
        update_running_tag(store, running_tag="running", staging_tag="running", valid_from=(26, 12))
    with pytest.raises(UnknownTagError):
        update_running_tag(store, running_tag="running", staging_tag="missing", valid_from=(26, 12))
