"""Small-number suppression of the shared outcome tables (``pipeline.sharing``).

The attacker tests play the reader of ``tests.attacker``: every margin, every repeated
cell, the meaning of the labels, linear programming with whole-number rounding. On the
600-patient demo (default seed) the tables of ``main`` before this layer let it recover 300
of 362 hidden counts (and 334 of 343 small complements ``n - events``); now none.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, example, given, settings

from pipeline import config, io
from pipeline.cli import BENCHMARK_EXAMPLE
from pipeline.demo import generate as demo
from pipeline.ingest import validate
from pipeline.runner import stages
from pipeline.sharing import suppression
from pipeline.sharing.publish import SharingOptions
from pipeline.sharing.suppression import CountTable, margin_relations, protect_tables
from tests.attacker import attack
from tests.study_shapes import StudyShape, currently_valid, study_shapes, write_study

GRID = CountTable("n", "events", ("rate",), margins=("condition", "format"))


def _grid(n: list[int], events: list[int]) -> pd.DataFrame:
    """Conditions a, b, all x formats i, g, all (row-major), a 2 x 2 grid with margins."""
    conditions = [c for c in ("a", "b", "all") for _ in range(3)]
    formats = ["i", "g", "all"] * 3
    frame = pd.DataFrame({"condition": conditions, "format": formats, "n": n,
                          "events": events})
    return frame.assign(rate=frame["events"] / frame["n"])


def test_margin_relations_of_a_two_by_two_grid_by_hand() -> None:
    grid = _grid([1] * 9, [0] * 9)
    found = {(tuple(r.members.tolist()), r.total)
             for r in margin_relations(grid, (), ("condition", "format"))}
    # each column of conditions sums to its "all" row; each row of formats to its "all"
    assert found == {((0, 3), 6), ((1, 4), 7), ((2, 5), 8),
                     ((0, 1), 2), ((3, 4), 5), ((6, 7), 8)}


def test_margin_relations_per_slice_of_the_keys() -> None:
    grid = _grid([1] * 9, [0] * 9)
    two = pd.concat([grid.assign(outcome="x"), grid.assign(outcome="y")], ignore_index=True)
    relations = margin_relations(two, ("outcome",), ("condition", "format"))
    assert len(relations) == 12
    assert all((r.members >= 9).all() == (r.total >= 9) for r in relations)


def test_one_small_cell_takes_a_rectangle_of_four() -> None:
    #          i   g  all
    n = [3, 20, 23,     # a
         30, 40, 70,    # b
         33, 60, 93]    # all
    shared, summary = protect_tables({"t": _grid(n, [0] * 9)}, {"t": GRID}, high=4)
    table = shared["t"]
    assert table["n"].tolist() == ["<5", "*", 23, "*", "*", 70, 33, 60, 93]
    assert (summary.primary, summary.secondary, summary.pinned) == (1, 3, 0)
    assert table["rate"].isna().tolist() == [True, True, False, True, True] + [False] * 4
    assert table["suppressed"].tolist() == table["rate"].isna().tolist()


def test_a_small_complement_hides_the_events() -> None:
    # b x i: 10 patients, 8 events: the 2 without the event must not show
    n = [20, 20, 40, 10, 30, 40, 30, 50, 80]
    events = [10, 10, 20, 8, 15, 23, 18, 25, 43]
    shared, _ = protect_tables({"t": _grid(n, events)}, {"t": GRID}, high=4)
    table = shared["t"]
    assert table.loc[3, "events"] == "*" and table.loc[3, "n"] == 10
    assert np.isnan(table.loc[3, "rate"])
    hidden = (table["events"] == "*").to_numpy()
    assert hidden.sum() >= 4  # and its partners in the margins


def test_equal_grids_in_two_slices_hide_the_same_cells() -> None:
    n = [3, 20, 23, 30, 40, 70, 33, 60, 93]
    first = _grid(n, [1, 5, 6, 10, 10, 20, 11, 15, 26]).assign(outcome="x")
    second = _grid(n, [2, 6, 8, 12, 12, 24, 14, 18, 32]).assign(outcome="y")
    both = pd.concat([first, second], ignore_index=True)
    spec = CountTable("n", "events", ("rate",), keys=("outcome",),
                      margins=("condition", "format"))
    shared, _ = protect_tables({"t": both}, {"t": spec}, high=4)
    table = shared["t"]
    assert table["n"].iloc[:9].tolist() == table["n"].iloc[9:].tolist()


def test_engine_is_the_audits() -> None:
    from pipeline.audit import review as audit

    assert audit.audit_column is suppression.audit_column
    assert audit.Relation is suppression.Relation


def _shared_tables(data: Path, out: Path) -> tuple[Path, Path]:
    """The outcomes stage's shared tables and, as the attacker's truth, the same without
    suppression, written as CSV."""
    names = ("patients", "sessions", "followups")
    present = tuple(n for n in names if any(data.glob(f"{n}.*")))
    result = validate.run(io.read_study(data, present, ("patients", "sessions")))
    study = config.from_mapping(None)
    tables = result.tables
    patient_outcomes = stages.derive_outcomes(tables, study)
    benchmarks = io.read_table(BENCHMARK_EXAMPLE, "benchmarks").frame
    folders = []
    for sub, no_suppress in (("shared", False), ("truth", True)):
        output = stages.run_outcomes(tables, patient_outcomes, study, benchmarks,
                                     SharingOptions(no_suppress=no_suppress))
        folder = out / sub
        folder.mkdir(parents=True)
        for name, table in output.tables.items():
            table.to_csv(folder / f"{name}.csv", index=False)
        folders.append(folder)
    return folders[0], folders[1]


@pytest.fixture(scope="module")
def demo_600(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("demo600")
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=600))
    io.write_study({"patients": cohort.patients, "sessions": cohort.sessions,
                    "followups": cohort.followups}, folder / "data")
    return _shared_tables(folder / "data", folder)


def test_attacker_recovers_no_hidden_count_of_the_600_patient_demo(
        demo_600: tuple[Path, Path]) -> None:
    shared, truth = demo_600
    result = attack(shared, truth)
    assert result.small > 300  # the demo has many small counts to protect
    assert result.small_recovered == 0, result.recovered_cells
    assert result.complements_recovered == 0, result.recovered_cells


def test_without_suppression_the_attacker_reads_everything(
        demo_600: tuple[Path, Path]) -> None:
    _shared, truth = demo_600
    assert attack(truth, truth).hidden == 0


@pytest.mark.parametrize("shape", [
    StudyShape(n_patients=30, formats=("individual", "group"),
               conditions=("major_depression", "anxiety", "bipolar"), endings="mixed",
               seed=3),
    StudyShape(n_patients=12, formats=("individual", "group"), missed_sessions=True,
               conditions=("major_depression", "dysthymia"), improvement="mixed", seed=7),
], ids=["30_patients_three_conditions", "12_patients_two_conditions"])
def test_attacker_recovers_no_hidden_count_of_small_studies(shape: StudyShape,
                                                            tmp_path: Path) -> None:
    write_study(shape, tmp_path / "data")
    shared, truth = _shared_tables(tmp_path / "data", tmp_path)
    result = attack(shared, truth)
    assert result.small > 0
    assert result.small_recovered == 0, result.recovered_cells
    assert result.complements_recovered == 0, result.recovered_cells


def test_a_count_whose_largest_value_is_unbounded_is_protected_not_a_crash(
        tmp_path: Path) -> None:
    """Regression: on this 400-patient demo a hidden count's largest consistent value is
    unbounded; the check took it for -inf and crashed (OverflowError), failing the whole
    outcomes stage. An open end now means the count is not pinned."""
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=400, seed=7, expected_rates_n=0))
    io.write_study({"patients": cohort.patients, "sessions": cohort.sessions,
                    "followups": cohort.followups}, tmp_path / "data")
    shared, truth = _shared_tables(tmp_path / "data", tmp_path)
    result = attack(shared, truth)
    assert result.small > 0
    assert result.small_recovered == 0, result.recovered_cells
    assert result.complements_recovered == 0, result.recovered_cells


def test_an_open_end_is_not_pinned() -> None:
    """A hidden small count that is also latent (unseen: any value >= 0) in a relation
    whose total and other member are hidden and latent too: its largest consistent value
    is unbounded, so it is not pinned, and nothing crashes."""
    values = np.array([7.0, 3.0, 4.0])  # total = a + b
    hidden = np.array([True, True, True])
    primary = np.array([False, True, False])
    latent = np.array([True, True, True])
    relations = [suppression.Relation(members=np.array([1, 2]), total=0)]
    mask, left = suppression.audit_column(values, hidden, primary, relations, 4, latent)
    assert left == 0
    assert mask.tolist() == hidden.tolist()


def test_a_linear_program_that_stops_short_counts_as_pinned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds of a hidden count come from an iterative solver (HiGHS): when it stops
    without a solution (status 1, iteration limit), the count is taken as pinned, so more
    is hidden and the count is reported as left pinned; never taken as safe."""
    from types import SimpleNamespace

    from pipeline.sharing import cell_suppression

    values = np.array([20.0, 3.0, 17.0])  # total = a + b, a small, both hidden
    hidden = np.array([False, True, True])
    primary = np.array([False, True, False])
    relations = [suppression.Relation(members=np.array([1, 2]), total=0)]
    mask, left = suppression.audit_column(values, hidden, primary, relations, 4)
    assert mask.tolist() == hidden.tolist() and left == 0
    monkeypatch.setattr(cell_suppression.optimize, "linprog",
                        lambda *args, **kwargs: SimpleNamespace(status=1, fun=0.0))
    mask, left = suppression.audit_column(values, hidden, primary, relations, 4)
    assert mask.tolist() == [True, True, True] and left == 1


