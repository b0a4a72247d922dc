"""Write the demo data set that ``mixed_golden.R`` reads (run once from the project root).

    .venv/bin/python tests/golden/mixed_make_inputs.py

``mixed_demo_growth.csv``: the growth-model frame of a demo cohort (600 patients, seed
20261122, default config) as built by :func:`pipeline.trajectories.models.model_data`: the PHQ-9
score, weeks since start, condition, format, centred age and sex, the grouping columns and
the group-format indicator. ``mixed_sleepstudy.csv`` and ``mixed_pastes.csv`` are written by
the R script itself from lme4's own copies of the data sets.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import config
from pipeline.demo import generate as demo
from pipeline.outcomes import definitions as outcomes
from pipeline.trajectories import models as trajectories

HERE = Path(__file__).parent
COLUMNS = ["patient_id", "therapist_id", "group_id", "is_group", "condition", "format",
           "age_centred", "sex[male]", "weeks", "score"]


def main() -> None:
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=600, seed=20261122,
                                                  expected_rates_n=0))
    cfg = config.from_mapping(None)
    po = outcomes.derive(cohort.patients, cohort.sessions, cfg)
    long = trajectories.long_scores(cohort.patients, cohort.sessions, po, "phq9", "weeks")
    frame, _, _ = trajectories.model_data(long)
    out = frame[COLUMNS].rename(columns={"sex[male]": "sex_male"})
    out["is_group"] = out["is_group"].astype(int)
    out.to_csv(HERE / "mixed_demo_growth.csv", index=False, float_format="%.17g")


if __name__ == "__main__":
    main()
