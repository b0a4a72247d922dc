"""Write the interval data that ``interval_relapse_golden.R`` reads (run from the project root).

    .venv/bin/python tests/golden/interval_relapse_make_inputs.py

For a real study with relapses found at visits (``tests/fixtures/real/SOURCE.md``) and the
demo, the relapse cohort and its intervals exactly as the pipeline builds them
(:func:`pipeline.relapse.interval.interval_data`: ``left_weeks``, ``right_weeks`` with
``inf`` for no relapse, ``exact``) and the terms of its Cox model
(:func:`pipeline.relapse.analysis.cox_terms`, as indicator columns of
:func:`pipeline.relapse.analysis.cox_design`), so that R fits the same numbers:

- ``interval_relapse_btb.csv``: ``beat_the_blues_followup`` (BDI-II, relapse after response
  found at the 4-, 6- and 8-month follow-ups: interval-censored;
  only 5 relapses, so no regression model);
- ``interval_relapse_smoking.csv``: ``smoking_relapse`` (no symptom scores) with the relapse
  dates recorded by the clinician kept exact (``relapse.clinician_relapse_exact: true``;
  ``at_risk: completed`` with ``populations.completer_min_sessions: 1``, the quit date being
  the one treatment session, and ``instrument: wsas``, which has no caseness threshold, so
  that relapse is the clinician's only): 89 exact relapses, 12 of them at time 0;
- ``interval_relapse_demo.csv``: the demo's relapse cohort (2000 patients, seed 20261122,
  default config; relapses found at visits; maintenance IPT among the terms).

A study whose relapses support no regression model (too few per parameter) has no ``x_``
columns and ``in_model`` False.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from pipeline import config, io
from pipeline.demo import generate as demo
from pipeline.estimability import NotEstimable
from pipeline.ingest import validate
from pipeline.outcomes import definitions as outcomes
from pipeline.relapse import interval as relapse_interval
from pipeline.relapse.cohort import relapse_cohort, relapse_visits
from pipeline.relapse.cox import cox_design
from pipeline.relapse.cox_selection import cox_terms

HERE = Path(__file__).parent
REAL = HERE.parent / "fixtures" / "real"
#: study key: (folder, populations settings, relapse settings)
STUDIES: dict[str, tuple[str, dict[str, int], dict[str, object]]] = {
    "btb": ("beat_the_blues_followup", {}, {}),
    "smoking": ("smoking_relapse", {"completer_min_sessions": 1},
                {"at_risk": "completed", "instrument": "wsas",
                 "clinician_relapse_exact": True}),
}


def interval_frame(folder: str, population_settings: dict[str, int],
                   relapse_settings: dict[str, object]) -> pd.DataFrame:
    """The study's interval data with its regression terms (one row per cohort patient)."""
    study = config.load(REAL / folder / "study.yaml")
    study = replace(study, populations=replace(study.populations, **population_settings),
                    relapse=replace(study.relapse, **relapse_settings))  # type: ignore[arg-type]
    raw = io.read_study(REAL / folder, ("patients", "sessions", "followups"), ())
    tables = validate.run(raw, config=study).tables
    patient_outcomes = outcomes.derive(tables["patients"], tables["sessions"], study)
    cohort, _ = relapse_cohort(tables["patients"], tables["sessions"],
                               tables["followups"], patient_outcomes, study)
    visits = relapse_visits(tables["followups"], cohort, study)
    data = relapse_interval.interval_data(cohort, visits,
                                          study.relapse.clinician_relapse_exact)
    instrument = study.relapse.instrument or study.primary_instrument
    return with_terms(data, instrument, study)


def with_terms(data: pd.DataFrame, instrument: str, study: config.StudyConfig) -> pd.DataFrame:
    """The interval columns, maintenance and the regression terms (``x_`` columns; none when
    the data support no regression model) with ``in_model``."""
    frame = data[["patient_id", "left_weeks", "right_weeks", "exact", "maintenance"]]
    try:
        model_data, spec, _ = cox_terms(data, instrument, study)
    except NotEstimable:
        return frame.assign(in_model=False)
    design = cox_design(model_data, spec).drop(columns=["time_weeks", "event"])
    design.columns = [c.replace("[", "_").replace("]", "") for c in design.columns]
    frame = frame.join(design.reindex(frame.index).add_prefix("x_"))
    return frame.assign(in_model=frame.index.isin(model_data.index))


def demo_frame() -> pd.DataFrame:
    """The demo's relapse cohort (2000 patients, seed 20261122, default config)."""
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=2000, seed=20261122,
                                                  expected_rates_n=0))
    study = config.from_mapping(None)
    patient_outcomes = outcomes.derive(cohort.patients, cohort.sessions, study)
    frame, _ = relapse_cohort(cohort.patients, cohort.sessions, cohort.followups,
                              patient_outcomes, study)
    visits = relapse_visits(cohort.followups, frame, study)
    data = relapse_interval.interval_data(frame, visits, False)
    return with_terms(data, "phq9", study)


def main() -> None:
    for key, (folder, populations, settings) in STUDIES.items():
        interval_frame(folder, populations, settings).to_csv(
            HERE / f"interval_relapse_{key}.csv", index=False)
    demo_frame().to_csv(HERE / "interval_relapse_demo.csv", index=False)


if __name__ == "__main__":
    main()