def test_counts_the_labels_alone_pin_are_withheld() -> None:
    """A "<5" total of four "<5" members: the labels alone make every member 1 (and the
    total 4), so hiding cannot protect them; they are withheld (published blank, any count
    >= 0), where every solution scales and none is pinned."""
    values = np.array([4.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # the last member shown: zero
    hidden = np.array([True, True, True, True, True, False])
    relations = [suppression.Relation(members=np.array([1, 2, 3, 4, 5]), total=0)]
    assert suppression.audit_column(values, hidden, hidden, relations, 4)[1] == 5
    mask, withheld, left = suppression.withhold_column(values, hidden, hidden, relations, 4)
    assert left == 0
    assert withheld.tolist() == [True] * 5 + [False] and mask.tolist() == hidden.tolist()
    safe = np.array([20.0, 3.0, 17.0])  # a hidden pair under a shown total: nothing withheld
    pair = [suppression.Relation(members=np.array([1, 2]), total=0)]
    _mask, withheld, left = suppression.withhold_column(
        safe, np.array([False, True, True]), np.array([False, True, False]), pair, 4)
    assert not withheld.any() and left == 0


#: Found by hypothesis in CI: five patients, sparse assessments, two formats and
#: conditions; the labels alone pinned 17 small counts (36 recovered by the attacker).
LABELS_PIN = StudyShape(
    n_patients=5, instruments=("phq9", "gad7"), formats=("individual", "group"),
    therapists="recorded", group_ids_missing=False, followups="after", schedule="sparse",
    n_sessions=1, sparse_numbered_by_week=False, scoring="full", missed_sessions=False,
    endings="mixed", conditions=("major_depression", "dysthymia"), n_sites=1,
    maintenance=False, arms=0, improvement="mixed", relapses=True, seed=0)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=study_shapes())
@example(shape=LABELS_PIN)
def test_attacker_recovers_no_hidden_count_of_generated_studies(shape: StudyShape) -> None:
    assume(currently_valid(shape))
    with tempfile.TemporaryDirectory() as tmp:
        write_study(shape, Path(tmp) / "data")
        shared, truth = _shared_tables(Path(tmp) / "data", Path(tmp))
        result = attack(shared, truth)
    assert result.small_recovered == 0, (shape, result.recovered_cells)
    assert result.complements_recovered == 0, (shape, result.recovered_cells)
