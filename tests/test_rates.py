"""Tests for ``pipeline.outcomes.rates``: hand-checkable frames and one simulation with known
truth."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from statsmodels.stats.proportion import proportion_confint

from data_schemas.outcomes import PAIRED, PER_INSTRUMENT, per_instrument_schema
from data_schemas.vocab import INSTRUMENTS
from pipeline.estimability import NotEstimable
from pipeline.outcomes import comparison
from pipeline.outcomes.comparison import adjusted_response
from pipeline.outcomes.rates import (
    attendance_summary,
    benchmark_comparison,
    response_rates,
    suppress_small_counts,
    wilson_interval,
)

NA = pd.NA
FLAGS = ("response", "remission", "reliable_improvement", "reliable_deterioration")
RATE_COLUMNS = [
    "population", "instrument", "outcome", "denominator", "condition", "format",
    "n", "events", "rate", "ci_low", "ci_high",
]
BENCHMARKS_CSV = Path(__file__).parents[1] / "pipeline" / "resources" / "benchmarks_example.csv"


def make_outcomes(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A ``patient_outcomes`` frame with every column; unspecified values are missing.

    Each record needs patient_id, condition and format; populations default to False,
    session counts to 0, scores to NaN and outcome flags to <NA>.
    """
    rows = []
    for i, record in enumerate(records):
        row: dict[str, Any] = {
            "site_id": "S1", "therapist_id": f"T{i % 3}", "group_id": None,
            "problem_area": "role_disputes", "sessions_scheduled": 0, "sessions_attended": 0,
            "sessions_did_not_attend": 0, "attendance_rate": np.nan, "ended": False,
            "dropout": False, "started": False, "finished_course": False, "completers": False,
        }
        row.update(record)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for instrument in INSTRUMENTS:
        for name in PER_INSTRUMENT:
            column = f"{instrument}_{name}"
            if column not in frame:
                frame[column] = NA if name in FLAGS or name == "jt_class" else np.nan
            if name in FLAGS:
                frame[column] = frame[column].astype("boolean")
            elif name != "jt_class":
                frame[column] = frame[column].astype(float)
    for column in PAIRED:
        frame[column] = frame.get(column, NA)
        frame[column] = frame[column].astype("boolean")
    for column in ("started", "finished_course", "completers", "ended", "dropout"):
        frame[column] = frame[column].astype(bool)
    return frame


# ----------------------------------------------------------------------------- Wilson


