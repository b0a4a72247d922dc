"""Clinic audit: case-mix adjustment, funnels, benchmarks, not-on-track patients, privacy.

The fixture is a simulated service (fixed seed) of six sites with three therapists each:
S5 treats more severe patients but is as good as the others given severity; S6 is truly
worse (log-odds of recovery 1.2 lower at the same severity). A tiny site S7 (3 patients)
and a therapist with 2 patients at S1 force small-number suppression, and patients still
in treatment include one constructed far above the expected curve and one on track.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from scipy import stats

from pipeline import config
from pipeline.audit import review as audit
from pipeline.outcomes import definitions as outcomes
from pipeline.outcomes import rates
from pipeline.report import audit_plots
from pipeline.sharing import pseudonyms as privacy

KEY = b"audit-test-key"
OTHER_KEY = b"another-key"
SEVERE, WORSE, TINY = "S5", "S6", "S7"
FAR, ON_TRACK = "P09998", "P09999"
START = pd.Timestamp("2024-01-08")
CONDITIONS = ("major_depression", "anxiety", "dysthymia")
AREAS = ("grief", "role_disputes", "role_transitions", "interpersonal_deficits")
SITE_SHIFT = {SEVERE: 5.0}  # PHQ-9 points added to the baseline
SITE_EFFECT = {WORSE: -1.2}  # log-odds of recovery at the same severity
OPTIONS = audit.AuditOptions(key=KEY, bootstrap_resamples=200, max_model_patients=300)


def _patient(pid: str, site: str, therapist: str, start: pd.Timestamp, end: pd.Timestamp | None,
             rng: np.random.Generator) -> dict[str, object]:
    return {
        "patient_id": pid, "site_id": site, "therapist_id": therapist,
        "condition": CONDITIONS[int(rng.integers(0, 3))], "format": "individual",
        "group_id": None, "problem_area": AREAS[int(rng.integers(0, 4))],
        "secondary_problem_area": None, "referral_date": start - pd.Timedelta(days=14),
        "start_date": start, "end_date": end,
        "end_reason": "completed" if end is not None else "ongoing",
        "age": float(rng.integers(18, 70)), "sex": "female",
    }


def _sessions(pid: str, start: pd.Timestamp, phq: list[float],
              gad: list[float]) -> list[dict[str, object]]:
    """Session 0 (assessment, a week before the start), then weekly treatment sessions."""
    rows = []
    for k, (p, g) in enumerate(zip(phq, gad, strict=True)):
        date = start - pd.Timedelta(days=7) if k == 0 else start + pd.Timedelta(days=7 * (k - 1))
        rows.append({"patient_id": pid, "session_number": k, "session_date": date,
                     "attendance": "attended", "phq9": float(p), "gad7": float(g),
                     "hamd17": np.nan, "bdi2": np.nan})
    return rows


def _course(baseline: float, end: float, sessions: int, rng: np.random.Generator,
            top: int) -> list[float]:
    """Baseline, then a noisy straight line to ``end`` at the 8th treatment session."""
    path = [baseline + (end - baseline) * k / 8 + rng.normal(0, 1) for k in range(1, sessions)]
    path = [float(np.clip(round(v), 0, top)) for v in path]
    return [baseline, *path, *([end] if sessions == 9 else [])]


def _finished(pid: str, site: str, therapist: str, rng: np.random.Generator
              ) -> tuple[dict[str, object], list[dict[str, object]]]:
    phq0 = float(np.clip(round(rng.normal(14, 4) + SITE_SHIFT.get(site, 0.0)), 0, 27))
    gad0 = float(np.clip(round(0.6 * phq0 + rng.normal(3, 2)), 0, 21))
    logit = 1.2 - 0.3 * (phq0 - 14) - 0.15 * (gad0 - 11.4) + SITE_EFFECT.get(site, 0.0)
    recovered = rng.random() < 1 / (1 + math.exp(-logit))
    phq_end = float(rng.integers(0, 10) if recovered else rng.integers(10, 20))
    gad_end = float(rng.integers(0, 8) if recovered else rng.integers(8, 16))
    start = START + pd.Timedelta(days=int(rng.integers(0, 300)))
    end = start + pd.Timedelta(days=49)
    rows = _sessions(pid, start, _course(phq0, phq_end, 9, rng, 27),
                     _course(gad0, gad_end, 9, rng, 21))
    return _patient(pid, site, therapist, start, end, rng), rows


def _ongoing(pid: str, site: str, therapist: str, phq: list[float], gad: list[float],
             rng: np.random.Generator) -> tuple[dict[str, object], list[dict[str, object]]]:
    start = START + pd.Timedelta(days=400)
    return _patient(pid, site, therapist, start, None, rng), _sessions(pid, start, phq, gad)


def simulate(seed: int = 20261122) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients and sessions of the simulated service (see the module docstring)."""
    rng = np.random.default_rng(seed)
    people: list[dict[str, object]] = []
    visits: list[dict[str, object]] | pd.DataFrame = []
    plan = [(f"S{s}", f"T{3 * (s - 1) + t:02d}") for s in range(1, 7) for t in range(1, 4)]
    plan = [unit for unit in plan for _ in range(100)]
    plan += [(TINY, "T19")] * 3 + [("S1", "T20")] * 2
    for i, (site, therapist) in enumerate(plan, start=1):
        person, rows = _finished(f"P{i:05d}", site, therapist, rng)
        people.append(person)
        visits += rows
    for j in range(30):
        site, therapist = plan[int(rng.integers(0, 1800))]
        phq = _course(15.0, float(rng.integers(3, 12)), int(rng.integers(4, 8)), rng, 27)
        person, rows = _ongoing(f"P{9000 + j:05d}", site, therapist, phq, [10.0] * len(phq),
                                rng)
        people.append(person)
        visits += rows
    constructed = ((FAR, [15, 16, 19, 22, 24, 26, 27]), (ON_TRACK, [15, 14, 12, 10, 8, 6, 4]))
    for pid, scores in constructed:
        person, rows = _ongoing(pid, "S2", "T04", [float(v) for v in scores], [10.0] * 7, rng)
        people.append(person)
        visits += rows
    visits = pd.DataFrame(visits)
    # outcomes.derive fails when an instrument has no score at all: give one patient some
    first = visits["patient_id"] == "P00001"
    visits.loc[first, ["hamd17", "bdi2"]] = [[20.0, 30.0]] + [[np.nan, np.nan]] * (
        int(first.sum()) - 2) + [[10.0, 15.0]]
    patients = pd.DataFrame(people)
    for column in ("referral_date", "start_date", "end_date"):
        patients[column] = pd.to_datetime(patients[column])
    return patients, visits


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    patients, sessions = simulate()
    patient_outcomes = outcomes.derive(patients, sessions, config.from_mapping(None))
    return patients, sessions, patient_outcomes


