"""Exceptions of the conditions database, one class per failure family.

Every message says what was refused, with the facts (tag, payload, revision, IoV, state), and
what to do instead, so an operator reading a failed Dagster run or the CLI knows the next step.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConditionsError(Exception):
    """Base class of every conditions-database refusal."""


class UnknownTagError(ConditionsError, LookupError):
    """No global tag of that name exists."""

    def __init__(self, tag: str) -> None:
        super().__init__(f"global tag {tag!r} does not exist; list tags with `b2cal conditions tags`")
        self.tag = tag


class TagExistsError(ConditionsError):
    """A global tag of that name already exists."""

    def __init__(self, tag: str) -> None:
        super().__init__(f"global tag {tag!r} already exists; tag names are never reused, choose another name")
        self.tag = tag


class InvalidTagNameError(ConditionsError, ValueError):
    """A global-tag name that could not be used safely in paths and command lines."""


class TagTransitionError(ConditionsError):
    """A state change the tag life cycle does not allow."""

    def __init__(self, tag: str, current: str, requested: str, allowed: Sequence[str]) -> None:
        allowed_text = ", ".join(allowed) if allowed else "none: this state is final"
        super().__init__(
            f"global tag {tag!r} cannot go from {current} to {requested}; allowed from {current}: {allowed_text}"
        )
        self.tag = tag
        self.current = current
        self.requested = requested
        self.allowed = tuple(allowed)


class TagImmutableError(ConditionsError):
    """A content change (adding or replacing payload IoVs) on a tag whose state forbids it."""

    def __init__(self, tag: str, state: str, advice: str) -> None:
        super().__init__(f"global tag {tag!r} is {state} and its content cannot be changed; {advice}")
        self.tag = tag
        self.state = state


class TagNotUsableError(ConditionsError):
    """Processing asked for a tag whose state does not allow processing (OPEN or INVALID)."""

    def __init__(self, tag: str, state: str, advice: str) -> None:
        super().__init__(f"global tag {tag!r} is {state} and cannot be used for processing; {advice}")
        self.tag = tag
        self.state = state


class InvalidPayloadError(ConditionsError, ValueError):
    """Payload name or constants that cannot be stored (bad name, shapes, negative errors)."""


class UnknownPayloadError(ConditionsError, LookupError):
    """No payload with that name and revision exists."""

    def __init__(self, name: str, revision: int) -> None:
        super().__init__(f"payload {name} revision {revision} does not exist in the conditions database")
        self.name = name
        self.revision = revision


class PayloadFileMissingError(ConditionsError):
    """The database records a payload whose file is not in the payload directory."""

    def __init__(self, name: str, revision: int, path: str) -> None:
        super().__init__(
            f"payload {name} revision {revision}: file {path} is missing; the payload directory does not "
            "match the database (wrong --payload-dir, or files deleted by hand); restore it from backup"
        )
        self.name = name
        self.revision = revision
        self.path = path


class PayloadChecksumError(ConditionsError):
    """A payload file whose md5 differs from the one recorded when it was stored."""

    def __init__(self, name: str, revision: int, path: str, expected: str, found: str) -> None:
        super().__init__(
            f"payload {name} revision {revision}: file {path} md5 {found} != recorded {expected}; the file "
            "was modified or corrupted after it was stored, do not use it; restore it from backup"
        )
        self.name = name
        self.revision = revision
        self.path = path
        self.expected = expected
        self.found = found


class OverlappingIoVError(ConditionsError):
    """New payload IoVs that would overlap IoVs of the same payload name already in the tag."""

    def __init__(self, tag: str, conflicts: Sequence[str]) -> None:
        super().__init__(
            f"global tag {tag!r}: new IoVs overlap IoVs already in the tag ({'; '.join(conflicts)}); pass "
            "replace_overlapping=True to supersede the old IoVs (a re-materialised calibration), or fix the IoVs"
        )
        self.tag = tag
        self.conflicts = tuple(conflicts)


class RunningUpdateError(ConditionsError):
    """A running-tag update refused; ``problems`` lists every rule the tags violate."""

    def __init__(self, running_tag: str, staging_tag: str, valid_from: str, problems: Sequence[str]) -> None:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"cannot update running tag {running_tag!r} from staging tag {staging_tag!r} at valid_from "
            f"{valid_from}; nothing was changed:\n{listing}"
        )
        self.running_tag = running_tag
        self.staging_tag = staging_tag
        self.problems = tuple(problems)


class LocalDatabaseExportError(ConditionsError):
    """The local-database export cannot write to the requested directory."""
