"""ExpRun, the one run-identity type: text form round trip and the runs it refuses."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2cal_assets.conditions import iov
from b2cal_assets.run_identity import EXP_MAX, RUN_MAX, ExpRun, InvalidRunError
from b2cal_assets.runs import naming

runs = st.builds(ExpRun, st.integers(0, EXP_MAX), st.integers(0, RUN_MAX))


@given(runs)
def test_text_form_round_trips(run: ExpRun) -> None:
    text = run.format()
    assert ExpRun.parse(text) == run
    assert str(run) == text
    assert len(text) == len("e0026.r00012")


@given(runs, runs)
def test_text_order_is_run_order(a: ExpRun, b: ExpRun) -> None:
    # Partition keys sort as text; fixed-width text keeps that the experiment-then-run order.
    assert (a < b) == (a.format() < b.format())


@given(st.text(max_size=20))
def test_parse_accepts_only_canonical_text(text: str) -> None:
    try:
        run = ExpRun.parse(text)
    except InvalidRunError:
        return
    assert run.format() == text


@pytest.mark.parametrize("text", ["e26.r12", "e0026_r00012", "", "e0026.r000123", " e0026.r00012", "E0026.R00012", "e0026.r00012\n", "e\u0661\u0662\u0663\u0664.r00012"])
def test_parse_refuses_other_spellings(text: str) -> None:
    with pytest.raises(InvalidRunError, match="is not a run like e0026.r00012"):
        ExpRun.parse(text)


@pytest.mark.parametrize(
    ("exp", "run", "reason"),
    [(-1, 0, ">= 0"), (26, -1, ">= 0"), (EXP_MAX + 1, 0, "above 9999"), (26, RUN_MAX + 1, "above 99999"), (26, 1.0, "not an integer"), (True, 1, "not an integer")],
)
def test_refuses_numbers_no_file_name_can_carry(exp: object, run: object, reason: str) -> None:
    with pytest.raises(InvalidRunError, match=reason):
        ExpRun(exp, run)  # type: ignore[arg-type]


def test_the_runs_and_conditions_domains_use_the_same_type() -> None:
    assert iov.ExpRun is ExpRun
    assert naming.skim_file_path.__annotations__["key"] in ("ExpRun", ExpRun)
    assert issubclass(InvalidRunError, ValueError)
