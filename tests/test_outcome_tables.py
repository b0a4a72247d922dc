"""The outcome tables assembled from per-patient outcomes (``pipeline.outcomes.tables``)."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.outcomes.tables import FLOW_STEPS, flow_counts


def test_flow_counts_by_hand() -> None:
    # A never started; B started, still in treatment with 12 sessions (a completer, not a
    # finished course); C finished without completing; D and E completed, E followed up;
    # B followed up too (but it is not in the finished-course box, so not counted there)
    outcomes = pd.DataFrame({
        "patient_id": list("ABCDE"),
        "started": [False, True, True, True, True],
        "finished_course": [False, False, True, True, True],
        "completers": [False, True, False, True, True],
    })
    followups = pd.DataFrame({"patient_id": ["E", "B", "E"]})
    assert flow_counts(outcomes, followups) == {
        "referred": 5, "started": 4, "finished_course": 3, "completed_course": 2,
        "followed_up": 1}
    assert flow_counts(outcomes, None)["followed_up"] == 0
    assert list(flow_counts(outcomes, None)) == [name for name, _ in FLOW_STEPS]


@settings(deadline=None, max_examples=50)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
                max_size=30))
def test_no_arrow_leads_to_a_larger_box(flags: list[tuple[bool, bool, bool, bool]]) -> None:
    outcomes = pd.DataFrame(flags, columns=["started", "finished_course", "completers",
                                            "followed"]).assign(
        patient_id=lambda f: [f"P{i}" for i in range(len(f))])
    followups = outcomes.loc[outcomes["followed"], ["patient_id"]]
    counts = list(flow_counts(outcomes, followups).values())
    assert counts == sorted(counts, reverse=True)
