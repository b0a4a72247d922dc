"""Tests for ``pipeline.trajectories`` (``models``, ``data``, ``specs``, ``fitting``,
``estimates``) and the models stage's figure (``pipeline.report.trajectory_plots``).

Hand-checkable frames for the long data and the phases; the demo cohort (2,000 patients,
seed 20261122) for the models, whose derived quantities are re-computed by hand from the
fixed effects; a simulated trial schedule (scores at weeks 0, 8, 13, 21 and 35) for a
researcher's own lme4 formula.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline import config
from pipeline.demo import generate as demo
from pipeline.estimability import AnalysisRecord
from pipeline.outcomes import definitions as outcomes
from pipeline.report import stage_figures, trajectory_plots
from pipeline.report.figures import png_bytes
from pipeline.runner import stages
from pipeline.runner.stages import StageOutput
from pipeline.sharing.publish import SharingOptions
from pipeline.trajectories import models as trajectories
from pipeline.trajectories import specs
from pipeline.trajectories.data import PHASES, add_phases, long_scores
from pipeline.trajectories.models import TrajectoryResult, model_data

DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2024-01-10")


def _patients(rows: list[dict[str, object]]) -> pd.DataFrame:
    base = {"therapist_id": "T1", "condition": "major_depression", "format": "individual",
            "group_id": None, "problem_area": "grief", "age": 40.0, "sex": "female",
            "start_date": START, "end_date": START + 90 * DAY, "end_reason": "completed"}
    return pd.DataFrame([{**base, **row} for row in rows])


def _weekly_sessions(patient: str, last: int, attended: set[int],
                     scores: dict[int, float]) -> list[dict[str, object]]:
    """Session k on day 7(k - 1) from the start (session 0 a week before)."""
    return [{"patient_id": patient, "session_number": k,
             "session_date": START + 7 * (k - 1) * DAY,
             "attendance": "attended" if k in attended else "did_not_attend",
             "phq9": scores.get(k, np.nan) if k in attended else np.nan, "gad7": np.nan}
            for k in range(last + 1)]


@pytest.fixture
def small() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """P1 completes 12 weekly sessions; P2 drops out after session 5 (session 6 missed)."""
    patients = _patients([{"patient_id": "P1"},
                          {"patient_id": "P2", "end_reason": "dropped_out"}])
    sessions = pd.DataFrame(
        _weekly_sessions("P1", 12, set(range(13)) - {2}, {k: 15.0 - k for k in range(13)})
        + _weekly_sessions("P2", 6, set(range(6)), {k: 16.0 for k in range(6)}))
    sessions.loc[(sessions["patient_id"] == "P1") & (sessions["session_number"] == 4),
                 "phq9"] = np.nan  # attended, not scored
    po = pd.DataFrame({"patient_id": ["P1", "P2"], "dropout": [False, True],
                       "completers": [True, False], "finished_course": [True, True],
                       "started": [True, True], "ended": [True, True],
                       "phq9_baseline": [15.0, 16.0], "gad7_baseline": [np.nan, np.nan]})
    return patients, sessions, po


def test_long_scores_rows_and_times(small: tuple[pd.DataFrame, ...]) -> None:
    patients, sessions, po = small
    long = long_scores(patients, sessions, po, "phq9", "log_weeks")
    p1 = long.loc[long["patient_id"] == "P1"]
    assert list(p1["session_number"]) == [0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 12]  # no 2, 4
    assert list(p1["weeks"].iloc[:3]) == [-1.0, 0.0, 2.0]
    assert p1["log_weeks"].iloc[0] == 0.0 and p1["log_weeks"].iloc[2] == pytest.approx(np.log(3))
    assert (long["time"] == long["log_weeks"]).all()
    assert list(p1["is_baseline"].iloc[:2]) == [True, False]
    assert (long.groupby("patient_id")["is_baseline"].sum() == 1).all()
    assert set(long.loc[long["patient_id"] == "P2", "baseline_phq9"]) == {16.0}
    assert list(long.drop_duplicates("patient_id")["dropout"]) == [False, True]
    assert (long["score"] == long["phq9"]).all()
    assert {"therapist_id", "condition", "age", "baseline_gad7"} <= set(long.columns)


def _long_by_merge(patients: pd.DataFrame, sessions: pd.DataFrame, po: pd.DataFrame
                   ) -> pd.DataFrame:
    """The long data by the textbook route (merge, sort, map): what long_scores must equal."""
    scored = sessions.loc[(sessions["attendance"] == "attended") & sessions["phq9"].notna()]
    long = scored.drop(columns=["attendance"]).merge(patients, on="patient_id", how="inner")
    long = long.sort_values(["patient_id", "session_number"], kind="stable")
    return long.reset_index(drop=True)


def test_long_scores_joins_like_a_merge_on_awkward_rows(
        small: tuple[pd.DataFrame, ...]) -> None:
    """Shuffled rows, a session of an unknown patient, a missing id and a column both tables
    have: the same rows, order and columns as merge + sort (suffixes included)."""
    patients, sessions, po = small
    sessions = sessions.sample(frac=1.0, random_state=4).reset_index(drop=True)
    extra = pd.DataFrame([{**sessions.iloc[0].to_dict(), "patient_id": "P9", "phq9": 3.0,
                           "attendance": "attended"},
                          {**sessions.iloc[1].to_dict(), "patient_id": np.nan, "phq9": 4.0,
                           "attendance": "attended"}])
    sessions = pd.concat([sessions, extra], ignore_index=True).assign(note="s")
    patients = patients.assign(note="p")
    long = long_scores(patients, sessions, po, "phq9")
    expected = _long_by_merge(patients, sessions, po)
    assert list(long.columns[: len(expected.columns)]) == list(expected.columns)
    assert {"note_x", "note_y"} <= set(long.columns)
    pd.testing.assert_frame_equal(long[expected.columns], expected, check_dtype=False)
    assert set(long["patient_id"]) == {"P1", "P2"}


def test_long_scores_rejects_bad_arguments(small: tuple[pd.DataFrame, ...]) -> None:
    patients, sessions, po = small
    with pytest.raises(ValueError, match="time must be one of"):
        long_scores(patients, sessions, po, "phq9", "months")
    # an instrument without a column in the sessions has no scores (the contract adds only
    # the score columns a study has)
    assert long_scores(patients, sessions.drop(columns="bdi2", errors="ignore"), po,
                       "bdi2").empty


@pytest.mark.parametrize(("time", "p1_knots", "p2_knots"), [
    ("weeks", (2.0, 8.0), (2.0, 12.0)),           # P2: session 13 extrapolated from 6
    ("session_number", (3.0, 9.0), (3.0, 13.0)),
])
def test_phases(small: tuple[pd.DataFrame, ...], time: str, p1_knots: tuple[float, float],
                p2_knots: tuple[float, float]) -> None:
    """Completer P1: F = 12, knots at sessions 3 and 9. Dropout P2: F = max(6, 14 + 2) = 16,
    knots at sessions 3 and 13 (the ending phase is never reached)."""
    patients, sessions, po = small
    cfg = config.from_mapping({"trajectories": {"time": time}})
    frame = add_phases(long_scores(patients, sessions, po, "phq9", time), sessions, patients,
                       po, cfg)
    for patient, (t1, t2) in (("P1", p1_knots), ("P2", p2_knots)):
        rows = frame.loc[frame["patient_id"] == patient]
        t = rows[time].to_numpy()
        np.testing.assert_allclose(rows["phase_initial"], np.minimum(t, t1))
        np.testing.assert_allclose(rows["phase_middle"], np.clip(t - t1, 0, t2 - t1))
        np.testing.assert_allclose(rows["phase_final"], np.maximum(t - t2, 0))
    last = frame.loc[frame["patient_id"] == "P1"].iloc[-1]
    assert last[list(PHASES)].sum() == pytest.approx(last[time])


def test_model_data_codes_factors_and_centres_covariates() -> None:
    rows = []
    conditions = ["anxiety"] * 30 + ["bipolar"] * 3 + ["other"] * 2 + ["major_depression"] * 25
    for i, condition in enumerate(conditions):
        for week in (0.0, 1.0):
            rows.append({"patient_id": f"P{i:02d}", "condition": condition,
                         "format": "group" if i % 2 else "individual",
                         "problem_area": "grief", "age": float(20 + i),
                         "sex": None if i == 0 else ("male" if i % 3 else "female"),
                         "weeks": week, "dropout": i < 10})
    frame, terms, notes = model_data(pd.DataFrame(rows))
    assert list(frame["format"].cat.categories) == ["individual", "group"]
    # bipolar (3) and other (2) are rare (< 10 patients): pooled, and the pooled level
    # (5 patients) is still rare, so it is merged into the reference (one pooling rule,
    # pipeline.modelling.pooling); sex not recorded (1 patient) likewise joins female.
    assert list(frame["condition"].cat.categories) == ["major_depression", "anxiety"]
    assert any("pooled" in n and "bipolar, other" in n for n in notes)
    assert any("merged into reference major_depression" in n for n in notes)
    assert (frame["condition"] == "major_depression").sum() == 2 * 30
    first = frame.drop_duplicates("patient_id")
    assert first["age_centred"].mean() == pytest.approx(0.0)
    assert terms == ["age_centred", "`sex[male]`"]
    assert any(n.startswith("sex:") and "merged into reference female" in n for n in notes)
    assert first["sex[male]"].mean() == pytest.approx(0.0)
    assert list(frame["pattern"].cat.categories) == ["retained", "dropout"]
    assert frame["is_group"].sum() == 60


def test_random_structure_needs_clusters() -> None:
    frame = pd.DataFrame({"patient_id": ["A", "B"], "is_group": [True, True],
                          "group_id": ["G1", "G1"], "therapist_id": ["T1", None]})
    components, notes = specs.random_structure(frame, "weeks")
    assert components == ()
    assert any("therapy-group variance left out" in n for n in notes)
    assert any("therapist variance left out" in n for n in notes)
    assert not any("without a group_id" in n for n in notes)


def test_random_structure_notes_group_patients_without_group_id() -> None:
    """C (group format, no group_id; two rows) is one patient without a group effect."""
    frame = pd.DataFrame({"patient_id": ["A", "B", "C", "C"], "is_group": [True] * 4,
                          "group_id": ["G1", "G1", None, None], "therapist_id": "T1"})
    _, notes = specs.random_structure(frame, "weeks")
    assert any(n.startswith("1 group-format patient without a group_id: no "
                            "therapy-group random effect") for n in notes)


# --------------------------------------------------------------------------- demo cohort


@pytest.fixture(scope="module")
def demo_data() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=2000, seed=20261122,
                                                  expected_rates_n=0))
    po = outcomes.derive(cohort.patients, cohort.sessions, config.from_mapping(None))
    return cohort.patients, cohort.sessions, po


@pytest.fixture(scope="module")
def result(demo_data: tuple[pd.DataFrame, ...]) -> TrajectoryResult:
    patients, sessions, po = demo_data
    return trajectories.analyse(patients, sessions, po, config.from_mapping(None))


def _coef(result: TrajectoryResult, model: str) -> pd.Series:
    return result.tables[f"mixed_{model}_fixed"].set_index("term")["estimate"]


def test_tables_present(result: TrajectoryResult) -> None:
    per_model = {f"mixed_{m}_{kind}" for m in ("growth", "phases", "problem_area", "completers",
                                                "pattern_mixture")
                 for kind in ("fixed", "variance", "diagnostics")}
    shared = {"mixed_trajectories", "mixed_slopes", "mixed_format_difference",
              "mixed_phase_slopes", "mixed_patient_fitted", "mixed_observed_means",
              "mixed_model_comparison"}
    assert set(result.tables) == per_model | shared
    diagnostics = result.tables["mixed_growth_diagnostics"].iloc[0]
    assert diagnostics["engine"] == "mixedlm" and diagnostics["converged"]
    assert "(1 + weeks | patient_id)" in diagnostics["formula"]
    assert "(0 + is_group | group_id)" in diagnostics["formula"]


def test_growth_recovers_the_format_slope_difference(result: TrajectoryResult) -> None:
    """Truth (demo generator): group slope - individual slope = -0.45 - (-0.55) = 0.10."""
    fixed = result.tables["mixed_growth_fixed"].set_index("term")
    row = fixed.loc["weeks:format[group]"]
    assert abs(row["estimate"] - 0.10) < 3 * row["std_error"]
    variance = result.tables["mixed_growth_variance"].set_index(["level", "term"])["sd"]
    assert variance[("patient_id", "(Intercept)")] == pytest.approx(4.0, rel=0.1)
    assert variance[("group_id", "(Intercept)")] == pytest.approx(1.0, rel=0.3)
    assert variance[("Residual", "")] == pytest.approx(2.0, rel=0.05)


def test_trajectories_at_time_zero_are_the_intercepts(result: TrajectoryResult) -> None:
    table = result.tables["mixed_trajectories"]
    coef = _coef(result, "growth")
    growth = table.loc[table["model"] == "growth"].set_index(["condition", "format",
                                                              "time_point"])
    assert growth.loc[("major_depression", "individual", 0.0), "estimate"] == pytest.approx(
        coef["(Intercept)"])
    assert growth.loc[("anxiety", "group", 16.0), "estimate"] == pytest.approx(
        coef["(Intercept)"] + coef["condition[anxiety]"] + coef["format[group]"]
        + 16 * (coef["weeks"] + coef["weeks:condition[anxiety]"] + coef["weeks:format[group]"]))
    assert (table["ci_low"] < table["estimate"]).all()
    assert (table["estimate"] < table["ci_high"]).all()
    assert len(table) == 3 * 7 * 2 * 17  # growth, completers, pattern mixture


def test_format_difference_and_effect_size(result: TrajectoryResult,
                                           demo_data: tuple[pd.DataFrame, ...]) -> None:
    table = result.tables["mixed_format_difference"].set_index("model")
    coef = _coef(result, "growth")
    row = table.loc["growth"]
    assert row["estimate"] == pytest.approx(coef["format[group]"]
                                            + 16 * coef["weeks:format[group]"])
    patients_in_model = result.tables["mixed_patient_fitted"]["patient_id"].unique()
    po = demo_data[2].set_index("patient_id")
    assert row["baseline_sd"] == pytest.approx(po.loc[patients_in_model, "phq9_baseline"].std())
    assert row["effect_size"] == pytest.approx(row["estimate"] / row["baseline_sd"])
    assert row["effect_size_ci_low"] == pytest.approx(row["ci_low"] / row["baseline_sd"])
    assert set(table.index) == {"growth", "problem_area", "completers", "pattern_mixture"}


def test_slopes(result: TrajectoryResult) -> None:
    slopes = result.tables["mixed_slopes"].set_index(["model", "format"])
    fixed = result.tables["mixed_growth_fixed"].set_index("term")
    difference = slopes.loc[("growth", "group - individual")]
    assert difference["estimate"] == pytest.approx(fixed.loc["weeks:format[group]", "estimate"])
    assert difference["std_error"] == pytest.approx(fixed.loc["weeks:format[group]",
                                                              "std_error"])


def test_pattern_mixture_averages_patterns_within_format(
        result: TrajectoryResult, demo_data: tuple[pd.DataFrame, ...]) -> None:
    """Marginal slope = sum over patterns of the share within the format times the
    condition-averaged slope of that pattern (Hedeker and Gibbons 1997)."""
    coef = _coef(result, "pattern_mixture")
    fitted = result.tables["mixed_patient_fitted"].drop_duplicates("patient_id")
    po = demo_data[2].set_index("patient_id").loc[fitted["patient_id"]]
    condition_share = po["condition"].value_counts(normalize=True)
    base = coef["weeks"] + sum(share * coef.get(f"weeks:condition[{c}]", 0.0)
                               for c, share in condition_share.items())

    def slope(fmt: str) -> float:
        dropout_share = po.loc[po["format"] == fmt, "dropout"].mean()
        group = fmt == "group"
        retained = base + group * coef["weeks:format[group]"]
        dropout = retained + coef["weeks:pattern[dropout]"] + group * coef[
            "weeks:format[group]:pattern[dropout]"]
        return float((1 - dropout_share) * retained + dropout_share * dropout)

    slopes = result.tables["mixed_slopes"].set_index(["model", "format"])["estimate"]
    assert slopes[("pattern_mixture", "individual")] == pytest.approx(slope("individual"))
    assert slopes[("pattern_mixture", "group - individual")] == pytest.approx(
        slope("group") - slope("individual"))


def test_phase_slopes(result: TrajectoryResult) -> None:
    coef = _coef(result, "phases")
    table = result.tables["mixed_phase_slopes"].set_index(["phase", "format"])["estimate"]
    assert table[("phase_middle", "individual")] == pytest.approx(coef["phase_middle"])
    assert table[("phase_final", "group - individual")] == pytest.approx(
        coef["phase_final:format[group]"])


def test_patient_fitted_includes_random_effects(result: TrajectoryResult) -> None:
    fitted = result.tables["mixed_patient_fitted"]
    assert list(fitted.columns) == ["patient_id", "condition", "format", "session_number",
                                    "weeks", "time", "score", "fitted", "fitted_fixed",
                                    "residual"]
    assert len(fitted) == result.tables["mixed_growth_diagnostics"].at[0, "n_obs"]
    shift = (fitted["fitted"] - fitted["fitted_fixed"]).groupby(fitted["patient_id"]).mean()
    assert shift.std() > 1.0  # patient intercepts (SD 4 in the generator)
    np.testing.assert_allclose(fitted["residual"], fitted["score"] - fitted["fitted"])


def test_messages_report_boundary_fits(result: TrajectoryResult) -> None:
    """The demo has no therapist intercept variance: every model says so."""
    boundary = [m for m in result.messages if "boundary (singular) fit" in m]
    assert {m.split(":")[0] for m in boundary} == {"growth", "phases", "problem_area",
                                                   "completers", "pattern_mixture"}
    assert all("therapist_id (Intercept)" in m for m in boundary)


def _stage_output(result: TrajectoryResult) -> StageOutput:
    """What ``run_models`` returns for ``result`` (without refitting)."""
    return StageOutput(dict(result.tables), records=result.records, figure_data={
        "mixed_trajectories": pd.DataFrame({"instrument": [result.instrument]})})


def test_figure_is_drawn_on_the_report_side(result: TrajectoryResult) -> None:
    """The stage returns data only; the drawer draws the figure and records it."""
    assert not hasattr(result, "figures") and result.instrument == "phq9"
    assert not any(r.analysis.startswith("figure") for r in result.records)
    cfg = config.from_mapping(None)
    figures, records = stage_figures.draw("models", _stage_output(result), cfg)
    figure = figures["mixed_trajectories"]
    assert isinstance(figure, Figure)
    assert [(r.stage, r.analysis, r.status) for r in records] == [
        ("models", "figure mixed_trajectories", "done")]
    again = trajectory_plots.trajectories_figure(result.tables["mixed_trajectories"], "phq9",
                                                 result.tables["mixed_observed_means"])
    assert png_bytes(figure) == png_bytes(again)


def test_run_models_passes_the_figure_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_models`` hands the modelled instrument to the drawer as ``figure_data``."""
    table = pd.DataFrame({"term": ["(Intercept)"], "estimate": [1.0]})
    fake = TrajectoryResult({"mixed_growth_fixed": table}, ("note",), (), "gad7")
    monkeypatch.setattr(trajectories, "analyse", lambda *args, **kwargs: fake)
    out = stages.run_models({"patients": pd.DataFrame(), "sessions": pd.DataFrame()},
                            pd.DataFrame(), config.from_mapping(None), None)
    assert "figures" not in vars(out)  # the stage returns data; the report side draws
    assert out.rows == {"models": 1} and out.messages == ("note",)
    assert list(out.figure_data["mixed_trajectories"]["instrument"]) == ["gad7"]
    assert stage_figures.DRAWERS["models"] is trajectory_plots.stage_figures


