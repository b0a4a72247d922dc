"""Small-number suppression of the relapse tables (``pipeline.sharing.relapse_tables``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline import config, io
from pipeline.demo import generate as demo
from pipeline.ingest import validate
from pipeline.report import stage_figures
from pipeline.runner import stages
from pipeline.sharing import relapse_tables
from pipeline.sharing.publish import SharingOptions
from tests.attacker import attack_relapse


def _km() -> pd.DataFrame:
    return pd.DataFrame({
        "stratum_variable": ["all", "format", "format", "maintenance", "maintenance"],
        "stratum": ["all", "individual", "group", "False", "True"],
        "n": [131, 98, 33, 81, 50], "events": [17, 15, 2, 10, 7], "competing": [9, 7, 2, 5, 4],
        "relapse_free_52w": [0.85, 0.81, 0.94, 0.82, 0.88],
    })


def test_a_stratum_with_few_relapses_hides_its_partner_and_its_estimates() -> None:
    turnbull = _km()[["stratum_variable", "stratum", "n", "events"]].assign(
        time_weeks=52.0, relapse_free=[0.80, 0.77, 0.93, 0.78, 0.85])
    rmst = _km()[["stratum_variable", "stratum", "n", "events"]].rename(
        columns={"stratum_variable": "variable", "stratum": "group"}).assign(tau_weeks=52,
                                                                             rmst=40.0)
    cox = pd.DataFrame({"term": ["maintenance[True]"], "hazard_ratio": [0.5], "n": [131],
                        "events": [17]})
    shared, summary = relapse_tables.share(
        {"relapse_km": _km(), "relapse_free_interval": turnbull, "relapse_rmst": rmst,
         "relapse_cox": cox}, high=4)
    km = shared["relapse_km"]
    # group has 2 relapses: hidden, and individual with it (else 17 - 15 gives it back)
    assert km["events"].tolist()[:3] == [17, "*", "<5"]
    assert km["suppressed"].tolist() == [False, True, True, False, False]
    assert np.isnan(km.loc[2, "relapse_free_52w"]) and km.loc[3, "relapse_free_52w"] == 0.82
    assert "competing" not in km.columns
    assert shared["relapse_free_interval"]["relapse_free"].isna().tolist() == \
        [False, True, True, False, False]
    assert shared["relapse_free_interval"]["time_weeks"].notna().all()  # times stay
    assert shared["relapse_rmst"]["rmst"].isna().tolist() == [False, True, True, False, False]
    assert shared["relapse_cox"]["n"].tolist() == [131]
    assert (summary.primary, summary.pinned) == (1, 0)


def test_without_small_counts_nothing_is_hidden() -> None:
    km = _km().assign(events=[27, 15, 12, 10, 17])
    shared, summary = relapse_tables.share({"relapse_km": km}, high=4)
    assert not shared["relapse_km"]["suppressed"].any()
    assert shared["relapse_km"]["events"].tolist() == [27, 15, 12, 10, 17]
    assert (summary.primary, summary.secondary) == (0, 0)


@pytest.fixture(scope="module")
def relapse_outputs(tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[dict[str, stages.StageOutput], config.StudyConfig, Path]:
    """The relapse stage's output on the 600-patient demo, shared and not (``truth``)."""
    folder = tmp_path_factory.mktemp("relapse600")
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=600))
    io.write_study({"patients": cohort.patients, "sessions": cohort.sessions,
                    "followups": cohort.followups}, folder / "data")
    result = validate.run(io.read_study(folder / "data", ("patients", "sessions", "followups"),
                                        ("patients", "sessions")))
    study = config.from_mapping(None)
    patient_outcomes = stages.derive_outcomes(result.tables, study)
    outputs = {sub: stages.run_relapse(result.tables, patient_outcomes, study,
                                       SharingOptions(no_suppress=no_suppress))
               for sub, no_suppress in (("shared", False), ("truth", True))}
    return outputs, study, folder


@pytest.fixture(scope="module")
def demo_relapse(relapse_outputs: tuple[dict[str, stages.StageOutput], config.StudyConfig, Path]
                 ) -> tuple[Path, Path]:
    outputs, _study, folder = relapse_outputs
    folders = []
    for sub, output in outputs.items():
        (folder / sub).mkdir()
        for name, table in output.tables.items():
            table.to_csv(folder / sub / f"{name}.csv", index=False)
        folders.append(folder / sub)
    return folders[0], folders[1]


def test_relapse_figures_are_drawn_once_from_the_shared_tables(
        relapse_outputs: tuple[dict[str, stages.StageOutput], config.StudyConfig, Path]) -> None:
    outputs, study, _folder = relapse_outputs
    for output in outputs.values():  # the stage returns data only
        assert not any(isinstance(v, Figure) for v in vars(output).values())
    shared, records = stage_figures.draw("relapse", outputs["shared"], study)
    truth, _ = stage_figures.draw("relapse", outputs["truth"], study)
    assert list(shared) == list(truth) == ["relapse_km", "relapse_cif", "relapse_forest"]
    assert records == ()
    km = shared["relapse_km"]
    texts = [text.get_text() for axes in km.axes for text in axes.texts]
    assert "At risk" in texts  # numbers at risk as the shared table shows them
    assert any(text.startswith("Not drawn (a count of 1-4 is suppressed)") for text in texts)
    assert len(km.axes) == 3  # no lifelines at-risk axes: its counts would give them back
    assert len(truth["relapse_km"].axes) > 3  # lifelines' own numbers at risk


def test_attacker_recovers_no_hidden_relapse_count_of_the_demo(
        demo_relapse: tuple[Path, Path]) -> None:
    shared, truth = demo_relapse
    result = attack_relapse(shared, truth)
    assert result.small > 0  # the 600-patient demo has strata with few relapses
    assert result.small_recovered == 0, result.recovered_cells
    assert result.complements_recovered == 0, result.recovered_cells
    assert attack_relapse(truth, truth).hidden == 0