@pytest.fixture(scope="module")
def result(study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> audit.AuditResult:
    return audit.review(*study, config.from_mapping(None), OPTIONS)


@pytest.fixture(scope="module")
def unsuppressed(study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> audit.AuditResult:
    options = dataclasses.replace(OPTIONS, no_suppress=True)
    return audit.review(*study, config.from_mapping(None), options)


def _row(table: pd.DataFrame, unit: str, column: str = "unit") -> pd.Series:
    row = table.set_index(column).loc[unit]
    assert isinstance(row, pd.Series)
    return row


# --------------------------------------------------------------------------------------
# Case mix and funnels
# --------------------------------------------------------------------------------------


def test_fixture_severe_site_looks_worse_before_adjustment(
        unsuppressed: audit.AuditResult) -> None:
    sites = unsuppressed.tables["audit_sites"]
    overall = float(_row(sites, "all")["recovery_rate"])
    for site in (SEVERE, WORSE):  # both crude Wilson intervals lie below the overall rate
        assert float(_row(sites, site)["recovery_ci_high"]) < overall


def test_case_mix_flags_the_truly_worse_site_only(unsuppressed: audit.AuditResult) -> None:
    sites = unsuppressed.tables["audit_sites"]
    worse, severe = _row(sites, WORSE), _row(sites, SEVERE)
    assert worse["oe_ci_high"] < 1
    assert severe["oe_ci_low"] < 1 < severe["oe_ci_high"]
    outliers = unsuppressed.tables["audit_outliers"]
    site_hits = outliers[outliers["level"] == "site"].set_index("unit")["limit_hit"]
    assert site_hits[WORSE].startswith("below_")
    assert SEVERE not in site_hits.index
    assert site_hits[TINY] == "too_small"


def test_expected_counts_add_up_and_standardised_rate(unsuppressed: audit.AuditResult) -> None:
    sites = unsuppressed.tables["audit_sites"].set_index("unit")
    units = sites.drop(index="all")
    # a logistic model with an intercept reproduces the total: sum E = sum O
    assert units["expected"].sum() == pytest.approx(units["recovery_events"].sum())
    overall = float(_row(unsuppressed.tables["audit_sites"], "all")["recovery_rate"])
    ratio = units["recovery_events"] / units["expected"]
    assert np.allclose(units["oe_ratio"], ratio)
    assert np.allclose(units["adjusted_rate"], ratio * overall)


@pytest.mark.parametrize("force", ["iteration limit", "separation"])
def test_case_mix_model_that_is_not_usable_is_reported_not_used(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], force: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A case-mix model that did not converge (one IRLS iteration allowed), or whose
    covariates separate recovery, is not used: expected recoveries fall back to the overall
    rate (O/E then unadjusted, and said so), and the audit records the model as not
    estimable."""
    from pipeline.audit import case_mix

    patients, sessions, patient_outcomes = study
    if force == "iteration limit":
        monkeypatch.setattr(case_mix, "GLM_MAXITER", 1)
        reason = "the fit did not converge in 1 iteration"
    else:  # recovery decided by the PHQ-9 baseline alone
        recovered = patient_outcomes["phq9_baseline"] < 15
        patient_outcomes = patient_outcomes.assign(
            recovery=patient_outcomes["recovery"].mask(patient_outcomes["recovery"].notna(),
                                                       recovered))
        reason = "the covariates separate the outcome"
    options = dataclasses.replace(OPTIONS, no_suppress=True, max_model_patients=100)
    result = audit.review(patients, sessions, patient_outcomes, config.from_mapping(None),
                          options)
    record = next(r for r in result.records if r.analysis == "case-mix model")
    assert record.status == "not estimable" and reason in record.reason
    assert any(m.startswith(case_mix.CASE_MIX_NOT_USED) and "NOT adjusted" in m
               for m in result.messages)
    sites = result.tables["audit_sites"].set_index("unit")
    overall = float(sites.loc["all", "recovery_rate"])
    units = sites.drop(index="all")
    assert np.allclose(units["expected"], units["recovery_n"] * overall)
    assert np.allclose(units["adjusted_rate"], units["recovery_rate"])


def test_case_mix_model_that_converges_leaves_no_record(result: audit.AuditResult) -> None:
    assert not any(r.analysis == "case-mix model" for r in result.records)


def test_poisson_ratio_interval_exact() -> None:
    low, high = audit.poisson_ratio_interval([0, 10, 25], [2.0, 10.0, 20.0])
    assert low[0] == 0 and high[0] == pytest.approx(stats.chi2.ppf(0.975, 2) / 2 / 2)
    assert (low[1], high[1]) == pytest.approx((0.4795, 1.8390), abs=1e-4)
    assert low[2] == pytest.approx(stats.chi2.ppf(0.025, 50) / 2 / 20)


def test_funnel_figures_and_summary(result: audit.AuditResult) -> None:
    assert set(audit_plots.review_figures(result.figure_data)) == {"funnel_sites",
                                                                   "funnel_therapists"}
    summary = result.tables["audit_funnel_summary"].set_index("level")
    assert summary.loc["site", "units_on_funnel"] == 6  # S7 is too small
    assert any(m.startswith("funnel (sites)") for m in result.messages)


# --------------------------------------------------------------------------------------
# Per-unit statistics and benchmarks
# --------------------------------------------------------------------------------------


def test_effect_size_by_hand_and_seeded_bootstrap() -> None:
    pre, post = [10.0, 12.0, 14.0], [5.0, 6.0, 10.0]  # means 12 and 7, SD(pre) = 2
    first = audit.bootstrap_effect_size(pre, post, 300, np.random.default_rng(1))
    again = audit.bootstrap_effect_size(pre, post, 300, np.random.default_rng(1))
    assert first[0] == pytest.approx(2.5) and first == again
    assert first[1] <= first[2]
    assert all(math.isnan(v) for v in audit.bootstrap_effect_size([3.0], [1.0], 10,
                                                                  np.random.default_rng(1)))


def test_unit_rates_and_completeness(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
        unsuppressed: audit.AuditResult) -> None:
    patients = study[0][study[0]["site_id"] == "S1"]
    sites = unsuppressed.tables["audit_sites"].set_index("unit")
    s1 = sites.loc["S1"]
    low, high = rates.wilson_interval(s1["recovery_events"], s1["recovery_n"])
    assert s1["recovery_ci_low"] == pytest.approx(float(low))
    assert s1["recovery_ci_high"] == pytest.approx(float(high))
    assert s1["referred"] == len(patients) == s1["started"]
    assert s1["finished_course"] == patients["end_date"].notna().sum() == 302
    assert s1["completeness"] == 1.0 and bool(s1["meets_completeness_standard"])
    assert s1["attendance_rate"] == 1.0 and s1["dna_rate"] == 0.0
    assert sites.drop(index="all")["referred"].sum() == sites.loc["all", "referred"]


def test_benchmark_verdicts_follow_intervals_and_bands(result: audit.AuditResult) -> None:
    table = result.tables["audit_benchmarks"]
    recovery = table[(table["measure"] == "recovery_rate") & table["estimate"].notna()]
    for low, high, verdict in zip(recovery["ci_low"].to_numpy(dtype=float),
                                  recovery["ci_high"].to_numpy(dtype=float),
                                  recovery["verdict"], strict=True):
        assert verdict == ("above" if low > 0.5 else "below" if high < 0.5 else "around")
    phq = table[(table["measure"] == "phq9_effect_size") & table["estimate"].notna()]
    for low, high, verdict in zip(phq["ci_low"].to_numpy(dtype=float),
                                  phq["ci_high"].to_numpy(dtype=float), phq["verdict"],
                                  strict=True):
        # the interval decides, as for recovery (never the point estimate alone)
        assert verdict == ("high" if low >= 0.91 else "above_average" if low >= 0.73
                           else "poor" if high < 0.46 else "below_average" if high < 0.73
                           else "around_average")
    tiny = table[(table["unit"] == TINY) & (table["measure"] == "recovery_rate")]
    assert tiny["verdict"].iloc[0] == "suppressed"


def test_the_whole_service_is_one_number_in_both_unit_tables(
        unsuppressed: audit.AuditResult) -> None:
    sites = unsuppressed.tables["audit_sites"].set_index("unit")
    therapists = unsuppressed.tables["audit_therapists"].set_index("unit")
    if sites.loc["all", "phq9_es_n"] == therapists.loc["all", "phq9_es_n"]:
        for column in ("phq9_effect_size", "phq9_es_ci_low", "phq9_es_ci_high"):
            assert sites.loc["all", column] == therapists.loc["all", column], column


def test_only_declared_columns(result: audit.AuditResult) -> None:
    declared = list(audit.unit_columns(("phq9", "gad7")))
    assert list(result.tables["audit_sites"].columns) == declared
    assert list(result.tables["audit_therapists"].columns) == declared
    assert list(result.tables["audit_outliers"].columns) == list(audit.OUTLIER_COLUMNS)
    assert list(result.tables["audit_benchmarks"].columns) == list(audit.BENCHMARK_COLUMNS)
    assert list(result.tables["not_on_track"].columns) == list(audit.NOT_ON_TRACK_COLUMNS)


# --------------------------------------------------------------------------------------
# Suppression
# --------------------------------------------------------------------------------------


def test_protect_cells_by_hand() -> None:
    mask, ok = audit.protect_cells([3, 12, 40], [True, False, False], [True, False, False], 4)
    assert mask.tolist() == [True, True, False] and ok
    # two small cells 2 and 3 (sum 5) cannot be told apart: nothing more to hide
    mask, ok = audit.protect_cells([2, 3, 40], [True, True, False], [True, True, False], 4)
    assert mask.tolist() == [True, True, False] and ok
    # 1 and 1 (sum 2) would both be pinned to 1: hide a third cell
    mask, ok = audit.protect_cells([1, 1, 40], [True, True, False], [True, True, False], 4)
    assert mask.tolist() == [True, True, True] and ok
    # 1 and 5 only: 6 = a + b with a in 1..4 and b >= 5 pins a = 1; nothing left to hide
    mask, ok = audit.protect_cells([1, 5], [True, False], [True, False], 4)
    assert not ok
    # zero cells are never used to protect (a hidden 0 would give the small cell away)
    mask, ok = audit.protect_cells([3, 0, 9], [True, False, False], [True, False, False], 4)
    assert mask.tolist() == [True, False, True]


def test_audit_column_stops_a_site_being_rebuilt_from_its_therapists() -> None:
    # therapists T1 (site S1) = 3, T2, T3 (S2) = 20, 30, T4 (S3) = 60, total 113 (index 4);
    # sites S1 = 3, S2 = 50, S3 = 60, total 113 (indices 5-8). Hiding S1 and S2 among the
    # sites is not enough: S2 = T2 + T3 is shown, so S1 = 113 - 50 - 60.
    values = [3, 20, 30, 60, 113, 3, 50, 60, 113]
    relations = [audit.Relation(np.array(m), t) for m, t in (
        ([0, 1, 2, 3], 4), ([5, 6, 7], 8), ([4], 8), ([0], 5), ([1, 2], 6), ([3], 7))]
    primary = [True, False, False, False, False, True, False, False, False]
    hidden = [True, False, False, False, False, True, True, False, False]
    mask, pinned = audit.audit_column(values, hidden, primary, relations, 4)
    assert pinned == 0
    assert mask.tolist() == [True, True, False, False, False, True, True, False, False]


def _hidden(value: object) -> bool:
    return isinstance(value, str)


def _groups(shared: dict[str, pd.DataFrame]) -> list[tuple[pd.DataFrame, pd.Series]]:
    """(cells, total row) pairs whose total is published."""
    sites = shared["audit_sites"].set_index("unit")
    therapists = shared["audit_therapists"].set_index("unit")
    pairs = [(sites.drop(index="all"), _row(shared["audit_sites"], "all")),
             (therapists.drop(index="all"), _row(shared["audit_therapists"], "all"))]
    cells = therapists.drop(index="all")
    for site, members in cells.groupby("site_id"):
        pairs.append((members, _row(shared["audit_sites"], str(site))))
    return pairs


def test_no_small_count_leaks_through_complementary_cells(
        result: audit.AuditResult, unsuppressed: audit.AuditResult) -> None:
    counts = ["referred", "started", "finished_course", "recovery_n", "recovery_events",
              "reliable_deterioration_events", "dropouts", "phq9_es_n", "paired_n"]
    shared = {k: result.tables[k] for k in ("audit_sites", "audit_therapists")}
    truth = {k: unsuppressed.tables[k].set_index("unit") for k in shared}
    primary_seen = {"audit_sites": 0, "audit_therapists": 0}
    for cells, total in _groups(shared):
        name = "audit_sites" if cells["level"].iloc[0] == "site" else "audit_therapists"
        for column in counts:
            if _hidden(total[column]):
                continue
            shown = cells[column].map(lambda v: not _hidden(v))
            residual = int(total[column]) - int(cells.loc[shown, column].astype(int).sum())
            hidden_units = list(cells.index[~shown])
            true_values = [int(truth[name].loc[u, column]) for u in hidden_units]
            assert residual == sum(true_values)  # what a reader can work out
            for unit, value in zip(hidden_units, true_values, strict=True):
                if cells.loc[unit, column] == "<5":
                    primary_seen[name] += 1
                    assert 1 <= value <= 4
                    assert len(hidden_units) >= 2 and residual > value
    assert primary_seen["audit_sites"] > 0 and primary_seen["audit_therapists"] > 0


def test_hidden_site_cannot_be_rebuilt_from_its_therapists(
        result: audit.AuditResult, unsuppressed: audit.AuditResult) -> None:
    sites = result.tables["audit_sites"].set_index("unit")
    therapists = result.tables["audit_therapists"]
    truth = unsuppressed.tables["audit_therapists"]
    for column in ("referred", "finished_course", "recovery_n", "recovery_events", "dropouts"):
        for site, cell in sites[column].drop(index="all").items():
            members = therapists[therapists["site_id"] == site][column]
            true_sum = truth[truth["site_id"] == site][column].astype(int).sum()
            if _hidden(cell) and true_sum == int(_row(unsuppressed.tables["audit_sites"],
                                                      str(site))[column]):
                assert members.map(_hidden).any(), (column, site)


def test_small_units_suppressed_and_rates_blanked(result: audit.AuditResult) -> None:
    tiny = _row(result.tables["audit_sites"], TINY)
    assert tiny["referred"] == "<5" and tiny["recovery_n"] in ("<5", 0)
    assert math.isnan(tiny["adjusted_rate"]) and bool(tiny["suppressed"])
    secondary = result.tables["audit_sites"]["referred"] == audit.SECONDARY
    assert secondary.sum() >= 1  # another site hidden so S7 cannot be worked back


def test_audit_without_therapist_ids(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    patients = study[0].drop(columns="therapist_id")
    patient_outcomes = study[2].drop(columns="therapist_id")
    options = dataclasses.replace(OPTIONS, bootstrap_resamples=50, max_model_patients=100)
    result = audit.review(patients, study[1], patient_outcomes, config.from_mapping(None),
                          options)
    assert result.tables["audit_therapists"]["unit"].tolist() == ["all"]
    assert result.tables["not_on_track"]["therapist_id"].isna().all()
    assert "funnel (therapists): no unit large enough to place on the funnel" in result.messages


# --------------------------------------------------------------------------------------
# Pseudonyms
# --------------------------------------------------------------------------------------


def _all_text(result: audit.AuditResult) -> list[str]:
    cells = [str(v) for table in result.tables.values() for v in table.to_numpy().ravel()]
    cells += [str(c) for table in result.tables.values() for c in table.columns]
    for figure in audit_plots.review_figures(result.figure_data).values():
        cells += [t.get_text() for t in figure.findobj(Text)]
    return cells + list(result.messages)


def test_no_raw_patient_or_therapist_id_in_any_output(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
        result: audit.AuditResult) -> None:
    text = "\n".join(_all_text(result))
    patient_ids = study[0]["patient_id"].tolist()
    assert not [pid for pid in patient_ids if pid in text]
    therapist_ids = set(study[0]["therapist_id"])
    assert not [t for t in therapist_ids if t in text]
    assert result.tables["not_on_track"]["patient_id"].str.match(r"p_[0-9a-f]{16}$").all()


def test_pseudonyms_stable_with_key_and_different_with_another(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], result: audit.AuditResult,
        unsuppressed: audit.AuditResult) -> None:
    # ``unsuppressed`` is a second run with the same key (suppression does not touch ids)
    other = audit.review(*study, config.from_mapping(None),
                         dataclasses.replace(OPTIONS, key=None), key=OTHER_KEY)
    first_ids = set(result.tables["not_on_track"]["patient_id"])
    assert first_ids == set(unsuppressed.tables["not_on_track"]["patient_id"])
    assert not first_ids & set(other.tables["not_on_track"]["patient_id"])
    assert privacy.pseudonym(FAR, KEY) in first_ids
    units = set(result.tables["audit_therapists"]["unit"])
    assert units == set(unsuppressed.tables["audit_therapists"]["unit"])
    assert units & set(other.tables["audit_therapists"]["unit"]) == {"all"}


def test_key_required_unless_ids_kept(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    with pytest.raises(ValueError, match="key"):
        audit.review(*study, config.from_mapping(None), audit.AuditOptions())
    assert "k3y" not in repr(audit.AuditOptions(key=b"k3y"))


# --------------------------------------------------------------------------------------
# Not on track
# --------------------------------------------------------------------------------------


def test_recovery_curve_band_by_hand() -> None:
    curve = audit.RecoveryCurve((10.0, -0.5, 0.8, 0.0), (4.0, 0.0, 0.04), 4.0, 15.0)
    # week 4, baseline 15: 10 - 0.5 * 4 = 8; variance 4 + 16 * 0.04 + 4 = 8.64
    assert curve.expected([4.0], [15.0])[0] == pytest.approx(8.0)
    assert curve.upper([4.0], [15.0])[0] == pytest.approx(8 + 1.644854 * math.sqrt(8.64))
    latest = pd.DataFrame({"patient_id": ["a", "b"], "site_id": "S1", "therapist_id": "T1",
                           "session_number": [5, 5], "weeks": [4.0, 4.0],
                           "baseline": [15.0, 15.0], "score": [20.0, 8.0]})
    flags = audit.flag_not_on_track(latest, curve, audit.AuditOptions())
    assert flags["flagged"].tolist() == [True, False]
    assert flags["sessions_remaining"].tolist() == [11, 11]


def test_not_on_track_flags_the_patient_far_above_the_band(
        result: audit.AuditResult) -> None:
    table = result.tables["not_on_track"]
    far = _row(table, privacy.pseudonym(FAR, KEY), "patient_id")
    on_track = _row(table, privacy.pseudonym(ON_TRACK, KEY), "patient_id")
    assert len(table) == 32  # everyone still in treatment
    assert bool(far["flagged"]) and float(far["score"]) > float(far["upper_bound"])
    assert not bool(on_track["flagged"])
    assert float(on_track["score"]) < float(on_track["expected"])
    assert far["session_number"] == 6 and far["sessions_remaining"] == 10
    assert any(m.startswith("not on track:") and "of 32 patients" in m for m in result.messages)
    assert not any("ConvergenceWarning" in m for m in result.messages)


def test_not_on_track_keeps_ids_when_asked(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    patients, sessions, patient_outcomes = study
    options = dataclasses.replace(OPTIONS, keep_ids=True, max_model_patients=100)
    table, _notes = audit.not_on_track(patients, sessions, patient_outcomes,
                                       config.from_mapping(None), options)
    assert {FAR, ON_TRACK} <= set(table["patient_id"])


def test_recovery_curve_that_did_not_converge_is_reported_not_used(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.trajectories import engines

    real_fit = engines.fit

    def unconverged(*args: object, **kwargs: object) -> object:
        fitted = real_fit(*args, **kwargs)  # type: ignore[arg-type]
        diagnostics = fitted.diagnostics.assign(converged=False)
        return dataclasses.replace(fitted, diagnostics=diagnostics)

    monkeypatch.setattr(engines, "fit", unconverged)
    options = dataclasses.replace(OPTIONS, max_model_patients=100)
    result = audit.review(*study, config.from_mapping(None), options)
    record = next(r for r in result.records if r.analysis == "not_on_track")
    assert record.status == "not estimable" and "did not converge" in record.reason
    assert "not_on_track" not in result.tables
    assert any(m.startswith("not on track: not estimable") and "did not converge" in m
               for m in result.messages)


def test_funnel_figure_data_leaves_out_hidden_units(result: audit.AuditResult) -> None:
    units = result.figure_data["funnel_units"]
    limits = result.figure_data["funnel_limits"]
    assert set(units["level"]) == {"site", "therapist"}
    assert set(limits["limit"]) == set(OPTIONS.funnel_levels)
    sites = units[units["level"] == "site"].set_index("label")
    assert not sites.loc["S7", "drawn"]  # too small for the funnel
    shared = result.tables["audit_therapists"]
    hidden = set(shared.loc[shared["recovery_n"].map(lambda v: isinstance(v, str)), "unit"])
    drawn = set(units.loc[(units["level"] == "therapist") & units["drawn"], "label"])
    assert not hidden & drawn
