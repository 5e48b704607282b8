"""False-alarm rate and jump detection of ``change_vs_previous`` at the shipped limits.

One command: ``python bench/study_false_alarms.py [--buckets 2000] [--runs-per-bucket 20]``.

1. A real bucket (``--calibrated-runs`` runs of ``--events`` events, realistic generator) is
   calibrated once with every calibration, which gives each payload channel's measured
   uncertainty (their honesty is what the pull tests check).
2. For many clean buckets (consecutive runs of the generator's truth: slow drifts, the natural
   small orbit steps, eCMS wander; seeds vary), payloads are drawn as truth + N(0, measured
   error) per run (BeamSpot, CollisionEnergy) or per bucket (ECLCrystalEnergy, CDCTimeZero,
   whose truth is fixed per experiment), and ``check_change_vs_previous`` runs with the limits
   each calibration declares, comparing each IoV with the one before (the first with the
   previous bucket's last payload, as the running tag would).
3. The same buckets with the ``beam-spot-jump`` fault at a random run: detection efficiency.

Prints the fraction of clean buckets blocked per calibration (goal < 1 %) and the fraction of
jumps caught (goal 100 %).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from study_realism import calibrate_bucket  # noqa: E402

from b2cal_assets.conditions.iov import IoV  # noqa: E402
from b2cal_assets.conditions.payloads import PayloadConstants  # noqa: E402
from b2cal_assets.runs.generator import FaultSpec, generate, run_truth  # noqa: E402
from b2cal_assets.validation.rules import CalibrationInputs, PayloadRecord, PreviousPayload, check_change_vs_previous  # noqa: E402
from b2cal_assets.validation.settings import validation_settings_for  # noqa: E402

_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def measured_errors(runs: int, events: int) -> dict[str, PayloadConstants]:
    """One calibrated payload per calibration (its errors and status are what the toys use)."""
    # Small-bucket thresholds (the templates' errors are what matter, not their precision).
    config = {
        "ECLCrystalEnergy": {"min_hits_per_crystal": 3, "max_fraction_low_crystals": 0.5},
        "CDCTimeZero": {"min_hits_per_wire": 100},
    }
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), runs=runs, events_per_run=events, seed=11)
        outcomes = calibrate_bucket(Path(tmp), None, config)
    return {name: outcome.payloads()[-1].constants for name, outcome in outcomes.items()}


def _blocked(name: str, payloads: list[PayloadConstants]) -> tuple[bool, int]:
    """(blocked, first IoV index at fault) for consecutive payloads of one calibration."""
    settings = validation_settings_for(name)
    records = []
    for i in range(1, len(payloads)):
        previous = PreviousPayload(name, i, "toy", IoV(26, i, 26, i), payloads[i - 1])
        records.append(PayloadRecord(name, i + 1, IoV(26, i + 1, 26, i + 1), (f"r{i + 1}",), payloads[i], previous))
    for index, record in enumerate(records):
        inputs = CalibrationInputs(name, "toy", "1", IoV(26, 1, -1, -1), (name,), (record,))
        if not check_change_vs_previous(inputs, settings).passed:
            return True, index + 1
    return False, -1


@functools.cache
def _run_truth(seed: int, run: int, jump_run: int = -1):  # type: ignore[no-untyped-def]
    faults = [FaultSpec("beam-spot-jump", jump_run, jump_run)] if jump_run >= 0 else []
    return run_truth(seed, 26, run, faults)


def beam_spot_truth(seed: int, runs: range, faults: list[FaultSpec]) -> list[np.ndarray]:
    values = []
    for run in runs:
        truth = _run_truth(seed, run, faults[0].first_run if faults else -1)
        values.append(np.concatenate([truth.beam_spot_cm, [truth.beam_spot_cov_cm2[i, j] for i, j in _UPPER]]))
    return values


def toy(template: PayloadConstants, truth: np.ndarray, rng: np.random.Generator) -> PayloadConstants:
    value = truth + rng.normal(0.0, 1.0, truth.shape) * np.nan_to_num(template.error)
    return PayloadConstants(value, template.error.copy(), status=template.status.copy(), attributes=template.attributes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buckets", type=int, default=2000)
    parser.add_argument("--runs-per-bucket", type=int, default=20)
    parser.add_argument("--calibrated-runs", type=int, default=4)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    templates = measured_errors(args.calibrated_runs, args.events)
    print(f"measured uncertainties from a calibrated {args.calibrated_runs}-run bucket in {time.perf_counter() - start:.0f} s")
    rng = np.random.default_rng(2026)
    blocked = {name: 0 for name in templates}
    caught = 0
    named_right = 0
    n = args.runs_per_bucket
    for bucket in range(args.buckets):
        if bucket and bucket % 100 == 0:
            print(f"  {bucket} buckets: blocked {blocked}, jumps caught {caught}", flush=True)
        seed = 1000 + bucket // 50  # a new truth trajectory every 50 buckets
        first = 1 + (bucket % 50) * n
        runs = range(first - 1, first + n)  # the run before the bucket: the running tag's payload
        # BeamSpot: per run.
        truth = beam_spot_truth(seed, runs, [])
        blocked["BeamSpot"] += _blocked("BeamSpot", [toy(templates["BeamSpot"], t, rng) for t in truth])[0]
        jump_run = first + int(rng.integers(1, n))
        jumped = beam_spot_truth(seed, runs, [FaultSpec("beam-spot-jump", jump_run, jump_run)])
        hit, index = _blocked("BeamSpot", [toy(templates["BeamSpot"], t, rng) for t in jumped])
        caught += hit
        named_right += hit and runs[index] == jump_run
        # CollisionEnergy: per run (eCMS truth; the spread is the model's constant).
        ecms_template = templates["CollisionEnergy"]
        ecms_truth = [np.array([_run_truth(seed, run).ecms_gev, ecms_template.value[1]]) for run in runs]
        blocked["CollisionEnergy"] += _blocked("CollisionEnergy", [toy(ecms_template, t, rng) for t in ecms_truth])[0]
        # Per-bucket payloads: the previous bucket's and this one's, same truth.
        for name in ("ECLCrystalEnergy", "CDCTimeZero"):
            template = templates[name]
            fixed = np.nan_to_num(template.value)
            blocked[name] += _blocked(name, [toy(template, fixed, rng), toy(template, fixed, rng)])[0]
    print(f"{args.buckets} clean buckets of {n} runs (plus the run before), limits as each calibration declares them:")
    for name, count in blocked.items():
        print(f"  {name:18s} blocked by change_vs_previous: {count / args.buckets:.2%} ({count})")
    print(f"beam-spot-jump (50 um x, 2 um y, 500 um z) caught in {caught / args.buckets:.2%} of buckets, at the jump's run in {named_right / max(caught, 1):.2%}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
