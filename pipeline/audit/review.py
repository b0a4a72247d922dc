r"""Clinic outcome audit: sites and therapists compared after case-mix adjustment, funnel
plots, benchmarks, patients not on track, and privacy by default.

:func:`review` runs the audit and returns an :class:`AuditResult` (tables, messages,
analysis records and the data of the funnel figures, which are drawn on the report side by
``pipeline.report.audit_plots.stage_figures``). The methods are in the modules:

``pipeline.audit.units``
    Per-unit counts, NHS Talking Therapies rates with Wilson intervals and pre-post effect
    sizes with bootstrap intervals.
``pipeline.audit.case_mix``
    Case-mix expected recovery (logistic model) and exact Poisson O/E intervals.
``pipeline.audit.verdicts``
    Funnel placement (``pipeline.audit.funnels``), outliers and benchmark verdicts.
``pipeline.audit.not_on_track``
    The expected recovery curve and the patients above its band.
``pipeline.audit.suppression``
    Primary and secondary suppression of the per-unit tables.

Privacy by default
    Patient ids are replaced by keyed pseudonyms (``pipeline.sharing.pseudonyms``: HMAC-SHA-256),
    therapist ids too unless ``pseudonymise_therapists=False``; rows are ordered by the
    pseudonyms so the order of the raw ids does not show.
    Small counts are hidden (``pipeline.audit.suppression``) and figures show only units
    whose counts are shown. Only the declared columns reach the outputs; no free text is
    copied from the input.

References
----------
NHS England (2024). NHS Talking Therapies for anxiety and depression manual, v7.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from pipeline.audit import funnels as funnel
from pipeline.audit.case_mix import case_mix_expected as case_mix_expected
from pipeline.audit.case_mix import case_mix_problem
from pipeline.audit.case_mix import poisson_ratio_interval as poisson_ratio_interval
from pipeline.audit.columns import (
    ALL as ALL,
)
from pipeline.audit.columns import (
    BENCHMARK_COLUMNS as BENCHMARK_COLUMNS,
)
from pipeline.audit.columns import (
    FUNNEL_SUMMARY_COLUMNS as FUNNEL_SUMMARY_COLUMNS,
)
from pipeline.audit.columns import (
    LEVELS as LEVELS,
)
from pipeline.audit.columns import (
    NOT_ON_TRACK_COLUMNS as NOT_ON_TRACK_COLUMNS,
)
from pipeline.audit.columns import (
    OUTCOMES as OUTCOMES,
)
from pipeline.audit.columns import (
    OUTLIER_COLUMNS as OUTLIER_COLUMNS,
)
from pipeline.audit.columns import (
    POOLED as POOLED,
)
from pipeline.audit.columns import (
    STAGE as STAGE,
)
from pipeline.audit.columns import (
    unit_columns as unit_columns,
)
from pipeline.audit.not_on_track import RecoveryCurve as RecoveryCurve
from pipeline.audit.not_on_track import fit_recovery_curve as fit_recovery_curve
from pipeline.audit.not_on_track import flag_not_on_track as flag_not_on_track
from pipeline.audit.not_on_track import not_on_track as not_on_track
from pipeline.audit.suppression import _shown
from pipeline.audit.suppression import suppress_levels as suppress_levels
from pipeline.audit.units import bootstrap_effect_size as bootstrap_effect_size
from pipeline.audit.units import unit_table as unit_table
from pipeline.audit.verdicts import _dispersion_message, _funnel, _funnel_summary, _outliers
from pipeline.audit.verdicts import benchmarks as benchmarks
from pipeline.config import Audit, StudyConfig
from pipeline.estimability import NOT_ESTIMABLE, AnalysisRecord, attempt, require
from pipeline.sharing import pseudonyms as privacy
from pipeline.sharing.suppression import SECONDARY as SECONDARY
from pipeline.sharing.suppression import Relation as Relation
from pipeline.sharing.suppression import audit_column as audit_column
from pipeline.sharing.suppression import protect_cells as protect_cells

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditOptions(Audit):
    """Options of the clinic audit: the analysis options of the study config's ``audit``
    section (``pipeline.config.Audit``) plus the privacy options of the run; every default
    carries its source.

    Parameters
    ----------
    key : bytes or None
        Pseudonym key (``pipeline.io.load_or_create_key``); required unless ``keep_ids``.
        Never shown in ``repr``.
    keep_ids : bool
        Keep raw patient and therapist ids (for the service's own use, not for sharing).
    pseudonymise_therapists : bool
        Replace therapist ids by keyed pseudonyms (``t_...``). Default True: privacy by
        default; the service can recompute a therapist's pseudonym with the key.
    no_suppress : bool
        Show small counts (for researchers on their own data, not for sharing).
    recovery_target : float
        0.50: NHS Talking Therapies national recovery standard (NHS England 2024).
    effect_size_bands : tuple of (instrument, high, average, poor)
        Pre-post effect size benchmarks: PHQ-9 0.91 / 0.73 / 0.46 and GAD-7 1.02 / 0.78 /
        0.52 (high-performing, average and poorly performing services; Delgadillo et al.
        2014, NHS benchmarking of IAPT services).
    completeness_standard : float
        0.90: NHS Talking Therapies paired-score data completeness standard.
    min_funnel_n : int
        5: units with fewer patients are not placed on the funnel (as small-number
        disclosure control: counts of 1-4 are not published).
    funnel_levels : tuple of float
        (0.95, 0.998): warning and alarm limits (Spiegelhalter 2005a).
    winsorise : float
        0.10: Winsorising fraction at each end for over-dispersion (Spiegelhalter 2005b).
    overdispersion_alpha : float
        0.05: level of the chi-square test for over-dispersion.
    adjust_overdispersion : bool
        Widen the limits when over-dispersion is found (Spiegelhalter 2005b).
    min_level_n : int
        20: covariate levels with fewer patients are pooled (as ``comparison.min_level_n``).
    case_mix_covariates : tuple of str
        Categorical covariates (when present) besides the paired baselines; ``age`` is
        used as a continuous covariate when present.
    bootstrap_resamples : int
        500 percentile-bootstrap resamples for effect-size intervals.
    seed : int
        Seed of every random draw (bootstrap, model subsample).
    planned_sessions : int
        16: the planned IPT course (12-16 weekly sessions) for ``sessions_remaining``.
    prediction_level : float
        0.90: two-sided prediction band of the expected recovery curve (z = 1.645).
    max_model_patients : int
        Finished courses used to fit the recovery curve (a seeded random subset when there
        are more: a mixed model slows down with many groups).
    instrument : str or None
        Instrument of the recovery curve (None: the study's primary instrument).
    """

    key: bytes | None = field(default=None, repr=False)
    keep_ids: bool = False
    pseudonymise_therapists: bool = True
    no_suppress: bool = False


@dataclass(frozen=True, eq=False)
class AuditResult:
    """What the audit produced.

    Attributes
    ----------
    tables : dict of str to DataFrame
        ``audit_sites``, ``audit_therapists``, ``audit_outliers``, ``audit_benchmarks``,
        ``audit_funnel_summary``, ``not_on_track`` (written as ``OUT/audit/<key>.csv``).
    figure_data : dict of str to DataFrame
        What the funnel figures need (:func:`funnel_data`; not published): the figures are
        drawn on the report side (``pipeline.report.audit_plots.stage_figures``).
    messages : tuple of str
        Plain-language notes: model, over-dispersion, suppression, pseudonyms.
    records : tuple of AnalysisRecord
        What became of each part (unit tables, not on track).
    """

    tables: dict[str, pd.DataFrame]
    messages: tuple[str, ...]
    records: tuple[AnalysisRecord, ...] = ()
    figure_data: dict[str, pd.DataFrame] = field(default_factory=dict)


def _relabel(table: pd.DataFrame, key: bytes | None, options: AuditOptions) -> pd.DataFrame:
    """Therapist unit labels as pseudonyms where required, rows in the same (raw) order."""
    out = table.copy()
    if options.keep_ids or not options.pseudonymise_therapists or key is None:
        return out
    therapist = (out["level"] == "therapist") & (out["unit"] != ALL)
    out.loc[therapist, "unit"] = privacy.pseudonymise(out.loc[therapist, "unit"], key, "t")
    return out


def _by_label(table: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Rows ordered by their (possibly pseudonymised) labels, ``"all"`` last, so the order
    of the raw ids does not show."""
    order = table.assign(_last=table["unit"] == ALL).sort_values(
        [*keys, "_last", "unit"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _pseudonymise_patients(table: pd.DataFrame, key: bytes | None,
                           options: AuditOptions) -> pd.DataFrame:
    if options.keep_ids or key is None:
        return table.reset_index(drop=True)
    columns: list[tuple[str, str]] = [("patient_id", "p")]
    if options.pseudonymise_therapists:
        columns.append(("therapist_id", "t"))
    out = privacy.pseudonymise_columns(table, key, columns)
    return out.sort_values(["site_id", "therapist_id", "patient_id"],
                           na_position="last").reset_index(drop=True)


def _check_key(key: bytes | None, options: AuditOptions) -> bytes | None:
    key = key if key is not None else options.key
    if not key and not options.keep_ids:
        raise ValueError("a non-empty pseudonym key is needed (options.key or key=), or "
                         "keep_ids=True")
    return key


def review(
    patients: pd.DataFrame, sessions: pd.DataFrame, patient_outcomes: pd.DataFrame,
    config: StudyConfig, options: AuditOptions | None = None, *, key: bytes | None = None,
) -> AuditResult:
    """The clinic outcome audit (see the module docstring for every method).

    Parameters
    ----------
    patients, sessions : DataFrame
        Validated input tables (start and end dates, session scores).
    patient_outcomes : DataFrame
        ``pipeline.outcomes.definitions.derive`` output.
    config : StudyConfig
        Definitions in force (paired and primary instruments, ``suppress_below``).
    options : AuditOptions
        Audit options (defaults: :class:`AuditOptions`).
    key : bytes, optional
        Pseudonym key; overrides ``options.key``.

    Returns
    -------
    AuditResult

    Raises
    ------
    ValueError
        Without a key unless ``keep_ids``.
    """
    options = options or AuditOptions()
    key = _check_key(key, options)
    records: list[AnalysisRecord] = []
    units = attempt(STAGE, "units (sites, therapists, funnels, benchmarks)",
                    lambda: _unit_tables(patient_outcomes, config, options, key), records)
    tables: dict[str, pd.DataFrame] = {}
    figure_data: dict[str, pd.DataFrame] = {}
    messages: list[str] = []
    if units is not None:
        tables, messages = dict(units.tables), list(units.messages)
        figure_data = funnel_data(units.funnels, units.labelled, options)
        records += units.records
    watch = attempt(STAGE, "not_on_track", lambda: not_on_track(
        patients, sessions, patient_outcomes, config, options), records)
    if watch is not None:
        tables["not_on_track"] = _pseudonymise_patients(watch[0], key, options)
        messages += watch[1]
    else:  # e.g. a recovery curve that did not converge: said here and in its record
        messages.append(f"not on track: {records[-1].status} ({records[-1].reason})")
    messages.append("ids kept: do not share these files" if options.keep_ids else
                    "patient ids pseudonymised (keyed HMAC-SHA-256)" + (
                        ", therapist ids too" if options.pseudonymise_therapists else ""))
    return AuditResult(tables=tables, figure_data=figure_data, messages=tuple(messages),
                       records=tuple(records))


def funnel_data(funnels: dict[str, funnel.FunnelResult], labelled: dict[str, pd.DataFrame],
                options: AuditOptions) -> dict[str, pd.DataFrame]:
    """What the funnel figures need (``pipeline.report.audit_plots.stage_figures``).

    ``funnel_units``: one row per unit of each level (level, label, n, rate, limit_hit,
    drawn); ``drawn`` is False for a unit too small for the funnel or whose recovery counts
    are hidden in the shared table (unless ``no_suppress``), so a figure never shows more
    than the tables. ``funnel_limits``: one row per level and control-limit level (level,
    limit, overall_rate and the over-dispersion estimate and test of
    ``pipeline.audit.funnels.Overdispersion``). Labels are the shared ones (pseudonyms
    where required); neither frame is published.
    """
    points, limits = [], []
    for level, result in funnels.items():
        units = labelled[level][labelled[level]["unit"] != ALL].reset_index(drop=True)
        hits = result.units.reset_index(drop=True)
        drawn = hits["on_funnel"].to_numpy(dtype=bool)
        if not options.no_suppress:
            drawn &= _shown(units, ["recovery_n", "recovery_events"]).to_numpy(dtype=bool)
        points.append(pd.DataFrame({"level": level, "label": units["unit"], "n": hits["n"],
                                    "rate": hits["rate"], "limit_hit": hits["limit_hit"],
                                    "drawn": drawn}))
        d = result.dispersion
        limits += [{"level": level, "limit": float(limit), "overall_rate": result.p0,
                    "phi_hat": d.phi_hat, "chi_square": d.statistic, "df": d.df,
                    "p_value": d.p_value, "overdispersion_applied": d.applied, "phi": d.phi}
                   for limit in result.levels]
    return {"funnel_units": pd.concat(points, ignore_index=True),
            "funnel_limits": pd.DataFrame(limits)}


@dataclass(frozen=True, eq=False)
class _Units:
    """The per-unit part of the audit: shared tables, funnels and labelled unit tables."""

    tables: dict[str, pd.DataFrame]
    funnels: dict[str, funnel.FunnelResult]
    labelled: dict[str, pd.DataFrame]
    messages: tuple[str, ...]
    records: tuple[AnalysisRecord, ...] = ()


def _unit_tables(patient_outcomes: pd.DataFrame, config: StudyConfig, options: AuditOptions,
                 key: bytes | None) -> _Units:
    """Case-mix expected recovery, per-unit tables, funnels and suppression.

    Raises
    ------
    NotEstimable
        When the paired instruments are not both in the data (recovery is undefined).
    """
    instruments = list(config.paired_instruments)
    missing = [i for i in instruments if f"{i}_baseline" not in patient_outcomes.columns
               or not patient_outcomes[f"{i}_baseline"].notna().any()]
    require(not missing, f"no {' or '.join(missing)} scores: recovery, the audit's indicator, "
            f"needs both paired instruments ({' and '.join(instruments)})",
            f"{' and '.join(instruments)} scores at baseline and end of treatment")
    expected, messages = case_mix_expected(patient_outcomes, config, options)
    problem = case_mix_problem(messages)
    records = () if problem is None else (AnalysisRecord(
        STAGE, "case-mix model", NOT_ESTIMABLE, problem,
        "more finished courses at caseness, or fewer audit.case_mix_covariates"),)
    raw = {level: unit_table(patient_outcomes, level, expected, config, options)
           for level in LEVELS}
    funnels = {level: _funnel(table, options) for level, table in raw.items()}
    messages += [_dispersion_message(level, result) for level, result in funnels.items()]
    high = config.suppress_below - 1
    if options.no_suppress:
        shared = dict(raw)
        messages.append("no_suppress: small counts are shown; not for sharing")
    else:
        sites, therapists, notes = suppress_levels(raw["site"], raw["therapist"],
                                                   instruments, high)
        shared, messages = {"site": sites, "therapist": therapists}, messages + notes
    tables, labelled = _assemble(shared, funnels, instruments, key, options)
    log.info("audit: %d sites, %d therapists", len(raw["site"]) - 1, len(raw["therapist"]) - 1)
    return _Units(tables, funnels, labelled, tuple(messages), records)


def _assemble(shared: dict[str, pd.DataFrame], funnels: dict[str, funnel.FunnelResult],
              instruments: Sequence[str], key: bytes | None,
              options: AuditOptions) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The shared per-unit, outlier, benchmark and funnel-summary tables (declared columns),
    and the per-unit tables with their labels in the funnels' (raw) row order."""
    columns = list(unit_columns(instruments))
    in_order = {level: _relabel(table, key, options) for level, table in shared.items()}
    labelled = {level: _by_label(table) for level, table in in_order.items()}
    outliers = _by_label(pd.concat([_outliers(level, funnels[level], in_order[level])
                                    for level in LEVELS], ignore_index=True), ["level"])
    both = pd.concat([labelled["site"], labelled["therapist"]], ignore_index=True)
    tables = {
        "audit_sites": labelled["site"][columns],
        "audit_therapists": labelled["therapist"][columns],
        "audit_outliers": outliers[list(OUTLIER_COLUMNS)],
        "audit_benchmarks": benchmarks(both, instruments, options),
        "audit_funnel_summary": pd.DataFrame(
            [_funnel_summary(level, result) for level, result in funnels.items()],
            columns=list(FUNNEL_SUMMARY_COLUMNS)),
    }
    return tables, in_order
