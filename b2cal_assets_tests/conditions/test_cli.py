"""`b2cal conditions tags | show | export` through click's CliRunner."""

from __future__ import annotations

from click.testing import CliRunner

from b2cal_assets.cli import main
from b2cal_assets.conditions.tags import TagState
from b2cal_assets_tests.conditions.helpers import make_tag, new_payload


def _invoke(store, *args):
    # Through the top-level command, as a user runs it: its error boundary turns refusals into one line.
    return CliRunner().invoke(
        main, ["conditions", *args, "--database-url", store.database_url, "--payload-dir", str(store.payload_dir)]
    )


def test_tags_lists_names_states_and_iov_counts(store):
    make_tag(store, "running", TagState.RUNNING, [new_payload("BeamSpot", "0,0,-1,-1")])
    store.create_tag("staging")
    result = _invoke(store, "tags")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "IOVS", "UPDATED"]
    assert lines[1].split()[:3] == ["running", "RUNNING", "1"]
    assert lines[2].split()[:3] == ["staging", "OPEN", "0"]


def test_tags_on_an_empty_database(store):
    result = _invoke(store, "tags")
    assert result.exit_code == 0 and "no global tags" in result.output


def test_show_prints_state_history_and_payloads(store):
    make_tag(store, "staging", TagState.VALIDATED, [new_payload("BeamSpot", "26,12,-1,-1")])
    result = _invoke(store, "show", "staging")
    assert result.exit_code == 0, result.output
    assert "global tag staging: VALIDATED" in result.output
    assert "TESTING -> VALIDATED" in result.output
    checksum = store.payload("BeamSpot", 1).checksum
    assert any(line.split() == ["BeamSpot", "1", "26,12,-1,-1", checksum] for line in result.output.splitlines())


def test_show_unknown_tag_fails_with_one_line(store):
    result = _invoke(store, "show", "nope")
    assert result.exit_code == 1
    assert "global tag 'nope' does not exist" in result.output and "Traceback" not in result.output


def test_export_writes_the_local_database_and_warns_for_open_tags(store, tmp_path):
    make_tag(store, "staging", TagState.OPEN, [new_payload("BeamSpot", "26,12,-1,-1")])
    out = tmp_path / "localdb"
    result = _invoke(store, "export", "--tag", "staging", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "exported staging (OPEN): 1 IoVs, 1 payload files" in result.output
    assert "warning: staging is OPEN" in result.output
    assert (out / "database.txt").read_text() == "dbstore/BeamSpot 1 26,12,-1,-1\n"
    assert (out / "dbstore_BeamSpot_rev_1.root").is_file()
    again = _invoke(store, "export", "--tag", "staging", "--out", str(out))
    assert again.exit_code == 1 and "--force" in again.output
    assert _invoke(store, "export", "--tag", "staging", "--out", str(out), "--force").exit_code == 0


def test_defaults_come_from_the_platform_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("B2CAL_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("B2CAL_DATABASE_URL", raising=False)
    # A read command never creates the database it was asked to read: `b2cal db upgrade` does.
    assert CliRunner().invoke(main, ["conditions", "tags"]).exit_code == 1
    assert not (tmp_path / "state" / "b2cal.sqlite").exists()
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    result = CliRunner().invoke(main, ["conditions", "tags"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "state" / "b2cal.sqlite").is_file()
    assert (tmp_path / "state" / "payloads").is_dir()