def test_no_suppress_reaches_the_observed_means(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage hides the small counts behind the observed means through the sharing
    layer, and ``--no-suppress`` (``SharingOptions.no_suppress``) shows them."""
    observed = pd.DataFrame({
        "condition": "major_depression", "format": "individual", "time_scale": "weeks",
        "time_point": [0.0, 1.0], "n": [12, 3], "mean": [15.0, 9.0], "sd": [4.0, 2.0],
        "ci_low": [12.5, 4.0], "ci_high": [17.5, 14.0], "suppressed": False})
    fake = TrajectoryResult({"mixed_observed_means": observed}, (), (), "phq9")
    monkeypatch.setattr(trajectories, "analyse", lambda *args, **kwargs: fake)
    inputs = ({"patients": pd.DataFrame(), "sessions": pd.DataFrame()}, pd.DataFrame(),
              config.from_mapping(None), None)
    shared = stages.run_models(*inputs).tables["mixed_observed_means"]
    assert shared["n"].tolist() == [12, "<5"] and shared["suppressed"].tolist() == [False, True]
    assert pd.isna(shared.loc[1, "mean"])
    raw = stages.run_models(*inputs, SharingOptions(no_suppress=True)).tables[
        "mixed_observed_means"]
    pd.testing.assert_frame_equal(raw, observed)


def test_a_failed_figure_is_recorded() -> None:
    """A figure that cannot be drawn is a failed analysis, not a crash."""
    broken = StageOutput({"mixed_trajectories": pd.DataFrame({"model": ["growth"]})},
                         figure_data={"mixed_trajectories": pd.DataFrame(
                             {"instrument": ["phq9"]})})
    records: list[AnalysisRecord] = []
    assert trajectory_plots.stage_figures(broken, config.from_mapping(None), records) == {}
    assert [(r.analysis, r.status) for r in records] == [
        ("figure mixed_trajectories", "failed")]


def test_stage_code_does_not_draw() -> None:
    """No module of the trajectories package imports matplotlib or the report."""
    import ast
    from pathlib import Path

    package = Path(trajectories.__file__).parent
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names]
        names += [node.module or "" for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom)]
        drawing = [n for n in names if n.startswith(("matplotlib", "pipeline.report"))]
        assert not drawing, f"{path.name} imports {drawing}"


def test_statsmodels_engine_on_request(demo_data: tuple[pd.DataFrame, ...]) -> None:
    patients, sessions, po = demo_data
    keep = patients["patient_id"].isin(patients["patient_id"].iloc[:150])
    cfg = config.from_mapping({"trajectories": {"models": ["growth"]}})
    small = trajectories.analyse(patients[keep], sessions[sessions["patient_id"].isin(
        patients.loc[keep, "patient_id"])], po[po["patient_id"].isin(
            patients.loc[keep, "patient_id"])], cfg, engine="statsmodels")
    assert small.tables["mixed_growth_diagnostics"].at[0, "engine"] == "statsmodels"
    assert any("correlation" in m for m in small.messages)


# --------------------------------------------------------------------------- trial schedule


def _trial(n: int = 160, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A trial: BDI-II at weeks 0, 8, 13, 21, 35; arm b improves 0.15 points/week faster.

    bdi2 = 30 + u_i - (0.30 + 0.15 [arm b]) weeks + e, u ~ N(0, 5^2), e ~ N(0, 3^2).
    """
    rng = np.random.default_rng(seed)
    weeks = np.array([0, 8, 13, 21, 35])
    ids = [f"T{i:03d}" for i in range(n)]
    arm = np.where(np.arange(n) % 2 == 0, "a", "b")
    u = rng.normal(0, 5, n)
    patients = _patients([{"patient_id": p, "arm": a} for p, a in zip(ids, arm, strict=True)])
    rows = []
    for i, p in enumerate(ids):
        slope = 0.30 + 0.15 * (arm[i] == "b")
        for k, w in enumerate(weeks):
            rows.append({"patient_id": p, "session_number": k,
                         "session_date": START + int(7 * w) * DAY, "attendance": "attended",
                         "phq9": np.nan, "bdi2": 30 + u[i] - slope * w + rng.normal(0, 3)})
    sessions = pd.DataFrame(rows)
    baseline = sessions.loc[sessions["session_number"] == 0].set_index("patient_id")["bdi2"]
    po = pd.DataFrame({"patient_id": ids, "bdi2_baseline": baseline.loc[ids].to_numpy(),
                       "phq9_baseline": np.nan, "dropout": False, "completers": True})
    return patients, sessions, po


def test_custom_model_on_a_trial_schedule() -> None:
    patients, sessions, po = _trial()
    cfg = config.from_mapping({"primary_instrument": "bdi2", "trajectories": {
        "models": [], "custom": [
            {"name": "trial", "formula": "bdi2 ~ baseline_bdi2 + weeks * arm + (1 | patient_id)",
             "exclude_baseline": True},
            {"name": "broken", "formula": "bdi2 ~ nonexistent + (1 | patient_id)"}]}})
    out = trajectories.analyse(patients, sessions, po, cfg)
    assert {"mixed_trial_fixed", "mixed_trial_variance", "mixed_trial_diagnostics"} <= set(
        out.tables)
    fixed = out.tables["mixed_trial_fixed"].set_index("term")
    assert list(fixed.index) == ["(Intercept)", "baseline_bdi2", "weeks", "arm[b]",
                                 "weeks:arm[b]"]
    row = fixed.loc["weeks:arm[b]"]
    assert abs(row["estimate"] + 0.15) < 4 * row["std_error"]
    assert abs(fixed.loc["weeks", "estimate"] + 0.30) < 4 * fixed.loc["weeks", "std_error"]
    assert out.tables["mixed_trial_diagnostics"].at[0, "n_obs"] == 4 * 160  # no baseline rows
    status = {r.analysis: (r.status, r.reason) for r in out.records}
    assert status["model trial"] == ("done", "")
    assert status["model broken"][0] == "not estimable"
    assert "nonexistent" in status["model broken"][1]
    assert "mixed_trajectories" not in out.tables
    assert stage_figures.draw("models", _stage_output(out), cfg) == ({}, ())


def test_individual_only_cohort_on_the_session_scale() -> None:
    """No group format: no format contrast, and the session scale works end to end."""
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=300, seed=3, expected_rates_n=0,
                                                  group_share=0.0))
    cfg = config.from_mapping({"trajectories": {"time": "session_number",
                                                "models": ["growth", "phases"]}})
    po = outcomes.derive(cohort.patients, cohort.sessions, cfg)
    out = trajectories.analyse(cohort.patients, cohort.sessions, po, cfg)
    assert "mixed_format_difference" not in out.tables
    assert list(out.tables["mixed_slopes"]["format"]) == ["individual"]
    assert "session_number" in set(out.tables["mixed_growth_fixed"]["term"])
    table = out.tables["mixed_trajectories"]
    assert set(table["time_scale"]) == {"session_number"} and set(table["format"]) == {
        "individual"}
    observed = out.tables["mixed_observed_means"]  # by session number, session 0 included
    assert set(observed["time_scale"]) == {"session_number"}
    assert set(observed["time_point"]) <= set(range(17)) and 0.0 in set(observed["time_point"])
    assert out.tables["mixed_model_comparison"]["model"].tolist() == ["growth", "phases"]
    with pytest.raises(ValueError, match="unknown engine"):
        trajectories.analyse(cohort.patients, cohort.sessions, po, cfg, engine="lme4")


