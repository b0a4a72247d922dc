"""Write the datasets that ``relapse_golden.R`` reads (run once from the project root).

    .venv/bin/python tests/golden/relapse_make_inputs.py

- ``relapse_lung.csv``: lifelines ``load_lung()`` (R ``survival::lung``, NCCTG lung cancer;
  status here 0/1, in R 1/2), rows without ``inst`` dropped (cluster variable).
- ``relapse_rossi.csv``: lifelines ``load_rossi()`` (R ``carData::Rossi``, recidivism).
- ``relapse_demo_cohort.csv``: the relapse cohort of the demo (2000 patients, seed 20261122,
  default config) with time in whole days (``time_weeks = time_days / 7``) so that R and
  Python read exactly the same tied times.
"""

from __future__ import annotations

from pathlib import Path

from lifelines.datasets import load_lung, load_rossi

from pipeline import config
from pipeline.demo import generate as demo
from pipeline.outcomes import definitions as outcomes
from pipeline.relapse.cohort import relapse_cohort

HERE = Path(__file__).parent


def main() -> None:
    lung = load_lung().dropna(subset=["inst"]).astype({"inst": int})
    lung[["inst", "time", "status", "age", "sex", "ph.ecog"]].to_csv(
        HERE / "relapse_lung.csv", index=False)
    load_rossi().to_csv(HERE / "relapse_rossi.csv", index=False)
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=2000, seed=20261122,
                                                  expected_rates_n=0))
    cfg = config.from_mapping(None)
    po = outcomes.derive(cohort.patients, cohort.sessions, cfg)
    frame, _ = relapse_cohort(cohort.patients, cohort.sessions, cohort.followups, po,
                              cfg)
    frame["time_days"] = (frame["exit_date"] - frame["origin_date"]).dt.days
    columns = ["patient_id", "format", "condition", "maintenance", "residual_phq9",
               "therapist_id", "group_id", "time_days", "event"]
    frame[columns].to_csv(HERE / "relapse_demo_cohort.csv", index=False)


if __name__ == "__main__":
    main()
