"""Tables that let a reader check the trajectory models (``pipeline.trajectories.means``),
the format contrast at several weeks, and how the report shows them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from pipeline import config
from pipeline.demo import generate as demo
from pipeline.outcomes import definitions as outcomes
from pipeline.report import html as report
from pipeline.report.trajectory_plots import trajectories_figure
from pipeline.sharing import trajectory_tables as shared_trajectories
from pipeline.trajectories import engines
from pipeline.trajectories import models as trajectories
from pipeline.trajectories.data import long_scores
from pipeline.trajectories.estimates import format_difference
from pipeline.trajectories.means import (
    COMPARISON_COLUMNS,
    OBSERVED_COLUMNS,
    comparison_row,
    model_comparison,
    observed_means,
    observed_n_wide,
)
from pipeline.trajectories.specs import model_spec, random_structure

GOLDEN = Path(__file__).parent / "golden"

# --------------------------------------------------------------------------- observed means


def _tiny() -> pd.DataFrame:
    """Two formats of one condition. Individual, week 0: A 10 and 12 (two scores in one
    week: 11), B 14, C 18 -> n 3. Week 1 (0.6 and 1.4 weeks round to 1): A 8, B 6 -> n 2.
    Group, week 0: D 20 -> n 1. A missing score is not counted."""
    rows = [("A", "individual", 0, -0.3, 10.0), ("A", "individual", 1, 0.2, 12.0),
            ("B", "individual", 1, 0.0, 14.0), ("C", "individual", 0, 0.0, 18.0),
            ("A", "individual", 2, 1.4, 8.0), ("B", "individual", 2, 0.6, 6.0),
            ("C", "individual", 2, 1.0, np.nan), ("D", "group", 0, 0.1, 20.0)]
    frame = pd.DataFrame(rows, columns=["patient_id", "format", "session_number", "weeks",
                                        "score"])
    return frame.assign(condition="major_depression")


def _t_interval(values: list[float]) -> tuple[float, float, float]:
    mean, sd, n = float(np.mean(values)), float(np.std(values, ddof=1)), len(values)
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    return sd, mean - half, mean + half


def test_observed_means_by_hand() -> None:
    table = observed_means(_tiny(), "weeks")
    assert list(table.columns) == list(OBSERVED_COLUMNS)
    cells = table.set_index(["format", "time_point"])
    week0 = cells.loc[("individual", 0.0)]
    assert week0["n"] == 3 and week0["mean"] == pytest.approx((11 + 14 + 18) / 3)
    sd, low, high = _t_interval([11.0, 14.0, 18.0])
    assert (week0["sd"], week0["ci_low"], week0["ci_high"]) == pytest.approx((sd, low, high))
    week1 = cells.loc[("individual", 1.0)]
    assert week1["n"] == 2 and week1["mean"] == pytest.approx(7.0)
    assert week1["ci_low"] == pytest.approx(7.0 - stats.t.ppf(0.975, 1) * np.sqrt(2) / np.sqrt(2))
    single = cells.loc[("group", 0.0)]  # one patient: a mean, no SD, no interval
    assert single["n"] == 1 and single["mean"] == 20.0
    assert np.isnan(single["sd"]) and np.isnan(single["ci_low"])
    assert len(table) == 3 and not table["suppressed"].any()
    assert (table["time_scale"] == "weeks").all() and (table["condition"] ==
                                                        "major_depression").all()


def test_observed_means_on_the_session_scale() -> None:
    table = observed_means(_tiny(), "session_number")
    cells = table.set_index(["format", "time_point"])["n"]
    assert cells.to_dict() == {("individual", 0.0): 2, ("individual", 1.0): 2,
                               ("individual", 2.0): 2, ("group", 0.0): 1}


def _shared(table: pd.DataFrame, suppress_below: int) -> pd.DataFrame:
    """The table as the sharing layer publishes it at ``suppress_below``."""
    return shared_trajectories.share({"mixed_observed_means": table},
                                     suppress_below - 1)["mixed_observed_means"]


def test_observed_means_show_every_count_until_shared() -> None:
    table = observed_means(_tiny(), "weeks")
    assert not table["suppressed"].any() and table["mean"].notna().all()
    assert list(table.columns) == list(_shared(table, 3).columns)


def test_observed_means_hide_small_counts() -> None:
    table = _shared(observed_means(_tiny(), "weeks"), 3)
    cells = table.set_index(["format", "time_point"])
    kept = cells.loc[("individual", 0.0)]
    assert kept["n"] == 3 and not kept["suppressed"] and kept["mean"] == pytest.approx(43 / 3)
    for key in (("individual", 1.0), ("group", 0.0)):
        hidden = cells.loc[key]
        assert hidden["n"] == "<3" and hidden["suppressed"]
        assert hidden[["mean", "sd", "ci_low", "ci_high"]].isna().all()
    default = _shared(observed_means(_tiny(), "weeks"), 5)
    assert (default["n"] == "<5").all() and default["mean"].isna().all()


def test_hidden_points_are_not_drawn() -> None:
    observed = _shared(observed_means(_tiny(), "weeks"), 3)
    model = pd.DataFrame({"model": "growth", "condition": "major_depression",
                          "format": "individual", "time_scale": "weeks",
                          "time_point": [0.0, 1.0], "estimate": [14.0, 7.0],
                          "ci_low": [12.0, 5.0], "ci_high": [16.0, 9.0]})
    figure = trajectories_figure(model, "phq9", observed)
    assert isinstance(figure, Figure)
    points = [line for line in figure.axes[0].lines if line.get_marker() == "o"]
    drawn = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in points])
    assert drawn.tolist() == [pytest.approx(0.0 - 0.15)]  # the n = 3 point only (dodged)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "observed mean (95% CI)" in legend


def test_observed_n_view_orders_time_points_numerically() -> None:
    table = pd.DataFrame({"condition": "anxiety", "format": ["group", "group", "group"],
                          "time_scale": "weeks", "time_point": ["10.0", "-1.0", "2.0"],
                          "n": ["7", "<5", "12"]})
    wide = observed_n_wide(table)
    assert list(wide.columns) == ["condition", "format", "-1", "2", "10"]
    assert wide.iloc[0].tolist() == ["anxiety", "group", "<5", "12", "7"]


# --------------------------------------------------------------------------- model comparison


def test_comparable_groups() -> None:
    """ML fits of the same rows compare; REML fits only with the same fixed effects too."""
    rows = pd.DataFrame({
        "model": ["growth", "completers", "ml_a", "ml_b", "reml_a", "reml_b", "ml_other"],
        "method": ["REML", "REML", "ML", "ML", "REML", "REML", "ML"],
        "_rows": ["all", "some", "all", "all", "all", "all", "some"],
        "_fixed": ["f1", "f1", "f2", "f3", "f2", "f2", "f2"]})
    rows["converged"] = True
    for column in COMPARISON_COLUMNS:
        if column not in rows:
            rows[column] = 0
    table = model_comparison(rows)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert table["model"].tolist() == rows["model"].tolist()  # the order given, kept
    groups = dict(zip(table["model"], table["comparable_group"], strict=True))
    assert groups == {"growth": "", "completers": "", "ml_a": "A", "ml_b": "A",
                      "reml_a": "B", "reml_b": "B", "ml_other": ""}
    assert table.set_index("model").loc["ml_a", "comparable_with"] == "ml_b"
    # a fit that did not converge is not at its maximum: it compares with no other
    stopped = model_comparison(rows.assign(converged=rows["model"] != "ml_b"))
    groups = dict(zip(stopped["model"], stopped["comparable_group"], strict=True))
    assert groups["ml_a"] == groups["ml_b"] == "" and groups["reml_a"] == "A"


# --------------------------------------------------------------------------- on a small demo


@pytest.fixture(scope="module")
def small_demo() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The cohort of ``tests/golden/mixed_format_difference_main.csv`` (written by main's
    code before contrast weeks existed)."""
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=300, seed=7, expected_rates_n=0))
    po = outcomes.derive(cohort.patients, cohort.sessions, config.from_mapping(None))
    return cohort.patients, cohort.sessions, po


