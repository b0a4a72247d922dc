"""Monte Carlo value of the demo's maintenance hazard ratio "in the Cox sense".

    .venv/bin/python tests/golden/relapse_demo_estimand.py > tests/golden/relapse_demo_estimand.txt

The demo (``pipeline.demo.generate``) draws relapse from ``exp(-5.6 + 0.08 phq9_end + log(0.5)
maintenance)`` per week but records it only at the next follow-up (13, 26, 52 weeks), and the
pipeline's relapse endpoint also counts any follow-up PHQ-9 >= 10, which the demo produces
from measurement noise (SD 2.5 around the end-of-treatment level) whether or not the patient
receives maintenance. Five cohorts of 100,000 patients (seeds 101-105), Cox model format +
condition + maintenance + problem_area + sex + residual_phq9 + age (``fit_cox``), mean log
hazard ratio of maintenance:

- default endpoint (PHQ-9 >= 10 or clinician-recorded relapse): the estimand;
- clinician-recorded relapse only (follow-up PHQ-9 removed): the generating effect.
"""

from __future__ import annotations

import numpy as np

from pipeline import config
from pipeline.demo import generate as demo
from pipeline.outcomes import definitions as outcomes
from pipeline.relapse.cohort import relapse_cohort
from pipeline.relapse.cox import CoxSpec, fit_cox

SPEC = CoxSpec(categorical=("format", "condition", "maintenance", "problem_area", "sex"),
               numeric=("residual_phq9", "age"))


def log_hr(cohort: demo.DemoCohort, scores: bool) -> float:
    cfg = config.from_mapping(None)
    po = outcomes.derive(cohort.patients, cohort.sessions, cfg)
    followups = cohort.followups if scores else cohort.followups.assign(phq9=np.nan)
    frame, _ = relapse_cohort(cohort.patients, cohort.sessions, followups, po, cfg)
    table = fit_cox(frame, SPEC).table
    return float(dict(zip(table["term"], table["coef"], strict=True))["maintenance[True]"])


def main() -> None:
    rows = []
    for seed in range(101, 106):
        cohort = demo.generate_cohort(demo.DemoConfig(n_patients=100_000, seed=seed,
                                                      expected_rates_n=0))
        rows.append((log_hr(cohort, True), log_hr(cohort, False)))
        print(f"seed {seed}: log HR default {rows[-1][0]:.4f}, clinician only {rows[-1][1]:.4f}")
    values = np.asarray(rows)
    for column, name in enumerate(("default endpoint", "clinician-recorded relapse only")):
        mean, se = values[:, column].mean(), values[:, column].std(ddof=1) / np.sqrt(len(rows))
        print(f"{name}: HR {np.exp(mean):.4f} (Monte Carlo 95% range "
              f"{np.exp(mean - 1.96 * se):.4f} to {np.exp(mean + 1.96 * se):.4f})")


if __name__ == "__main__":
    main()