def wilson_by_hand(x: float, n: float, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson (1927) score interval written out from its formula."""
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(
    ("events", "n", "low", "high"),
    [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (1, 2, 0.0945, 0.9055)],
)
def test_wilson_matches_published_values(events: int, n: int, low: float, high: float) -> None:
    ci_low, ci_high = wilson_interval(events, n)
    assert float(ci_low) == pytest.approx(low, abs=1e-4)
    assert float(ci_high) == pytest.approx(high, abs=1e-4)


def test_wilson_vectorised_matches_formula_and_statsmodels() -> None:
    events = np.array([0, 1, 3, 8, 10, 37, 250])
    n = np.array([10, 1, 7, 10, 10, 120, 251])
    low, high = wilson_interval(events, n)
    by_hand = np.array([wilson_by_hand(x, m) for x, m in zip(events, n, strict=True)])
    np.testing.assert_allclose(low, by_hand[:, 0], atol=1e-12)
    np.testing.assert_allclose(high, by_hand[:, 1], atol=1e-12)
    sm_low, sm_high = proportion_confint(events, n, alpha=0.1, method="wilson")
    low90, high90 = wilson_interval(events, n, alpha=0.1)
    np.testing.assert_allclose(low90, sm_low)
    np.testing.assert_allclose(high90, sm_high)
    assert np.all(high90 - low90 < high - low)


def test_wilson_is_nan_for_empty_denominator() -> None:
    low, high = wilson_interval([0, 2], [0, 4])
    assert np.isnan(low[0]) and np.isnan(high[0])
    assert low[1] == pytest.approx(wilson_by_hand(2, 4)[0])


# ------------------------------------------------------------------------ response rates


def twelve_patients() -> pd.DataFrame:
    """Hand-checkable cohort (see the expected counts in the tests below)."""
    t, f = True, False
    # id, condition, format, started, finished, completer, phq9_baseline, response,
    # remission, phq9 reliable improvement, gad7_baseline, caseness, paired RI, recovery,
    # reliable recovery
    table = [
        ("P01", "major_depression", "individual", t, t, t, 20, t, t, t, 15, t, t, t, t),
        ("P02", "major_depression", "individual", t, t, t, 18, f, f, t, 12, t, t, f, f),
        ("P03", "major_depression", "individual", t, t, f, 15, NA, NA, NA, 10, t, NA, NA, NA),
        ("P04", "major_depression", "individual", t, f, f, 12, NA, NA, NA, 9, t, NA, NA, NA),
        ("P05", "major_depression", "group", t, t, t, 22, t, f, t, 14, t, t, f, f),
        ("P06", "major_depression", "group", t, t, f, 0, NA, t, f, 3, f, f, NA, NA),
        ("P07", "anxiety", "individual", t, t, t, 9, f, f, f, 16, t, t, t, t),
        ("P08", "anxiety", "individual", t, t, t, np.nan, NA, NA, NA, 12, t, NA, NA, NA),
        ("P09", "anxiety", "group", t, t, t, 14, f, f, f, 11, t, f, f, f),
        ("P10", "anxiety", "group", t, t, f, 16, t, f, t, 9, t, t, t, t),
        ("P11", "anxiety", "group", f, f, f, 17, NA, NA, NA, 13, t, NA, NA, NA),
        ("P12", "major_depression", "individual", t, t, t, 11, f, f, f, 5, t, f, f, f),
    ]
    names = [
        "patient_id", "condition", "format", "started", "finished_course", "completers",
        "phq9_baseline", "phq9_response", "phq9_remission", "phq9_reliable_improvement",
        "gad7_baseline", "caseness_at_start", "reliable_improvement", "recovery",
        "reliable_recovery",
    ]
    records = [dict(zip(names, row, strict=True)) for row in table]
    for record in records:
        record["group_id"] = "G1" if record["format"] == "group" else None
    records[0] |= {"hamd17_baseline": 20.0, "hamd17_response": True}
    records[4] |= {"hamd17_baseline": 25.0}
    return make_outcomes(records)


def test_fixture_meets_the_outcomes_contract() -> None:
    per_instrument_schema().validate(twelve_patients(), lazy=True)


def cell(table: pd.DataFrame, **keys: str) -> tuple[int, int]:
    mask = np.ones(len(table), dtype=bool)
    for column, value in keys.items():
        mask &= (table[column] == value).to_numpy()
    assert mask.sum() == 1, keys
    row = table.loc[mask].iloc[0]
    return int(row["n"]), int(row["events"])


@pytest.fixture(scope="module")
def rates() -> pd.DataFrame:
    return response_rates(twelve_patients(), ["phq9", "gad7", "hamd17", "bdi2"])


def test_rates_columns_and_skipped_instruments(rates: pd.DataFrame) -> None:
    assert list(rates.columns) == RATE_COLUMNS
    assert set(rates["instrument"]) == {"phq9", "gad7", "hamd17", "phq9+gad7"}
    # 4 instruments x 3 outcomes x 2 denominators x 3 populations x 9 cells, less the ITT
    # cells where nobody's outcome was observed (test below)
    unobserved = rates[(rates["denominator"] == "observed") & (rates["n"] == 0)]
    assert len(rates) == 4 * 3 * 2 * 3 * 9 - len(unobserved)
    assert len(unobserved) > 0
    assert rates["n"].dtype == np.int64 and rates["events"].dtype == np.int64


@pytest.mark.parametrize(
    ("condition", "format_", "observed", "itt"),
    [
        ("major_depression", "individual", (3, 1), (4, 1)),
        ("major_depression", "group", (1, 1), (1, 1)),  # P06 has baseline 0: not eligible
        ("anxiety", "individual", (1, 0), (1, 0)),  # P08 has no baseline
        ("anxiety", "group", (2, 1), (2, 1)),
        ("major_depression", "all", (4, 2), (5, 2)),
        ("anxiety", "all", (3, 1), (3, 1)),
        ("all", "individual", (4, 1), (5, 1)),
        ("all", "group", (3, 2), (3, 2)),
        ("all", "all", (7, 3), (8, 3)),
    ],
)
def test_phq9_response_counts_by_hand(
    rates: pd.DataFrame, condition: str, format_: str, observed: tuple[int, int],
    itt: tuple[int, int],
) -> None:
    keys = {"population": "finished_course", "instrument": "phq9", "outcome": "response",
            "condition": condition, "format": format_}
    assert cell(rates, denominator="observed", **keys) == observed
    assert cell(rates, denominator="itt", **keys) == itt


@pytest.mark.parametrize(
    ("population", "instrument", "outcome", "observed", "itt"),
    [
        ("finished_course", "phq9", "remission", (8, 2), (9, 2)),
        ("finished_course", "phq9+gad7", "recovery", (7, 3), (9, 3)),
        ("finished_course", "phq9+gad7", "reliable_improvement", (8, 5), (9, 5)),
        ("finished_course", "phq9+gad7", "reliable_recovery", (7, 3), (9, 3)),
        ("started", "phq9", "response", (7, 3), (9, 3)),  # P04 eligible, outcome missing
        ("completers", "phq9", "response", (6, 2), (6, 2)),
        ("finished_course", "hamd17", "response", (1, 1), (2, 1)),
    ],
)
def test_overall_counts_by_hand(
    rates: pd.DataFrame, population: str, instrument: str, outcome: str,
    observed: tuple[int, int], itt: tuple[int, int],
) -> None:
    keys = {"population": population, "instrument": instrument, "outcome": outcome,
            "condition": "all", "format": "all"}
    assert cell(rates, denominator="observed", **keys) == observed
    assert cell(rates, denominator="itt", **keys) == itt


def test_no_itt_rate_where_no_outcome_was_observed(rates: pd.DataFrame) -> None:
    """GAD-7 response is observed for nobody: a 0-of-10 ITT rate would be imputation alone."""
    gad7 = rates[(rates["instrument"] == "gad7") & (rates["outcome"] == "response")]
    assert set(gad7["denominator"]) == {"observed"}
    assert (gad7["n"] == 0).all()
    itt = rates[rates["denominator"] == "itt"].merge(
        rates[rates["denominator"] == "observed"],
        on=["population", "instrument", "outcome", "condition", "format"], suffixes=("", "_obs"))
    assert (itt["n_obs"] > 0).all()


def test_rate_and_interval_values(rates: pd.DataFrame) -> None:
    row = rates.query(
        "population == 'finished_course' and instrument == 'phq9' and outcome == 'response'"
        " and denominator == 'itt' and condition == 'all' and format == 'all'"
    ).iloc[0]
    assert row["rate"] == 3 / 8  # full precision, no rounding
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_by_hand(3, 8))
    empty = rates.query("instrument == 'gad7' and denominator == 'observed'")
    assert empty["n"].eq(0).all() and empty["rate"].isna().all() and empty["ci_low"].isna().all()


def test_rates_sorted_deterministically(rates: pd.DataFrame) -> None:
    head = rates.iloc[:9]
    assert set(head["population"]) == {"started"}
    assert set(head["instrument"]) == {"phq9"} and set(head["outcome"]) == {"response"}
    assert list(zip(head["condition"], head["format"], strict=True)) == [
        ("major_depression", "individual"), ("major_depression", "group"),
        ("major_depression", "all"), ("anxiety", "individual"), ("anxiety", "group"),
        ("anxiety", "all"), ("all", "individual"), ("all", "group"), ("all", "all"),
    ]
    assert list(dict.fromkeys(rates["population"])) == ["started", "finished_course",
                                                         "completers"]
    assert list(dict.fromkeys(rates["instrument"])) == ["phq9", "gad7", "hamd17", "phq9+gad7"]
    shuffled = twelve_patients().sample(frac=1.0, random_state=3)
    again = response_rates(shuffled, ["phq9", "gad7", "hamd17", "bdi2"])
    pd.testing.assert_frame_equal(again, rates)


# ------------------------------------------------------------------------- suppression


def test_suppress_small_counts() -> None:
    table = pd.DataFrame({
        "n": [10, 10, 10, 6, 3, 0, 20],
        "events": [3, 0, 5, 5, 0, 0, 19],
    })
    table["rate"] = table["events"] / table["n"].replace(0, np.nan)
    table["ci_low"], table["ci_high"] = wilson_interval(table["events"], table["n"])
    before = table.copy()
    shared = suppress_small_counts(table)
    pd.testing.assert_frame_equal(table, before)  # input untouched
    assert list(shared["events"]) == ["<5", 0, 5, 5, 0, 0, 19]
    assert list(shared["n"]) == [10, 10, 10, 6, "<5", 0, 20]
    assert list(shared["suppressed"]) == [True, False, False, True, True, False, True]
    for column in ("rate", "ci_low", "ci_high"):
        hidden = shared[column].isna()
        assert list(hidden) == [True, False, False, True, True, True, True]
    assert shared.loc[1, "rate"] == 0.0 and shared.loc[2, "rate"] == 0.5
    assert shared["suppressed"].dtype == bool


# ------------------------------------------------------------------------- GEE


TRUE_LOG_ODDS = {
    "Intercept": 1.5, "format[group]": -0.5, "condition[anxiety]": 0.3,
    "condition[dysthymia]": -0.4, "problem_area[grief]": 0.25,
    "problem_area[interpersonal_deficits]": -0.3, "problem_area[role_transitions]": 0.1,
    "phq9_baseline": -0.08,
}


def simulate_clustered(seed: int = 20240611, n: int = 3000) -> tuple[pd.DataFrame, float]:
    """Clustered binary outcomes whose *marginal* model is exactly the logistic model above.

    Within a cluster, each patient copies the cluster's uniform draw with probability 0.3
    and otherwise has their own; ``y = [U < p]`` so ``P(y = 1) = p`` while outcomes in a
    cluster are correlated. Returns the frame and the sample's true standardised risk
    difference (group minus individual).
    """
    rng = np.random.default_rng(seed)
    group = rng.random(n) < 0.4
    condition = rng.choice(["major_depression", "anxiety", "dysthymia"], n, p=[0.6, 0.25, 0.15])
    area = rng.choice(["role_disputes", "grief", "role_transitions", "interpersonal_deficits"], n)
    baseline = rng.integers(10, 28, n).astype(float)
    group_id = np.where(group, "G" + (np.cumsum(group) // 8).astype(str), None)
    therapist = "T" + rng.integers(0, 60, n).astype(str)
    cluster = np.where(group, group_id, therapist)

    def linear_predictor(in_group: np.ndarray) -> np.ndarray:
        eta = TRUE_LOG_ODDS["Intercept"] + TRUE_LOG_ODDS["format[group]"] * in_group
        eta = eta + TRUE_LOG_ODDS["phq9_baseline"] * baseline
        for name, values in (("condition", condition), ("problem_area", area)):
            for term, beta in TRUE_LOG_ODDS.items():
                if term.startswith(f"{name}["):
                    eta = eta + beta * (values == term[len(name) + 1:-1])
        return np.asarray(eta, dtype=float)

    p = expit(linear_predictor(group.astype(float)))
    codes, uniques = pd.factorize(pd.Series(cluster))
    shared = rng.random(len(uniques))[codes]
    u = np.where(rng.random(n) < 0.3, shared, rng.random(n))
    frame = make_outcomes([
        {"patient_id": f"P{i}", "condition": condition[i], "format": "group" if group[i]
         else "individual", "group_id": group_id[i], "therapist_id": therapist[i],
         "problem_area": area[i], "phq9_baseline": baseline[i], "phq9_response": bool(u[i] < p[i]),
         "finished_course": True, "started": True}
        for i in range(n)
    ])
    truth = float(expit(linear_predictor(np.ones(n))).mean()
                  - expit(linear_predictor(np.zeros(n))).mean())
    return frame, truth


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, float]:
    return simulate_clustered()


def test_gee_recovers_known_format_effect(simulated: tuple[pd.DataFrame, float]) -> None:
    frame, true_difference = simulated
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        result = adjusted_response(frame)
    assert not escaped
    table = result.table.set_index("term")
    assert list(result.table.columns) == ["term", "odds_ratio", "ci_low", "ci_high", "p_value"]
    assert set(table.index) == set(TRUE_LOG_ODDS)
    assert result.table["term"].iloc[0] == "Intercept"
    log_or = np.log(table["odds_ratio"])
    robust_se = (np.log(table["ci_high"]) - np.log(table["ci_low"])) / (2 * 1.959963984540054)
    for term, beta in TRUE_LOG_ODDS.items():
        assert abs(log_or[term] - beta) < 3 * robust_se[term], term
    assert result.n_patients == 3000 and result.n_clusters > 100
    std = result.standardised.set_index("quantity")
    assert list(std.index) == ["rate_individual", "rate_group", "risk_difference"]
    rd = std.loc["risk_difference"]
    assert rd["ci_low"] < true_difference < rd["ci_high"]
    assert rd["estimate"] == pytest.approx(
        std.loc["rate_group", "estimate"] - std.loc["rate_individual", "estimate"])
    observed = frame.groupby("format")["phq9_response"].mean()
    assert std.loc["rate_group", "estimate"] == pytest.approx(observed["group"], abs=0.03)


def test_gee_pools_tiny_levels_and_notes_it(simulated: tuple[pd.DataFrame, float]) -> None:
    frame = simulated[0].copy()
    frame.loc[frame.index[:5], "condition"] = "bipolar"
    frame.loc[frame.index[5:20], "condition"] = "eating_disorder"
    frame.loc[frame.index[20:35], "condition"] = "adjustment"
    result = adjusted_response(frame)
    terms = set(result.table["term"])
    assert "condition[other_pooled]" in terms  # 35 patients pooled
    assert not {"condition[bipolar]", "condition[eating_disorder]"} & terms
    assert any("adjustment, bipolar, eating_disorder pooled into other_pooled" in note
               for note in result.notes)


def test_gee_still_sparse_pool_merges_into_reference_and_fallback_reference(
    simulated: tuple[pd.DataFrame, float],
) -> None:
    frame = simulated[0].copy()
    frame.loc[frame.index[:5], "condition"] = "bipolar"
    frame = frame.loc[frame["problem_area"] != "role_disputes"]
    result = adjusted_response(frame, cluster="therapist_id")
    terms = set(result.table["term"])
    assert not any(term.startswith("condition[other_pooled") for term in terms)
    assert any("merged into reference major_depression" in note for note in result.notes)
    assert any("reference level role_disputes absent" in note for note in result.notes)
    assert sum(term.startswith("problem_area[") for term in terms) == 2


def test_gee_under_separation_is_not_estimable(simulated: tuple[pd.DataFrame, float]) -> None:
    """The baseline separates the outcome: statsmodels warns (PerfectSeparationWarning) and
    returns an odds ratio of about 1e22 as if converged; it is reported, not used."""
    frame = simulated[0].iloc[:600].copy()
    frame["phq9_response"] = (frame["phq9_baseline"] > 18).astype("boolean")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        with pytest.raises(NotEstimable, match=r"logistic GEE .* not used: the covariates "
                                               r"separate the outcome"):
            adjusted_response(frame)
    assert not escaped


def test_gee_that_did_not_converge_is_not_estimable(
        simulated: tuple[pd.DataFrame, float], monkeypatch: pytest.MonkeyPatch) -> None:
    """A tolerance no step can meet: statsmodels warns IterationLimitWarning and still
    returns estimates (``converged`` false); they are reported, not used."""
    import statsmodels.api as sm

    from pipeline.outcomes import comparison

    real_fit = sm.GEE.fit

    def unreachable(self: object, *args: object, **kwargs: object) -> object:
        return real_fit(self, *args, **{**kwargs, "ctol": 0.0})  # type: ignore[arg-type]

    monkeypatch.setattr(sm.GEE, "fit", unreachable)
    monkeypatch.setattr(comparison, "GEE_MAXITER", 3)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        with pytest.raises(NotEstimable, match=r"logistic GEE .* not used: the fit did not "
                                               r"converge in 3 iterations"):
            adjusted_response(simulated[0])
    assert not escaped


def test_cluster_robust_glm_that_did_not_converge_is_not_estimable(
        simulated: tuple[pd.DataFrame, float], monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry-scale route (independence GLM with cluster-robust SEs) is checked too."""
    from pipeline.outcomes import comparison

    frame = simulated[0]
    clusters = frame["therapist_id"].astype(str)
    y = frame["phq9_response"].astype(float)
    design = pd.DataFrame({"Intercept": 1.0, "phq9_baseline": frame["phq9_baseline"]})
    _params, _cov, notes = comparison._fit_gee(y, design, clusters, exchangeable_max=0)
    assert any("independence working correlation" in note for note in notes)
    monkeypatch.setattr(comparison, "GLM_MAXITER", 1)
    with pytest.raises(NotEstimable, match=r"logistic GLM \(cluster-robust SEs\) .* not "
                                           r"used: the fit did not converge in 1 iteration"):
        comparison._fit_gee(y, design, clusters, exchangeable_max=0)


def test_gee_without_both_formats_has_no_standardisation(
    simulated: tuple[pd.DataFrame, float],
) -> None:
    frame = simulated[0]
    individual = frame.loc[frame["format"] == "individual"]
    with pytest.raises(NotEstimable, match=r"only one format \(individual\)"):
        adjusted_response(individual)


def test_gee_is_not_estimable_without_the_outcome_or_its_variation(
    simulated: tuple[pd.DataFrame, float],
) -> None:
    frame = simulated[0]
    with pytest.raises(NotEstimable, match="no patient in the population has phq9_response"):
        adjusted_response(frame.assign(phq9_response=pd.NA))
    with pytest.raises(NotEstimable, match="phq9_response is true for all"):
        adjusted_response(frame.assign(phq9_response=True))
    with pytest.raises(NotEstimable, match="clusters for"):
        adjusted_response(frame.assign(therapist_id="t1", group_id=None,
                                       patient_id="same"), cluster="therapist_id")


# ------------------------------------------------------------------------- benchmarks


def constructed_rates() -> pd.DataFrame:
    rows = [
        # population, instrument, outcome, denominator, condition, format, n, events
        ("finished_course", "phq9+gad7", "recovery", "observed", "all", "all", 200, 140),
        ("finished_course", "phq9+gad7", "recovery", "itt", "all", "all", 250, 100),
        ("finished_course", "phq9", "response", "observed", "major_depression", "all", 200, 60),
        ("finished_course", "phq9", "response", "observed", "major_depression", "group",
         50, 45),
        ("finished_course", "gad7", "response", "observed", "major_depression", "all", 200, 180),
        ("finished_course", "phq9", "remission", "observed", "anxiety", "all", 20, 10),
        ("started", "phq9", "remission", "observed", "anxiety", "all", 40, 39),
    ]
    table = pd.DataFrame(rows, columns=RATE_COLUMNS[:8])
    table["rate"] = table["events"] / table["n"]
    table["ci_low"], table["ci_high"] = wilson_interval(table["events"], table["n"])
    return table


def test_benchmark_verdicts() -> None:
    benchmarks = pd.DataFrame({
        "condition": ["all", "major_depression", "anxiety", "dysthymia"],
        "outcome": ["recovery", "response", "remission", "response"],
        "rate": [0.5, 0.5, 0.45, 0.4],
        "source": ["national", "example", "example", "example"],
    })
    result = benchmark_comparison(constructed_rates(), benchmarks)
    assert list(result.columns) == [
        "condition", "outcome", "benchmark_rate", "source", "n", "events", "rate", "ci_low",
        "ci_high", "verdict",
    ]
    assert list(result["verdict"]) == ["above", "below", "around", "no data"]
    assert list(result["n"].iloc[:3]) == [200, 200, 20]
    assert result["rate"].iloc[1] == pytest.approx(0.3)
    itt = benchmark_comparison(constructed_rates(), benchmarks.iloc[:1], denominator="itt")
    assert list(itt["verdict"]) == ["below"]  # 100/250 = 0.40


def test_example_benchmarks_file() -> None:
    benchmarks = pd.read_csv(BENCHMARKS_CSV)
    assert list(benchmarks.columns) == ["condition", "outcome", "rate", "source"]
    national = benchmarks.query("condition == 'all' and outcome == 'recovery'")
    assert national["rate"].tolist() == [0.5]
    assert "NHS Talking Therapies" in national["source"].iloc[0]
    others = benchmarks.drop(national.index)
    assert len(others) >= 2
    assert others["source"].str.contains("illustrative example; replace").all()
    result = benchmark_comparison(constructed_rates(), benchmarks)
    assert result.loc[0, "verdict"] == "above"


# ------------------------------------------------------------------------- attendance


def test_attendance_summary_by_hand() -> None:
    def patient(pid: str, condition: str, fmt: str, scheduled: int, attended: int, dna: int,
                dropout: bool, started: bool = True) -> dict[str, Any]:
        return {"patient_id": pid, "condition": condition, "format": fmt,
                "sessions_scheduled": scheduled, "sessions_attended": attended,
                "sessions_did_not_attend": dna, "dropout": dropout, "started": started}

    frame = make_outcomes([
        patient("A1", "major_depression", "individual", 12, 10, 2, False),
        patient("A2", "major_depression", "individual", 8, 4, 3, True),
        patient("A3", "major_depression", "group", 16, 16, 0, False),
        patient("A4", "anxiety", "individual", 10, 6, 1, True),
        patient("A5", "anxiety", "individual", 2, 0, 2, False, started=False),
    ])
    summary = attendance_summary(frame)
    assert list(zip(summary["condition"], summary["format"], strict=True)) == [
        ("major_depression", "individual"), ("major_depression", "group"),
        ("major_depression", "all"), ("anxiety", "individual"), ("anxiety", "all"),
        ("all", "individual"), ("all", "group"), ("all", "all"),
    ]
    rows = summary.set_index(["condition", "format"])
    md_ind = rows.loc[("major_depression", "individual")]
    assert md_ind["patients"] == 2 and md_ind["sessions_attended_mean"] == 7.0
    # sd = sqrt(18), t(0.975, 1) = 12.7062, half-width = 12.7062 * sqrt(18) / sqrt(2) = 38.1186
    assert md_ind["sessions_attended_ci_low"] == pytest.approx(7 - 38.1186, abs=1e-3)
    assert md_ind["dna_rate"] == 0.25 and md_ind["dropout_rate"] == 0.5
    md_all = rows.loc[("major_depression", "all")]
    # values 10, 4, 16: sd 6, t(0.975, 2) = 4.302653, half-width 14.9048
    assert md_all["sessions_attended_ci_high"] == pytest.approx(10 + 14.9048, abs=1e-3)
    assert (md_all["dna_sessions"], md_all["scheduled_sessions"]) == (5, 36)
    overall = rows.loc[("all", "all")]
    assert overall["patients"] == 4 and overall["sessions_attended_mean"] == 9.0
    assert overall["dna_rate"] == pytest.approx(6 / 46)
    assert (overall["dropouts"], overall["dropout_rate"]) == (2, 0.5)
    assert overall["dropout_ci_low"] == pytest.approx(0.1500, abs=1e-4)  # Wilson 2/4
    assert overall["dropout_ci_high"] == pytest.approx(0.8500, abs=1e-4)
    single = rows.loc[("major_depression", "group")]
    assert np.isnan(single["sessions_attended_ci_low"]) and single["dna_rate"] == 0.0


def test_large_n_route_is_the_independence_gee() -> None:
    """Above the size limit the fit is the GLM with cluster-robust SEs, which must equal
    statsmodels' GEE with an independence working correlation (same estimator)."""
    import statsmodels.api as sm

    from pipeline.outcomes.comparison import _fit_gee

    rng = np.random.default_rng(3)
    n = 600
    design = pd.DataFrame({"Intercept": 1.0, "x": rng.normal(size=n),
                           "format[group]": rng.integers(0, 2, n).astype(float)})
    clusters = pd.Series(rng.integers(0, 60, n))
    logit = -0.3 + 0.8 * design["x"] - 0.5 * design["format[group]"]
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))
    params, cov, notes = _fit_gee(y, design, clusters, exchangeable_max=100)
    gee = sm.GEE(y.astype(float), design, groups=pd.factorize(clusters)[0],
                 family=sm.families.Binomial(),
                 cov_struct=sm.cov_struct.Independence()).fit(cov_type="robust")
    np.testing.assert_allclose(params.to_numpy(), np.asarray(gee.params), rtol=1e-6)
    # GLM's cluster covariance applies the small-sample factor G/(G-1) * (N-1)/(N-K)
    factor = (60 / 59) * ((n - 1) / (n - 3))
    np.testing.assert_allclose(np.diag(cov.to_numpy()),
                               factor * np.diag(np.asarray(gee.cov_params())), rtol=1e-4)
    assert any("independence working correlation" in note for note in notes)


