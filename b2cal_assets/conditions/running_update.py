"""The running-tag update: merge a VALIDATED staging tag into the RUNNING tag from ``valid_from``.

Rules, following basf2's ``conditions_db.runningupdate`` (strict mode):

1. The running tag is RUNNING and the staging tag is VALIDATED.
2. Everything in the running tag starts before ``valid_from``, and every IoV that is not
   open-ended (valid forever) also ends before it: the update never rewrites runs that
   already have closed constants.
3. The staging tag is not empty; per payload name its IoVs are free of overlaps, the last one is
   open-ended (``-1,-1``), and from ``valid_from`` on they cover every run without a gap.
4. Staging IoVs are cut to start at ``valid_from``; IoVs entirely before it are not copied.
   (basf2 only moves a ``0,0`` start; prompt staging tags start at the bucket's first run,
   and ``valid_from`` is the first run not yet processed, so the runs before it keep the
   constants they were processed with.)
5. For every payload name in the staging tag, the running tag's open-ended IoVs are closed
   just before ``valid_from`` (before ``27,0`` that is ``26,-1``: all runs of experiment 26).
   Payload names absent from the staging tag stay open.

Every violation is collected and reported at once (RunningUpdateError); nothing is changed
unless all rules pass, and the whole update is one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from b2cal_assets.conditions import schema
from b2cal_assets.conditions.errors import RunningUpdateError
from b2cal_assets.conditions.iov import ExpRun, IoV, find_gaps, find_overlaps
from b2cal_assets.conditions.store import ConditionsStore, TagEntry, describe_entry, iov_columns, utc_now
from b2cal_assets.conditions.tags import TagState

__all__ = ["ClosedIoV", "RunningUpdatePlan", "plan_running_update", "update_running_tag"]


@dataclass(frozen=True)
class ClosedIoV:
    """A running-tag entry whose open end is closed just before ``valid_from``."""

    entry: TagEntry
    new_iov: IoV


@dataclass(frozen=True)
class RunningUpdatePlan:
    """What the update does (or, with dry_run, would do) to the running tag."""

    running_tag: str
    staging_tag: str
    valid_from: ExpRun
    closed: tuple[ClosedIoV, ...]
    added: tuple[tuple[TagEntry, IoV], ...]  # staging entry and the IoV it gets in the running tag

    def summary(self) -> str:
        lines = [f"running-tag update {self.staging_tag} -> {self.running_tag} from {exprun_text(self.valid_from)}:"]
        lines += [f"  close {describe_entry(item.entry)} -> {item.new_iov}" for item in self.closed]
        lines += [f"  add   {entry.name} rev {entry.revision} {iov}" for entry, iov in self.added]
        return "\n".join(lines)


def exprun_text(run: ExpRun) -> str:
    """``26,12``: the spelling b2conditionsdb uses for valid_from."""
    return f"{run.exp},{run.run}"


def _is_unbounded(iov: IoV) -> bool:
    """Valid forever (final -1,-1); ``26,-1`` (all of experiment 26) is not."""
    return not iov.is_empty and iov.final_exp == -1 and iov.final_run == -1


def plan_running_update(
    running_tag: str,
    running_entries: list[TagEntry],
    staging_tag: str,
    staging_entries: list[TagEntry],
    valid_from: ExpRun,
) -> RunningUpdatePlan:
    """Check rules 2-5 on the tags' contents and compute the changes; RunningUpdateError lists
    every violation. Pure: reads nothing, writes nothing (the states are checked by the caller)."""
    problems: list[str] = []
    from_valid = IoV.from_exprun(valid_from)

    for entry in running_entries:
        if entry.iov.first >= valid_from:
            problems.append(
                f"running tag: {describe_entry(entry)} starts at or after valid_from {exprun_text(valid_from)}; "
                "the update cannot rewrite runs the running tag already covers from their start, "
                f"use a valid_from after {exprun_text(entry.iov.first)}"
            )
        elif not _is_unbounded(entry.iov) and entry.iov.overlaps(from_valid):
            problems.append(
                f"running tag: {describe_entry(entry)} is closed but reaches valid_from {exprun_text(valid_from)}; "
                "use a valid_from after its end"
            )

    staging_by_name: dict[str, list[TagEntry]] = defaultdict(list)
    for entry in staging_entries:
        staging_by_name[entry.name].append(entry)
    if not staging_by_name:
        problems.append(f"staging tag {staging_tag!r} is empty: there is nothing to merge")

    added: list[tuple[TagEntry, IoV]] = []
    for name, entries in sorted(staging_by_name.items()):
        iovs = [entry.iov for entry in entries]
        for first, second in find_overlaps(iovs):
            problems.append(f"staging tag: {name} IoVs {first} and {second} overlap; keep one payload per run")
        last = max(entries, key=lambda entry: entry.iov.sort_key())
        if not _is_unbounded(last.iov):
            problems.append(
                f"staging tag: {describe_entry(last)} is not open-ended; the last IoV of every payload "
                "must be valid until -1,-1 so that new runs have constants"
            )
        # Gaps from valid_from (or the staging start, if earlier) on; the open end was reported above.
        earliest = min(entries, key=lambda entry: entry.iov.sort_key()).iov.first
        within = IoV.from_exprun(min(earliest, valid_from))
        for gap in find_gaps(iovs, within):
            if _is_unbounded(gap) and not _is_unbounded(last.iov):
                continue
            problems.append(f"staging tag: {name} has no payload for runs {gap}; fill the gap or choose valid_from")
        for entry in entries:
            clipped = entry.iov.intersection(from_valid)
            if not clipped.is_empty:
                added.append((entry, clipped))

    closed: list[ClosedIoV] = []
    for entry in running_entries:
        if entry.name in staging_by_name and _is_unbounded(entry.iov) and entry.iov.first < valid_from:
            (before,) = entry.iov.subtract(from_valid)  # one piece: it starts before valid_from, ends never
            closed.append(ClosedIoV(entry=entry, new_iov=before))

    if problems:
        raise RunningUpdateError(running_tag, staging_tag, exprun_text(valid_from), problems)
    return RunningUpdatePlan(
        running_tag=running_tag,
        staging_tag=staging_tag,
        valid_from=valid_from,
        closed=tuple(closed),
        added=tuple(added),
    )


def update_running_tag(
    store: ConditionsStore,
    *,
    running_tag: str,
    staging_tag: str,
    valid_from: ExpRun | tuple[int, int],
    dry_run: bool = False,
) -> RunningUpdatePlan:
    """Merge VALIDATED ``staging_tag`` into RUNNING ``running_tag`` from ``valid_from``, atomically.

    Returns the plan that was applied (with ``dry_run``, checked but not applied). Raises
    RunningUpdateError listing every violated rule, UnknownTagError for a missing tag.
    """
    if not isinstance(valid_from, ExpRun):
        valid_from = ExpRun(*valid_from)
    with store.transaction() as conn:
        # Lock both tags in name order so two concurrent updates cannot deadlock.
        locked = {name: store.lock_tag(conn, name) for name in sorted({running_tag, staging_tag})}
        running, staging = locked[running_tag], locked[staging_tag]
        state_problems = []
        if running_tag == staging_tag:
            state_problems.append("the running and staging tags are the same tag")
        if running.state is not TagState.RUNNING:
            state_problems.append(f"running tag {running_tag!r} is {running.state}, it must be RUNNING")
        if staging.state is not TagState.VALIDATED:
            state_problems.append(
                f"staging tag {staging_tag!r} is {staging.state}, it must be VALIDATED (validate it first)"
            )
        if state_problems:
            raise RunningUpdateError(running_tag, staging_tag, exprun_text(valid_from), state_problems)
        plan = plan_running_update(
            running_tag, store.entries_in(conn, running), staging_tag, store.entries_in(conn, staging), valid_from
        )
        if dry_run:
            return plan  # nothing written: the commit on leaving the block is empty
        now = utc_now()
        for item in plan.closed:
            conn.execute(
                schema.payload_iov.update()
                .where(schema.payload_iov.c.id == item.entry.iov_id)
                .values(**iov_columns(item.new_iov))
            )
        for entry, iov in plan.added:
            conn.execute(
                schema.payload_iov.insert().values(
                    tag_id=running.tag_id, payload_id=entry.payload.payload_id, created_at=now, **iov_columns(iov)
                )
            )
        conn.execute(
            schema.running_update.insert().values(
                running_tag_id=running.tag_id,
                staging_tag_id=staging.tag_id,
                valid_from_exp=valid_from.exp,
                valid_from_run=valid_from.run,
                closed_iovs=len(plan.closed),
                added_iovs=len(plan.added),
                applied_at=now,
            )
        )
        conn.execute(schema.global_tag.update().where(schema.global_tag.c.id == running.tag_id).values(updated_at=now))
    return plan