@pytest.fixture(scope="module")
def default_run(small_demo: tuple[pd.DataFrame, ...]) -> trajectories.TrajectoryResult:
    return trajectories.analyse(*small_demo, config.from_mapping(None))


def test_default_config_gives_main_s_format_difference(
        default_run: trajectories.TrajectoryResult) -> None:
    before = pd.read_csv(GOLDEN / "mixed_format_difference_main.csv")
    now = default_run.tables["mixed_format_difference"]
    assert list(now.columns) == list(before.columns)
    pd.testing.assert_frame_equal(now.reset_index(drop=True), before, check_dtype=False,
                                  rtol=1e-9, atol=1e-12)


def test_comparison_table_in_the_config_s_order(
        default_run: trajectories.TrajectoryResult) -> None:
    table = default_run.tables["mixed_model_comparison"]
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert table["model"].tolist() == ["growth", "phases", "problem_area", "completers",
                                       "pattern_mixture"]
    for _, row in table.iterrows():
        diagnostics = default_run.tables[f"mixed_{row['model']}_diagnostics"].iloc[0]
        assert row["formula"] == diagnostics["formula"]
        for column in ("n_obs", "n_patients", "loglik", "aic", "bic", "method", "converged"):
            assert row[column] == diagnostics[column]
    # every built-in model is a REML fit with its own fixed effects or rows: none compare
    assert (table["method"] == "REML").all() and (table["comparable_group"] == "").all()
    assert table.set_index("model").loc["completers", "n_obs"] < table["n_obs"].max()