def test_sample_patients_below_the_limit_keeps_everyone(
        demo_data: tuple[pd.DataFrame, ...]) -> None:
    patients = demo_data[0]
    kept, note = trajectories.sample_patients(patients, len(patients))
    assert kept is patients and note is None
    assert trajectories.sample_patients(patients, None) == (patients, None)


def test_sample_patients_is_a_reproducible_simple_random_sample(
        demo_data: tuple[pd.DataFrame, ...]) -> None:
    patients = demo_data[0]
    sample, note = trajectories.sample_patients(patients, 500)
    again, _ = trajectories.sample_patients(patients, 500)
    assert len(sample) == 500 and sample["patient_id"].is_unique
    pd.testing.assert_frame_equal(sample, again)
    positions = patients.index.get_indexer(sample.index)
    assert (np.diff(positions) > 0).all()  # original order kept
    assert note is not None and "500 of 2,000 patients" in note and "2.0 times" in note
    # a random sample, not the first rows: both halves of the table are represented
    assert 0.35 < (positions < len(patients) / 2).mean() < 0.65
    # the same patients whatever the row order
    shuffled = patients.sample(frac=1.0, random_state=1)
    assert set(trajectories.sample_patients(shuffled, 500)[0]["patient_id"]) == \
        set(sample["patient_id"])


