"""Generated study shapes: valid study folders that do not look like the demo.

A :class:`StudyShape` is a small, printable description of a study (which instruments, which
formats, therapists or not, group ids or not, follow-ups or not, a weekly or a sparse trial
schedule, how many patients, how much is scored ...). :func:`write_study` turns a shape into a
study folder (``patients.csv``, ``sessions.csv`` and, when it has follow-ups,
``followups.csv``) that follows the contract in ``data_schemas/DATA_DICTIONARY.md``. The
folder is a pure function of the shape: the scores come from ``random.Random(shape.seed)``.

:func:`study_shapes` is the hypothesis strategy; :data:`NAMED_SHAPES` are the shapes real
studies have that the issue "Any real study runs end to end" names.

Two options describe data that the contract once refused and now accepts:

- ``group_ids_missing``: group-format patients without a ``group_id`` (clustered analyses
  say they could not cluster by group);
- ``followups="on_discharge"``: a follow-up on the day of the last session (time 0 of the
  relapse analysis).

The strategy draws them only when asked (``future_valid=True``); :func:`currently_valid`
says whether a shape should pass today's validation (every shape does now).

Usage outside pytest: ``python -m tests.study_shapes OUT_DIR`` writes every named shape.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from hypothesis import strategies as st

from data_schemas.vocab import CONDITIONS, INSTRUMENTS, PROBLEM_AREAS

#: The instrument catalogue the shapes draw from: name -> (minimum, maximum, whole numbers).
#: Taken from the contract, so an instrument added there (e.g. ``madrs``) is drawn too; pass
#: ``instruments=`` to :func:`study_shapes` to draw from another list.
CATALOGUE: dict[str, tuple[int, int, bool]] = {
    name: (int(lo), int(hi), bool(whole)) for name, (lo, hi, whole) in INSTRUMENTS.items()
}
#: Instruments the follow-ups table carries (a follow-up may score any of them).
FOLLOWUP_INSTRUMENTS = tuple(CATALOGUE)

SCHEDULES = ("weekly", "sparse")
#: full: every attended session scored; one_post_baseline: the baseline and exactly one
#: later score per patient; baseline_only: every endpoint missing.
SCORINGS = ("full", "one_post_baseline", "baseline_only")
#: mixed: scores fall with noise; everyone: every patient falls by 80% (a 100% response
#: rate); no_one: scores stay at baseline (a 0% response rate).
IMPROVEMENTS = ("mixed", "everyone", "no_one")
#: none; after: 1-3 follow-ups strictly after the last session; on_discharge: the first
#: follow-up on the day of the last session (valid later, not today).
FOLLOWUPS = ("none", "after", "on_discharge")
#: Whether ``therapist_id`` is filled in, present but empty, or not a column at all.
THERAPISTS = ("recorded", "empty", "absent")
#: all_completed; mixed: some dropped out (fewer sessions), some still ongoing.
ENDINGS = ("all_completed", "mixed")
#: Sparse trial assessments (weeks after the start of treatment).
SPARSE_WEEKS = (0, 8, 16)

PATIENT_COLUMNS = ["patient_id", "site_id", "therapist_id", "condition", "format", "group_id",
                   "problem_area", "secondary_problem_area", "referral_date", "start_date",
                   "end_date", "end_reason", "age", "sex", "maintenance", "arm"]
FIRST_START = dt.date(2024, 1, 8)


@dataclasses.dataclass(frozen=True)
class StudyShape:
    """What a study looks like; :func:`write_study` makes the data.

    Attributes
    ----------
    n_patients : int
        Number of patients (>= 1).
    instruments : tuple of str
        Instruments scored in the sessions (non-empty, from the catalogue).
    formats : tuple of str
        ``("individual",)``, ``("group",)`` or both.
    therapists : str
        One of :data:`THERAPISTS`.
    group_ids_missing : bool
        Group-format patients have no ``group_id`` (valid later, not today).
    followups : str
        One of :data:`FOLLOWUPS`.
    schedule : str
        ``weekly`` (sessions 0..n_sessions, session 0 the assessment a week before the start)
        or ``sparse`` (assessments at weeks 0, 8 and 16 only).
    n_sessions : int
        Treatment sessions of a completed weekly course (ignored for ``sparse``).
    sparse_numbered_by_week : bool
        Sparse sessions are numbered 0, 8, 16 (their week) rather than 0, 1, 2.
    scoring : str
        One of :data:`SCORINGS`.
    missed_sessions : bool
        Some weekly treatment sessions are not attended (never scored).
    endings : str
        One of :data:`ENDINGS`.
    conditions : tuple of str
        Conditions patients are treated for (one: everyone in one condition).
    n_sites : int
        Number of sites.
    maintenance : bool
        The optional ``maintenance`` yes/no column is present.
    arms : int
        0: no ``arm`` column; 1 or 2: trial arms.
    improvement : str
        One of :data:`IMPROVEMENTS`.
    relapses : bool
        Some follow-ups record a relapse (otherwise none does: a 0% relapse rate).
    seed : int
        Seed of the scores, dates and choices within the shape.
    """

    n_patients: int = 20
    instruments: tuple[str, ...] = ("phq9", "gad7")
    formats: tuple[str, ...] = ("individual",)
    therapists: str = "recorded"
    group_ids_missing: bool = False
    followups: str = "none"
    schedule: str = "weekly"
    n_sessions: int = 12
    sparse_numbered_by_week: bool = False
    scoring: str = "full"
    missed_sessions: bool = False
    endings: str = "all_completed"
    conditions: tuple[str, ...] = ("major_depression",)
    n_sites: int = 1
    maintenance: bool = False
    arms: int = 0
    improvement: str = "mixed"
    relapses: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        assert self.n_patients >= 1
        assert self.instruments and set(self.instruments) <= set(CATALOGUE), self.instruments
        assert self.formats and set(self.formats) <= {"individual", "group"}
        assert self.therapists in THERAPISTS and self.followups in FOLLOWUPS
        assert self.schedule in SCHEDULES and self.scoring in SCORINGS
        assert self.endings in ENDINGS and self.n_sessions >= 1
        assert self.improvement in IMPROVEMENTS
        assert self.conditions and set(self.conditions) <= set(CONDITIONS)


def currently_valid(shape: StudyShape) -> bool:
    """Whether today's contract accepts every row of the shape's data: always, since group
    patients without group ids and follow-ups on the day of discharge are valid."""
    return shape.n_patients >= 0


# --------------------------------------------------------------------------- the strategy


def _patient_counts() -> st.SearchStrategy[int]:
    """1 to ~200 patients, biased toward small studies (runtime, and where things break)."""
    return st.one_of(st.sampled_from([1, 2, 3]), st.integers(4, 12), st.integers(13, 40),
                     st.integers(41, 200))


def _rarely() -> st.SearchStrategy[bool]:
    """True one time in four: the shapes that were once refused stay a minority."""
    return st.sampled_from([False, False, False, True])


@st.composite
def study_shapes(draw: st.DrawFn, instruments: Sequence[str] | None = None,
                 future_valid: bool = True, max_patients: int = 200) -> StudyShape:
    """A hypothesis strategy of :class:`StudyShape`.

    Parameters
    ----------
    instruments : sequence of str, optional
        The catalogue to draw a non-empty subset from (default: :data:`CATALOGUE`).
    future_valid : bool
        Also draw data the contract will accept but does not yet (group-format patients
        without group ids; a follow-up on the day of discharge).
    max_patients : int
        Upper bound on the number of patients.
    """
    names = list(instruments or CATALOGUE)
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names),
                           unique=True))
    formats = draw(st.sampled_from([("individual",), ("group",), ("individual", "group")]))
    # a follow-up on the day of discharge is one of five follow-up patterns
    followup_options = ("none", "none", "after", "after", "on_discharge") if future_valid else (
        "none", "after")
    one_condition = draw(st.booleans())
    return StudyShape(
        n_patients=min(draw(_patient_counts()), max_patients),
        instruments=tuple(sorted(chosen, key=names.index)),
        formats=formats,
        therapists=draw(st.sampled_from(THERAPISTS)),
        group_ids_missing="group" in formats and future_valid and draw(_rarely()),
        followups=draw(st.sampled_from(followup_options)),
        schedule=draw(st.sampled_from(SCHEDULES)),
        n_sessions=draw(st.sampled_from([1, 2, 4, 8, 12, 16])),
        sparse_numbered_by_week=draw(st.booleans()),
        scoring=draw(st.sampled_from(SCORINGS)),
        missed_sessions=draw(st.booleans()),
        endings=draw(st.sampled_from(ENDINGS)),
        conditions=("major_depression",) if one_condition else tuple(draw(
            st.lists(st.sampled_from(CONDITIONS), min_size=2, max_size=3, unique=True))),
        n_sites=draw(st.integers(1, 3)),
        maintenance=draw(st.booleans()),
        arms=draw(st.integers(0, 2)),
        improvement=draw(st.sampled_from(IMPROVEMENTS)),
        relapses=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


# --------------------------------------------------------------------------- the data


@dataclasses.dataclass
class _Course:
    """One patient's course: the visits (number, date, attended) and its end."""

    visits: list[tuple[int, dt.date, bool]]
    end_reason: str
    end_date: dt.date | None


