"""Helpers shared by the conditions-database tests."""

from __future__ import annotations

import numpy as np

from b2cal_assets.conditions.iov import IoV
from b2cal_assets.conditions.payloads import PayloadConstants
from b2cal_assets.conditions.store import ConditionsStore, NewPayload
from b2cal_assets.conditions.tags import TagState

# How to reach each state from a new (OPEN) tag along allowed transitions.
PATH_TO_STATE: dict[TagState, list[TagState]] = {
    TagState.OPEN: [],
    TagState.TESTING: [TagState.TESTING],
    TagState.VALIDATED: [TagState.TESTING, TagState.VALIDATED],
    TagState.PUBLISHED: [TagState.TESTING, TagState.VALIDATED, TagState.PUBLISHED],
    TagState.RUNNING: [TagState.TESTING, TagState.VALIDATED, TagState.RUNNING],
    TagState.INVALID: [TagState.INVALID],
}


def make_constants(channels: int = 16, seed: int = 0) -> PayloadConstants:
    rng = np.random.default_rng(seed)
    status = np.zeros(channels, dtype=np.int32)
    value = rng.normal(1.0, 0.05, channels)
    if channels > 3:
        status[3] = 1  # a dead channel keeps its row, with a NaN value
        value[3] = np.nan
    return PayloadConstants(
        value=value,
        error=rng.uniform(0.001, 0.01, channels),
        channel=np.arange(100, 100 + channels, dtype=np.int32),
        status=status,
        attributes={"unit": "GeV", "seed": seed},
    )


def new_payload(name: str, iov: str, seed: int = 0, channels: int = 16) -> NewPayload:
    return NewPayload(name=name, iov=IoV.parse(iov), constants=make_constants(channels, seed))


def bring_to_state(store: ConditionsStore, tag: str, state: TagState) -> None:
    for step in PATH_TO_STATE[state]:
        store.set_tag_state(tag, step)


def make_tag(store: ConditionsStore, tag: str, state: TagState, payloads: list[NewPayload]) -> None:
    """A tag with ``payloads`` (added while OPEN), then moved to ``state``."""
    store.create_tag(tag)
    if payloads:
        store.add_payloads(tag, payloads)
    bring_to_state(store, tag, state)


def entry_rows(store: ConditionsStore, tag: str) -> list[tuple[str, int, str]]:
    return [(entry.name, entry.revision, str(entry.iov)) for entry in store.tag_entries(tag)]
