"""The life cycle of a global tag, as in the Belle II conditions database.

States and what they mean here:

========== =========================================================== =========== ==========
state      meaning                                                     content     processing
========== =========================================================== =========== ==========
OPEN       being filled (a calibration's staging tag)                  editable    refused
TESTING    content frozen while it is tested; reopen it to change it   frozen      allowed
VALIDATED  tests passed; may be published or become a running tag      frozen      allowed
PUBLISHED  immutable release used for (re)processing                   immutable   allowed
RUNNING    prompt-processing tag; grows only by the running-tag update append-only  allowed
INVALID    must not be used any more (final)                           frozen      refused
========== =========================================================== =========== ==========

Transition table (anything not listed is refused with TagTransitionError):

========== ==================================
from       to
========== ==================================
OPEN       TESTING, INVALID
TESTING    OPEN, VALIDATED, INVALID
VALIDATED  PUBLISHED, RUNNING, INVALID
RUNNING    PUBLISHED, INVALID
PUBLISHED  INVALID
INVALID    (none: final)
========== ==================================

Why these edges:

* TESTING -> OPEN is the only way back to editing: a test that finds a problem reopens the tag,
  and the tag must pass TESTING again before it can be validated.
* VALIDATED never goes back: validation results refer to exactly this content.
* RUNNING -> PUBLISHED freezes a running tag at the end of a data-taking period.
* Any state except INVALID may be invalidated; a tag never leaves INVALID because
  reprocessing must be able to trust that an invalidated tag stays unusable.
"""

from __future__ import annotations

import enum

from b2cal_assets.conditions.errors import TagImmutableError, TagNotUsableError, TagTransitionError

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TagState",
    "check_content_editable",
    "check_transition",
    "check_usable_for_processing",
]


class TagState(str, enum.Enum):
    """State of a global tag; the value is what the database stores."""

    OPEN = "OPEN"
    TESTING = "TESTING"
    VALIDATED = "VALIDATED"
    PUBLISHED = "PUBLISHED"
    RUNNING = "RUNNING"
    INVALID = "INVALID"

    def __str__(self) -> str:
        return self.value


ALLOWED_TRANSITIONS: dict[TagState, frozenset[TagState]] = {
    TagState.OPEN: frozenset({TagState.TESTING, TagState.INVALID}),
    TagState.TESTING: frozenset({TagState.OPEN, TagState.VALIDATED, TagState.INVALID}),
    TagState.VALIDATED: frozenset({TagState.PUBLISHED, TagState.RUNNING, TagState.INVALID}),
    TagState.RUNNING: frozenset({TagState.PUBLISHED, TagState.INVALID}),
    TagState.PUBLISHED: frozenset({TagState.INVALID}),
    TagState.INVALID: frozenset(),
}

# Order used when listing allowed targets in messages.
_STATE_ORDER = list(TagState)


def check_transition(tag: str, current: TagState, requested: TagState) -> None:
    """Raise TagTransitionError unless ``current -> requested`` is in the transition table."""
    allowed = ALLOWED_TRANSITIONS[current]
    if requested not in allowed:
        raise TagTransitionError(
            tag, current.value, requested.value, [state.value for state in _STATE_ORDER if state in allowed]
        )


_EDIT_ADVICE: dict[TagState, str] = {
    TagState.TESTING: "move it back to OPEN to change it (it must then be tested again), or stage into a new tag",
    TagState.VALIDATED: "validated content is final; stage the change into a new OPEN tag",
    TagState.PUBLISHED: "published tags are immutable; stage the change into a new OPEN tag",
    TagState.RUNNING: (
        "running tags change only through the running-tag update: stage the payloads into an OPEN tag, "
        "validate it, then merge it with update_running_tag(..., valid_from=...)"
    ),
    TagState.INVALID: "invalidated tags are never changed; create a new tag",
}


def check_content_editable(tag: str, state: TagState) -> None:
    """Raise TagImmutableError unless payload IoVs may be added to a tag in ``state`` (only OPEN)."""
    if state is not TagState.OPEN:
        raise TagImmutableError(tag, state.value, _EDIT_ADVICE[state])


def check_usable_for_processing(tag: str, state: TagState) -> None:
    """Raise TagNotUsableError for OPEN (still changing) and INVALID (withdrawn) tags."""
    if state is TagState.OPEN:
        raise TagNotUsableError(
            tag, state.value, "its content may still change; move it to TESTING (or beyond) before processing with it"
        )
    if state is TagState.INVALID:
        raise TagNotUsableError(tag, state.value, "it was withdrawn; use its replacement tag")