def test_models_on_a_sample_say_so(demo_data: tuple[pd.DataFrame, ...]) -> None:
    patients, sessions, po = demo_data
    study = config.from_mapping({"trajectories": {"models": ["growth"], "max_patients": 600}})
    result = trajectories.analyse(patients, sessions, po, study)
    assert result.messages[0].startswith("models fitted to a pseudo-random sample of 600")
    assert result.tables["mixed_growth_diagnostics"].at[0, "n_patients"] <= 600
    modelled = set(result.tables["mixed_patient_fitted"]["patient_id"])
    expected = set(trajectories.sample_patients(patients, 600)[0]["patient_id"])
    assert modelled <= expected and len(modelled) > 550


def test_max_patients_is_checked() -> None:
    with pytest.raises(config.ConfigError, match=r"trajectories\.max_patients"):
        config.from_mapping({"trajectories": {"max_patients": 5}})
    assert config.from_mapping({"trajectories": {"max_patients": None}}).trajectories \
        .max_patients is None


def test_the_format_is_never_pooled_even_when_both_formats_are_rare() -> None:
    """Pooling rare levels is for covariates; the format is the comparison the models are
    for, so a small study keeps ``individual`` and ``group`` (the output contract's values)."""
    long = pd.DataFrame({
        "patient_id": [f"p{i}" for i in range(12)],
        "format": ["individual"] * 6 + ["group"] * 6,
        "condition": ["major_depression"] * 12,
        "problem_area": ["grief"] * 12,
        "dropout": [False] * 12,
    })
    frame, _terms, notes = trajectories.model_data(long)
    assert list(frame["format"].cat.categories) == ["individual", "group"]
    assert not any(note.startswith("format") for note in notes)