def _weeks(weeks: int) -> dt.timedelta:
    return dt.timedelta(weeks=weeks)


def _course(shape: StudyShape, rng: random.Random, start: dt.date, index: int) -> _Course:
    """The sessions of one patient: a completed, dropped-out or ongoing course."""
    if shape.schedule == "sparse":
        plan = [(week if shape.sparse_numbered_by_week else k, start + _weeks(week))
                for k, week in enumerate(SPARSE_WEEKS)]
    else:
        plan = [(0, start - dt.timedelta(days=7))]
        plan += [(s, start + _weeks(s - 1)) for s in range(1, shape.n_sessions + 1)]
    reason = "completed"
    # the first patient always completes, so every shape has at least one finished course
    if shape.endings == "mixed" and index > 0:
        reason = rng.choice(["completed", "completed", "dropped_out", "ongoing"])
    if reason != "completed" and len(plan) > 1:
        plan = plan[: rng.randint(1, len(plan) - 1)]
    visits = []
    for number, date in plan:
        attended = not (shape.missed_sessions and shape.schedule == "weekly" and number > 1
                        and number < len(plan) - 1 and rng.random() < 0.2)
        visits.append((number, date, attended))
    last = max(date for _, date, _ in visits)
    end_date = None if reason == "ongoing" else max(last, start)
    return _Course(visits, reason, end_date)


