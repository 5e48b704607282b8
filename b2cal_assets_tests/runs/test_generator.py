import json

import numpy as np
import pytest
import uproot

from b2cal_assets import detector
from b2cal_assets.detector import elastic_lab_energy
from b2cal_assets.runs.generator import (
    DEAD_CRYSTALS,
    EXPECTED_BRANCHES,
    HOT_WIRES,
    GeneratorError,
    adler32_of,
    generate,
    parse_fault,
)
from b2cal_assets.runs.naming import STREAMS
from b2cal_assets.runs.records import read_record


def _records(root):
    return sorted(root.glob("e0026/4S/r*/runinfo.*.json"))


def test_generator_writes_real_layout_with_several_files_per_run(generated_root):
    files = sorted(p.relative_to(generated_root).as_posix() for p in generated_root.rglob("*.root"))
    assert "e0026/4S/r00001/skim/hlt_mumu_2trk/cdst/sub00/cdst.physics.0026.00001.HLT1.f00000.root" in files
    assert {f.split("/")[4] for f in files} == set(STREAMS)
    per_run = [f for f in files if f.startswith("e0026/4S/r00002/")]
    assert len(per_run) >= 6


def test_every_file_opens_in_uproot_and_matches_its_record(generated_root):
    records = _records(generated_root)
    assert len(records) == 3
    for record_file in records:
        record = read_record(record_file)
        assert record.run_type == "physics" and record.integrated_luminosity_pb > 0
        for recorded in record.files:
            path = generated_root / recorded.path
            assert path.stat().st_size == recorded.size
            assert adler32_of(path) == recorded.adler32
            tree = uproot.open(path)["tree"]
            assert tree.num_entries == recorded.events
            assert set(EXPECTED_BRANCHES) <= set(tree.keys())
            assert tree.classname == "TTree"


def test_ids_are_in_detector_ranges_and_hits_carry_layers(generated_root):
    path = next(generated_root.glob("e0026/4S/r*/skim/hlt_hadron/cdst/sub00/*.root"))
    arrays = uproot.open(path)["tree"].arrays(["ecl_cell", "cdc_wire", "cdc_layer", "exp", "run"], library="np")
    cells = np.concatenate(arrays["ecl_cell"])
    wires = np.concatenate(arrays["cdc_wire"])
    assert cells.min() >= 0 and cells.max() < detector.ECL_N_CRYSTALS
    assert wires.min() >= 0 and wires.max() < detector.CDC_N_WIRES
    np.testing.assert_array_equal(np.concatenate(arrays["cdc_layer"]), detector.cdc_layer_of_wire(wires))
    assert set(arrays["exp"]) == {26}


def test_truth_is_written_beside_the_data(generated_root):
    truth = generated_root / "truth" / "e0026"
    gains = np.loadtxt(truth / "ecl_crystals.csv", delimiter=",", skiprows=1)
    t0 = np.loadtxt(truth / "cdc_wires.csv", delimiter=",", skiprows=1)
    assert gains.shape == (8736, 5) and t0.shape == (14336, 3)
    runs = json.loads((truth / "runs.json").read_text())
    assert sorted(runs) == ["1", "2", "3"]
    assert np.array(runs["1"]["beam_spot_cov_cm2"]).shape == (3, 3)


def test_dimuon_mass_and_vertices_follow_the_truth(generated_root):
    truth = json.loads((generated_root / "truth" / "e0026" / "runs.json").read_text())["2"]
    paths = {str(p): "tree" for p in generated_root.glob("e0026/4S/r00002/skim/hlt_mumu_2trk/cdst/sub00/*.root")}
    events = uproot.concatenate(paths, ["trk_p", "trk_phi0", "trk_tanlambda", "vtx_x", "vtx_z"], library="np")
    assert abs(np.median(events["vtx_x"]) - truth["beam_spot_cm"][0]) < 5e-4
    assert abs(np.median(events["vtx_z"]) - truth["beam_spot_cm"][2]) < 5e-3
    p = np.stack(events["trk_p"])
    pt = p / np.sqrt(1 + np.stack(events["trk_tanlambda"]) ** 2)
    phi = np.stack(events["trk_phi0"])
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.stack(events["trk_tanlambda"])
    energy = np.sqrt(p**2 + 0.10566**2)
    mass = np.sqrt(energy.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2)
    # Power-law ISR + FSR: the peak sits at eCMS, half the events lost more than ~20 MeV.
    counts, edges = np.histogram(mass, bins=np.arange(10.30, 10.80, 0.01))
    assert abs(edges[np.argmax(counts)] + 0.005 - truth["ecms_gev"]) < 0.03
    assert 0.0 < truth["ecms_gev"] - np.median(mass) < 0.06