def test_custom_models_follow_the_built_in_ones(small_demo: tuple[pd.DataFrame, ...]) -> None:
    study = config.from_mapping({"trajectories": {
        "models": ["completers", "growth"],
        "custom": [
            {"name": "ml_linear", "formula": "phq9 ~ weeks + (1 | patient_id)", "reml": False},
            {"name": "ml_format", "formula": "phq9 ~ weeks * format + (1 | patient_id)",
             "reml": False},
            {"name": "reml_slopes", "formula": "phq9 ~ weeks + (1 + weeks | patient_id)"},
            {"name": "reml_linear", "formula": "phq9 ~ weeks + (1 | patient_id)"},
            {"name": "ml_after_baseline", "formula": "phq9 ~ weeks + (1 | patient_id)",
             "reml": False, "exclude_baseline": True}]}})
    table = trajectories.analyse(*small_demo, study).tables["mixed_model_comparison"]
    rows = table.set_index("model")
    assert table["model"].tolist() == ["completers", "growth", "ml_linear", "ml_format",
                                       "reml_slopes", "reml_linear", "ml_after_baseline"]
    assert rows.loc["ml_linear", "comparable_group"] == rows.loc["ml_format",
                                                                "comparable_group"] == "A"
    assert rows.loc["reml_slopes", "comparable_group"] == "B"
    assert rows.loc["reml_linear", "comparable_with"] == "reml_slopes"
    assert rows.loc["ml_after_baseline", "comparable_group"] == ""  # other rows
    assert rows.loc["ml_linear", "method"] == "ML" and rows.loc["growth", "method"] == "REML"
    assert rows.loc["ml_linear", "formula"] == "phq9 ~ weeks + (1 | patient_id)"


@pytest.fixture(scope="module")
def growth_fit(small_demo: tuple[pd.DataFrame, ...]) -> tuple[engines.MixedFit, pd.DataFrame]:
    long = long_scores(*small_demo, "phq9")
    frame, covariates, _ = trajectories.model_data(long)
    components, _ = random_structure(frame, "weeks")
    fit = engines.fit(model_spec("growth", "weeks", covariates, components),
                      frame, "auto")
    return fit, frame