def _scored_visits(shape: StudyShape, course: _Course) -> set[int]:
    """The session numbers that carry scores (attended ones only)."""
    attended = [number for number, _, present in course.visits if present]
    if shape.scoring == "baseline_only" or len(attended) == 1:
        return set(attended[:1])
    if shape.scoring == "one_post_baseline":
        return {attended[0], attended[-1]}
    return set(attended)


TREND = {"mixed": 0.6, "everyone": 0.8, "no_one": 0.0}


def _score(rng: random.Random, instrument: str, baseline_share: float, progress: float,
           improvement: str = "mixed") -> str:
    """A plausible total: a baseline share of the range that falls with progress (with
    noise when the improvement is ``mixed``, exactly otherwise)."""
    low, high, _whole = CATALOGUE[instrument]
    expected = low + (high - low) * baseline_share * (1.0 - TREND[improvement] * progress)
    noisy = expected + (rng.gauss(0, (high - low) * 0.06) if improvement == "mixed" else 0.0)
    return str(round(min(max(noisy, low), high)))


def _groups(shape: StudyShape, rng: random.Random) -> list[tuple[str, int, dt.date]]:
    """Per patient: format, site and start date (group members share site and start)."""
    rows: list[tuple[str, int, dt.date]] = []
    group_size = rng.randint(4, 9)
    for i in range(shape.n_patients):
        fmt = shape.formats[i % len(shape.formats)]
        if fmt == "group":
            cohort = i // (group_size * len(shape.formats))
            site = cohort % shape.n_sites
            start = FIRST_START + _weeks(2 * cohort)
        else:
            site = rng.randrange(shape.n_sites)
            start = FIRST_START + dt.timedelta(days=i)
        rows.append((fmt, site, start))
    return rows


def _patient_row(shape: StudyShape, rng: random.Random, i: int, fmt: str, site: int,
                 start: dt.date, course: _Course) -> dict[str, str]:
    # drawn, not cycled with the index: a cycle would confound them with the format
    area = rng.choice(PROBLEM_AREAS)
    condition = shape.conditions[i] if i < len(shape.conditions) else rng.choice(
        shape.conditions)
    secondary = rng.choice(["", *[a for a in PROBLEM_AREAS if a != area]])
    group = ""
    if fmt == "group" and not shape.group_ids_missing:
        group = f"site{site}_group{(start - FIRST_START).days // 14}"
    row = {
        "patient_id": f"P{i:04d}", "site_id": f"site{site}",
        "therapist_id": f"T{rng.randrange(max(1, shape.n_patients // 8) + 1)}"
        if shape.therapists == "recorded" else "",
        "condition": condition, "format": fmt,
        "group_id": group, "problem_area": area, "secondary_problem_area": secondary,
        "referral_date": (start - dt.timedelta(days=rng.randint(7, 60))).isoformat(),
        "start_date": start.isoformat(),
        "end_date": course.end_date.isoformat() if course.end_date else "",
        "end_reason": course.end_reason, "age": str(rng.randint(18, 80)),
        "sex": rng.choice(["female", "male", ""]),
        "maintenance": rng.choice(["yes", "no", ""]),
        "arm": ["ipt", "usual_care"][rng.randrange(shape.arms)] if shape.arms else "",
    }
    return row