def test_bhabha_energy_ratio_measures_the_crystal_gain(generated_root):
    # With the 83 mrad crossing kinematics the ratio E / (E_expected * gain) is the contained
    # fraction: 0.75-0.85 (leakage into the neighbours), the same at +x and -x (no cos phi term).
    gains = np.loadtxt(generated_root / "truth" / "e0026" / "ecl_crystals.csv", delimiter=",", skiprows=1)[:, 3]
    paths = {str(p): "tree" for p in generated_root.glob("e0026/4S/r*/skim/hlt_bhabha/cdst/sub00/*.root")}
    events = uproot.concatenate(paths, ["ecl_cell", "ecl_energy", "ecl_theta", "ecl_phi"], library="np")
    cell, energy, theta, phi = (np.concatenate(events[k]) for k in ("ecl_cell", "ecl_energy", "ecl_theta", "ecl_phi"))
    ratio = energy / elastic_lab_energy(theta, phi) / gains[cell]
    main = (ratio > 0.5) & (ratio < 1.2) & (np.abs(np.cos(theta)) < 0.6)  # the hit crystal, barrel
    assert 0.75 < np.mean(ratio[main]) < 0.85
    plus, minus = main & (np.cos(phi) > 0.5), main & (np.cos(phi) < -0.5)
    assert abs(np.mean(ratio[plus]) - np.mean(ratio[minus])) < 0.005
    assert np.mean((ratio > 0.01) & (ratio < 0.3)) > 0.3  # leakage hits in the neighbours


def test_same_seed_gives_identical_events(tmp_path):
    # ROOT files carry creation times and UUIDs, so compare contents, not bytes.
    generate(tmp_path / "a", runs=1, events_per_run=200, seed=5)
    generate(tmp_path / "b", runs=1, events_per_run=200, seed=5)
    files_a = sorted((tmp_path / "a").rglob("*.root"))
    files_b = sorted((tmp_path / "b").rglob("*.root"))
    assert len(files_a) == len(files_b) == 3
    for path_a, path_b in zip(files_a, files_b):
        a = uproot.open(path_a)["tree"].arrays(["trk_p", "ecl_energy", "cdc_time"], library="np")
        b = uproot.open(path_b)["tree"].arrays(["trk_p", "ecl_energy", "cdc_time"], library="np")
        for name in a:
            np.testing.assert_array_equal(np.concatenate(a[name]), np.concatenate(b[name]))


def test_journal_line_is_appended_after_the_record(generated_root):
    lines = next((generated_root / "_journal").iterdir()).read_text().splitlines()
    assert [line.split(" ")[1] for line in lines] == [p.relative_to(generated_root).as_posix() for p in _records(generated_root)]


@pytest.mark.parametrize(
    "fault,check",
    [
        ("corrupt-file", lambda rec, path: path.stat().st_size == rec.size and adler32_of(path) != rec.adler32),
        ("truncated-file", lambda rec, path: path.stat().st_size < rec.size),
        ("missing-file", lambda rec, path: not path.exists()),
    ],
)
def test_file_faults_damage_one_file_after_it_was_recorded(tmp_path, fault, check):
    generate(tmp_path, runs=3, events_per_run=300, faults=[fault])
    damaged = read_record(tmp_path / "e0026/4S/r00002/runinfo.0026.00002.json")
    assert check(damaged.files[-1], tmp_path / damaged.files[-1].path)
    intact = read_record(tmp_path / "e0026/4S/r00001/runinfo.0026.00001.json")
    assert all(adler32_of(tmp_path / f.path) == f.adler32 for f in intact.files)


def test_low_statistics_run_is_short_in_events_and_luminosity(tmp_path):
    generate(tmp_path, runs=3, events_per_run=2000, faults=["low-statistics:2"])
    normal = read_record(tmp_path / "e0026/4S/r00001/runinfo.0026.00001.json")
    short = read_record(tmp_path / "e0026/4S/r00002/runinfo.0026.00002.json")
    assert sum(f.events for f in short.files) < 0.1 * sum(f.events for f in normal.files)
    assert short.integrated_luminosity_pb < 0.1 * normal.integrated_luminosity_pb


def test_dead_crystals_never_fire_and_hot_wires_fire_often(tmp_path):
    generate(tmp_path, runs=1, events_per_run=3000, faults=["dead-crystals", "hot-wires"])
    paths = {str(p): "tree" for p in tmp_path.rglob("*.root")}
    events = uproot.concatenate(paths, ["ecl_cell", "cdc_wire"], library="np")
    cells = np.concatenate(events["ecl_cell"])
    wires = np.concatenate(events["cdc_wire"])
    assert not np.isin(cells, DEAD_CRYSTALS).any()
    counts = np.bincount(wires, minlength=14336)
    assert counts[HOT_WIRES].min() > 20 * np.median(counts)
    faults = json.loads((tmp_path / "truth/e0026/faults.json").read_text())
    assert {f["name"] for f in faults} == {"dead-crystals", "hot-wires"}


def test_beam_spot_jump_moves_the_truth_at_the_chosen_run(tmp_path):
    generate(tmp_path, runs=4, events_per_run=100, faults=["beam-spot-jump:3"])
    runs = json.loads((tmp_path / "truth/e0026/runs.json").read_text())
    step = np.array(runs["3"]["beam_spot_cm"]) - np.array(runs["2"]["beam_spot_cm"])
    assert step[0] > 0.004 and step[2] > 0.03


def test_fault_specs_are_parsed_and_bad_ones_rejected():
    assert parse_fault("corrupt-file", 10, 5).first_run == 12
    assert parse_fault("hot-wires", 10, 5).last_run == 14
    assert (parse_fault("dead-crystals:3-7", 1, 10).first_run, parse_fault("dead-crystals:3-7", 1, 10).last_run) == (3, 7)
    with pytest.raises(GeneratorError, match="unknown fault 'melted-magnet'"):
        parse_fault("melted-magnet", 1, 1)
    with pytest.raises(GeneratorError, match="before first run"):
        parse_fault("corrupt-file:9-3", 1, 10)