def test_convergence_note_says_why(growth_fit: tuple[engines.MixedFit, pd.DataFrame]) -> None:
    fit, frame = growth_fit
    assert comparison_row("growth", fit, frame).iloc[0]["convergence_note"] == ""
    failed = fit.diagnostics.assign(converged=False)
    warning = "mixedlm: the optimiser (lbfgs) did not report convergence; treat with caution"
    row = comparison_row("growth", replace(fit, diagnostics=failed,
                                           messages=("boundary fit", warning)), frame).iloc[0]
    assert not row["converged"] and row["convergence_note"] == warning
    silent = comparison_row("growth", replace(fit, diagnostics=failed, messages=()),
                            frame).iloc[0]
    assert silent["convergence_note"].startswith(
        f"optimiser {fit.diagnostics['optimizer'].iloc[0]} did not report convergence after")


def test_contrast_at_two_weeks_by_hand(
        growth_fit: tuple[engines.MixedFit, pd.DataFrame]) -> None:
    """L beta and sqrt(L V L') of group minus individual at weeks 8 and 16 (growth model:
    the condition and covariate terms cancel, leaving format[group] + w weeks:format[group])."""
    fit, frame = growth_fit
    table = format_difference("growth", fit, frame, "weeks", (8.0, 16.0), 5.0)
    assert table["time_point"].tolist() == [8.0, 16.0]
    terms = list(fit.coef.index)
    beta, cov = fit.coef.to_numpy(), fit.cov.to_numpy()
    for week, (_, row) in zip((8.0, 16.0), table.iterrows(), strict=True):
        ell = np.zeros(len(terms))
        ell[terms.index("format[group]")] = 1.0
        ell[terms.index("weeks:format[group]")] = week
        estimate, se = float(ell @ beta), float(np.sqrt(ell @ cov @ ell))
        assert row["estimate"] == pytest.approx(estimate, rel=1e-10)
        assert row["std_error"] == pytest.approx(se, rel=1e-10)
        assert row["ci_low"] == pytest.approx(estimate - engines.Z_95 * se, rel=1e-10)
        assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(estimate / se)))
        assert row["effect_size"] == pytest.approx(estimate / 5.0)


def test_contrast_weeks_from_the_config(small_demo: tuple[pd.DataFrame, ...],
                                        default_run: trajectories.TrajectoryResult) -> None:
    study = config.from_mapping({"trajectories": {"models": ["growth", "completers"],
                                                  "contrast_weeks": [16, 8]}})
    table = trajectories.analyse(*small_demo, study).tables["mixed_format_difference"]
    assert list(zip(table["model"], table["time_point"], strict=True)) == [
        ("growth", 16.0), ("growth", 8.0), ("completers", 16.0), ("completers", 8.0)]
    at16 = default_run.tables["mixed_format_difference"].set_index("model")
    mine = table.loc[table["time_point"] == 16.0].set_index("model")
    for model in ("growth", "completers"):
        assert mine.loc[model, "estimate"] == pytest.approx(at16.loc[model, "estimate"])
        assert mine.loc[model, "std_error"] == pytest.approx(at16.loc[model, "std_error"])


# --------------------------------------------------------------------------- report


def test_report_shows_the_comparison_first_and_models_in_its_order(
        default_run: trajectories.TrajectoryResult) -> None:
    tables = {name: frame.astype(str) for name, frame in default_run.tables.items()
              if name != "mixed_patient_fitted"}
    html = report.render(report.ReportInputs(tables=tables, figures={}, messages={},
                                             validation={}, manifest={}))
    section = html[html.index('<section id="trajectories">'):]
    section = section[:section.index("</section>")]
    headings = [part.split("</h3>")[0] for part in section.split("<h3>")[1:]]
    assert headings == ["growth", "phases", "problem_area", "completers", "pattern_mixture"]
    assert section.index('id="t-mixed_model_comparison"') < section.index("<h3>growth</h3>")
    assert 'id="t-mixed_observed_n"' in section and "mixed_observed_means.csv" in section