def test_a_model_that_did_not_converge_is_reported_and_not_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both engines stopped after one iteration (so ``auto``'s statsmodels fallback does not
    converge either): each model is recorded as not estimable with the reason, none of its
    estimates is written, and its diagnostics and comparison row say converged = False."""
    from tests.test_engines import _one_iteration_mixedlm, _one_iteration_statsmodels

    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=300, seed=7, expected_rates_n=0))
    cfg = config.from_mapping({"trajectories": {"models": ["growth", "phases"]}})
    po = outcomes.derive(cohort.patients, cohort.sessions, cfg)
    _one_iteration_mixedlm(monkeypatch)
    _one_iteration_statsmodels(monkeypatch)
    out = trajectories.analyse(cohort.patients, cohort.sessions, po, cfg)
    for model in ("growth", "phases"):
        record = next(r for r in out.records if r.analysis == f"model {model}")
        assert record.status == "not estimable"
        assert f"the final fit of {model}" in record.reason
        assert "did not converge, so none of its estimates is used" in record.reason
        assert not bool(out.tables[f"mixed_{model}_diagnostics"].at[0, "converged"])
        assert any(m.startswith(f"{model}: ") and "did not report convergence" in m
                   for m in out.messages)
    estimates = {"mixed_growth_fixed", "mixed_growth_variance", "mixed_phases_fixed",
                 "mixed_phases_variance", "mixed_trajectories", "mixed_slopes",
                 "mixed_format_difference", "mixed_phase_slopes", "mixed_patient_fitted"}
    assert not estimates & set(out.tables)
    comparison = out.tables["mixed_model_comparison"]
    assert comparison["model"].tolist() == ["growth", "phases"]
    assert not comparison["converged"].any()
    assert comparison["convergence_note"].str.contains("did not report convergence").all()


def test_a_custom_model_that_did_not_converge_is_not_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_engines import _one_iteration_mixedlm, _one_iteration_statsmodels

    patients, sessions, po = _trial()
    cfg = config.from_mapping({"primary_instrument": "bdi2", "trajectories": {
        "models": [], "custom": [
            {"name": "trial", "formula": "bdi2 ~ weeks * arm + (1 + weeks | patient_id)"}]}})
    _one_iteration_mixedlm(monkeypatch)
    _one_iteration_statsmodels(monkeypatch)
    out = trajectories.analyse(patients, sessions, po, cfg)
    status = {r.analysis: (r.status, r.reason) for r in out.records}
    assert status["model trial"][0] == "not estimable"
    assert "did not converge" in status["model trial"][1]
    assert set(out.tables) == {"mixed_trial_diagnostics", "mixed_model_comparison"}