def _session_rows(shape: StudyShape, rng: random.Random, pid: str,
                  course: _Course) -> list[dict[str, str]]:
    scored = _scored_visits(shape, course)
    severity = {name: rng.uniform(0.4, 0.9) for name in shape.instruments}
    n = max(len(course.visits) - 1, 1)
    rows = []
    for k, (number, date, attended) in enumerate(course.visits):
        row = {"patient_id": pid, "session_number": str(number),
               "session_date": date.isoformat(),
               "attendance": "attended" if attended else rng.choice(
                   ["did_not_attend", "cancelled_by_patient", "cancelled_by_service"])}
        for name in CATALOGUE:
            row[name] = (_score(rng, name, severity[name], k / n, shape.improvement)
                         if number in scored and name in shape.instruments else "")
        rows.append(row)
    return rows


def _followup_rows(shape: StudyShape, rng: random.Random, pid: str,
                   course: _Course) -> list[dict[str, str]]:
    if shape.followups == "none" or course.end_reason == "ongoing":
        return []
    last = max(date for _, date, _ in course.visits)
    offsets = [0] if shape.followups == "on_discharge" else []
    offsets += [13 * 7, 26 * 7, 52 * 7][: rng.randint(1, 3)]
    rows = []
    relapsed = False
    for days in offsets:
        relapse = shape.relapses and not relapsed and days > 0 and rng.random() < 0.25
        relapsed = relapsed or relapse
        row = {"patient_id": pid, "followup_date": (last + dt.timedelta(days=days)).isoformat()}
        for name in FOLLOWUP_INSTRUMENTS:
            row[name] = (_score(rng, name, 0.7 if relapse else 0.3, 0.0)
                         if name in shape.instruments else "")
        row["clinician_relapse"] = "yes" if relapse else rng.choice(["no", ""])
        row["event"] = "relapse" if relapse else "none"
        rows.append(row)
    return rows


def study_tables(shape: StudyShape) -> dict[str, pd.DataFrame]:
    """The shape's tables (all cells text, as they would be read from CSV)."""
    rng = random.Random(shape.seed)
    patients, sessions, followups = [], [], []
    for i, (fmt, site, start) in enumerate(_groups(shape, rng)):
        course = _course(shape, rng, start, i)
        patient = _patient_row(shape, rng, i, fmt, site, start, course)
        patients.append(patient)
        sessions += _session_rows(shape, rng, patient["patient_id"], course)
        followups += _followup_rows(shape, rng, patient["patient_id"], course)
    drop = [] if shape.therapists != "absent" else ["therapist_id"]
    drop += [] if shape.maintenance else ["maintenance"]
    drop += [] if shape.arms else ["arm"]
    tables = {
        "patients": pd.DataFrame(patients, columns=PATIENT_COLUMNS).drop(columns=drop),
        "sessions": pd.DataFrame(sessions),
    }
    if shape.followups != "none":
        tables["followups"] = pd.DataFrame(
            followups, columns=["patient_id", "followup_date", *FOLLOWUP_INSTRUMENTS,
                                "clinician_relapse", "event"])
    return tables


def write_study(shape: StudyShape, folder: Path) -> Path:
    """Write the shape's study folder (CSV files); return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in study_tables(shape).items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


# --------------------------------------------------------------------------- named shapes

#: The shapes the issue names, each a real kind of study.
NAMED_SHAPES: Mapping[str, StudyShape] = {
    "one_patient": StudyShape(n_patients=1, instruments=("phq9",), n_sessions=16),
    "bdi2_sparse_trial_no_therapists": StudyShape(
        n_patients=30, instruments=("bdi2",), schedule="sparse", therapists="absent",
        arms=2),
    "group_without_group_ids": StudyShape(
        n_patients=24, instruments=("phq9",), formats=("group",), group_ids_missing=True),
    "gad7_only_with_followups": StudyShape(
        n_patients=30, instruments=("gad7",), conditions=("anxiety",), followups="after",
        n_sessions=11),
    "one_post_baseline_score": StudyShape(n_patients=40, scoring="one_post_baseline",
                                          formats=("individual", "group")),
    "all_endpoints_missing": StudyShape(n_patients=40, scoring="baseline_only",
                                        formats=("individual", "group"), followups="after"),
    "one_condition_one_format": StudyShape(n_patients=40, instruments=("phq9", "gad7")),
    "followup_on_discharge_day": StudyShape(n_patients=20, followups="on_discharge"),
    "no_relapses_at_followup": StudyShape(n_patients=30, followups="after", relapses=False),
    # seven patients: the Wilson limits of 0/7 and 7/7 are not exactly 0 and 1 in floating point
    "everyone_responds": StudyShape(n_patients=7, instruments=("phq9",), improvement="everyone"),
    "no_one_responds": StudyShape(n_patients=7, instruments=("phq9",), improvement="no_one"),
}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    for shape_name, named in NAMED_SHAPES.items():
        write_study(named, out / shape_name)
        print(f"{shape_name}: {named}")
