"""Controlled vocabularies of the input contract and the synonyms accepted for them.

Values are normalised (trimmed, case-folded, spaces and hyphens turned into underscores)
before they are looked up here, so ``"Role Disputes"`` and ``"role-disputes"`` both become
``role_disputes``. A synonym maps a common alternative spelling onto the canonical code.
"""

from __future__ import annotations

from typing import Final

from data_schemas.instruments import CATALOGUE

CONDITIONS: Final = (
    "major_depression",
    "dysthymia",
    "anxiety",
    "eating_disorder",
    "bipolar",
    "adjustment",
    "other",
)
FORMATS: Final = ("individual", "group")
PROBLEM_AREAS: Final = ("grief", "role_disputes", "role_transitions", "interpersonal_deficits")
END_REASONS: Final = ("completed", "dropped_out", "transferred", "ongoing", "other")
ATTENDANCE: Final = ("attended", "did_not_attend", "cancelled_by_patient", "cancelled_by_service")
FOLLOWUP_EVENTS: Final = ("none", "relapse", "died", "other_treatment", "withdrew")

#: The four core instruments: name -> (minimum, maximum, whole numbers only), read from the
#: catalogue (``data_schemas/instruments.csv``, which holds every instrument and its
#: outcome definitions). Kept for the demo and test generators; the pipeline itself takes
#: its instruments from the catalogue in force (``StudyConfig.catalogue``).
INSTRUMENTS: Final[dict[str, tuple[float, float, bool]]] = {
    name: (CATALOGUE[name].min, CATALOGUE[name].max, CATALOGUE[name].whole)
    for name in ("phq9", "gad7", "hamd17", "bdi2")
}

#: Alternative spellings accepted per column (after case-folding) -> canonical value.
SYNONYMS: Final[dict[str, dict[str, str]]] = {
    "format": {
        "1:1": "individual",
        "1_1": "individual",
        "one_to_one": "individual",
        "one_to_one_therapy": "individual",
        "ind": "individual",
        "indiv": "individual",
        "grp": "group",
        "group_therapy": "group",
    },
    "condition": {
        "mdd": "major_depression",
        "depression": "major_depression",
        "major_depressive_disorder": "major_depression",
        "pdd": "dysthymia",
        "persistent_depressive_disorder": "dysthymia",
        "gad": "anxiety",
        "anxiety_disorder": "anxiety",
        "eating_disorders": "eating_disorder",
        "ed": "eating_disorder",
        "bipolar_disorder": "bipolar",
        "adjustment_disorder": "adjustment",
    },
    "problem_area": {
        "role_dispute": "role_disputes",
        "interpersonal_role_disputes": "role_disputes",
        "role_transition": "role_transitions",
        "interpersonal_deficit": "interpersonal_deficits",
        "interpersonal_sensitivity": "interpersonal_deficits",
        "bereavement": "grief",
        "complicated_grief": "grief",
    },
    "end_reason": {
        "complete": "completed",
        "finished": "completed",
        "dropout": "dropped_out",
        "drop_out": "dropped_out",
        "dropped": "dropped_out",
        "transfer": "transferred",
        "in_treatment": "ongoing",
        "active": "ongoing",
    },
    "attendance": {
        "yes": "attended",
        "y": "attended",
        "present": "attended",
        "dna": "did_not_attend",
        "no_show": "did_not_attend",
        "did_not_attend": "did_not_attend",
        "cancelled_patient": "cancelled_by_patient",
        "patient_cancelled": "cancelled_by_patient",
        "cancelled_service": "cancelled_by_service",
        "service_cancelled": "cancelled_by_service",
        "canceled_by_patient": "cancelled_by_patient",
        "canceled_by_service": "cancelled_by_service",
    },
    "event": {
        "no_event": "none",
        "relapsed": "relapse",
        "death": "died",
        "deceased": "died",
        "other_treatment_started": "other_treatment",
        "withdrawn": "withdrew",
        "withdrawal": "withdrew",
    },
    "sex": {"f": "female", "m": "male", "woman": "female", "man": "male"},
}
SYNONYMS["secondary_problem_area"] = SYNONYMS["problem_area"]

TRUE_WORDS: Final = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_WORDS: Final = frozenset({"false", "f", "no", "n", "0", "0.0"})