def test_a_missing_count_is_not_shown_as_small() -> None:
    table = pd.DataFrame({"n": pd.array([pd.NA, 3, 20], dtype="Int64"),
                          "events": pd.array([pd.NA, 1, 10], dtype="Int64"),
                          "rate": [np.nan, 1 / 3, 0.5]})
    shared = suppress_small_counts(table)
    assert pd.isna(shared.loc[0, "n"]) and pd.isna(shared.loc[0, "events"])
    assert shared.loc[1, "n"] == "<5" and shared.loc[2, "n"] == 20


@pytest.mark.parametrize("n", [7, 9, 12, 14, 20, 1000])
def test_wilson_bounds_are_exact_at_zero_and_all(n: int) -> None:
    """At 0/n and n/n the interval touches 0 and 1 exactly (no 1e-16 beyond the rate)."""
    low, high = wilson_interval([0, n], [n, n])
    assert low[0] == 0.0 and high[1] == 1.0
    assert 0 < high[0] < 1 and 0 < low[1] < 1


def test_cluster_ids_fall_back_for_group_patients_without_group_id() -> None:
    """G1 patients cluster by group; a group patient without group_id falls back to the
    therapist (P3) or to itself (P4); the note says the SEs ignore group clustering."""
    data = pd.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4", "P5"],
        "format": ["group", "group", "group", "group", "individual"],
        "group_id": ["G1", "G1", None, None, None],
        "therapist_id": ["T1", "T1", "T1", None, "T2"],
    })
    ids, notes = comparison._cluster_ids(data, "auto")
    assert ids.tolist() == ["group:G1", "group:G1", "therapist:T1", "patient:P4",
                            "therapist:T2"]
    assert len(notes) == 1
    assert notes[0].startswith("2 group-format patients without a group_id clustered by "
                               "therapist")
    assert "ignore clustering within therapy groups and are likely too small" in notes[0]
    complete = data.assign(group_id=["G1", "G1", "G2", "G2", None])
    assert comparison._cluster_ids(complete, "auto")[1] == []


def test_gee_notes_group_patients_without_group_id(
    simulated: tuple[pd.DataFrame, float],
) -> None:
    frame = simulated[0].copy()
    in_group = frame.index[frame["format"] == "group"]
    frame.loc[in_group[:40], "group_id"] = None
    result = adjusted_response(frame)
    note = [n for n in result.notes if "without a group_id" in n]
    assert note and note[0].startswith("40 group-format patients without a group_id")
    assert "likely too small" in note[0]
    assert not any("without a group_id" in n for n in adjusted_response(simulated[0]).notes)


def test_gee_without_any_known_outcome_is_not_estimable(
    simulated: tuple[pd.DataFrame, float],
) -> None:
    frame = simulated[0].assign(phq9_response=pd.array([pd.NA] * 3000, dtype="boolean"))
    with pytest.raises(NotEstimable, match="no patient in the population has phq9_response"):
        adjusted_response(frame)
