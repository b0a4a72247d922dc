"""The instrument catalogue: outcome measures as data, each value with its published source.

``instruments.csv`` (shipped with the package) has one row per instrument: its column name
in the study files (``name``), a label, the score range and whether scores are whole
numbers, the direction of improvement, and the thresholds that define its outcomes. An
empty threshold means the outcome is *not defined* for that instrument, and the pipeline
then reports nothing for it (never a 0% rate). Each group of values has a ``source_*``
column naming its publication, or saying why the value is left empty.

Definitions, for an instrument where a lower score is better (``lower_is_better``; for a
``higher_is_better`` scale the inequalities turn round and response by percentage
reduction is not defined):

- caseness: score >= ``caseness``;
- response: (baseline - endpoint) / baseline >= ``response_reduction``;
- remission: endpoint < ``remission_below``, or endpoint <= ``remission_at_most``;
- reliable change: a change of at least ``reliable_change`` points, or, when only
  ``reliability`` and ``sd_pre`` are given, the Jacobson-Truax index
  RCI = (x2 - x1) / S_diff with S_diff = sqrt(2 SE^2), SE = sd_pre sqrt(1 - reliability),
  beyond +-1.96 (Jacobson & Truax 1991, J Consult Clin Psychol 59:12);
- Jacobson-Truax cut-off ``jt_cutoff``: a, b or c from the clinical and functional norms,
  or ``caseness`` (empty).

Adding a measure means adding a row with its published values and sources; a study may
also declare its own instruments in its config (``pipeline.config``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources
from typing import Final, Literal

Direction = Literal["lower_is_better", "higher_is_better"]
JtCutoff = Literal["a", "b", "c", "caseness"]

#: Threshold columns of the catalogue (and of ``instruments:`` in a study config).
THRESHOLDS: Final = (
    "caseness", "response_reduction", "remission_below", "remission_at_most",
    "reliable_change", "reliability", "sd_pre", "clinical_mean", "clinical_sd",
    "functional_mean", "functional_sd",
)
#: Which source column documents which value.
SOURCE_OF: Final[dict[str, str]] = {
    "label": "source_scale", "min": "source_scale", "max": "source_scale",
    "whole": "source_scale", "direction": "source_scale",
    "caseness": "source_caseness",
    "response_reduction": "source_response",
    "remission_below": "source_remission", "remission_at_most": "source_remission",
    "reliable_change": "source_reliable_change", "reliability": "source_reliable_change",
    "sd_pre": "source_reliable_change",
    "clinical_mean": "source_norms", "clinical_sd": "source_norms",
    "functional_mean": "source_norms", "functional_sd": "source_norms",
    "jt_cutoff": "source_norms",
}
DIRECTIONS: Final = ("lower_is_better", "higher_is_better")
CATALOGUE_FILE: Final = "instruments.csv"


@dataclass(frozen=True)
class Instrument:
    """One outcome measure: its scale, its outcome thresholds and their sources.

    A threshold of ``None`` means the outcome is not defined for this instrument.
    ``sources`` maps a value's name (``"caseness"``, ``"min"`` ...) to its source text.
    """

    name: str
    label: str
    min: float
    max: float
    whole: bool = True
    direction: Direction = "lower_is_better"
    caseness: float | None = None
    response_reduction: float | None = None
    remission_below: float | None = None
    remission_at_most: float | None = None
    reliable_change: float | None = None
    reliability: float | None = None
    sd_pre: float | None = None
    clinical_mean: float | None = None
    clinical_sd: float | None = None
    functional_mean: float | None = None
    functional_sd: float | None = None
    jt_cutoff: JtCutoff = "caseness"
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def lower_is_better(self) -> bool:
        """True when a fall in score is an improvement."""
        return self.direction == "lower_is_better"

    def range_text(self) -> str:
        """The score range as text, e.g. ``0-27``."""
        return f"{_number(self.min)}-{_number(self.max)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _row_to_instrument(row: dict[str, str]) -> Instrument:
    """One catalogue row as an ``Instrument`` (the row is trusted: it ships with us)."""
    direction = row["direction"].strip()
    jt = row["jt_cutoff"].strip() or "caseness"
    if direction not in DIRECTIONS or jt not in ("a", "b", "c", "caseness"):
        raise ValueError(f"{CATALOGUE_FILE}: bad direction or jt_cutoff for {row['name']!r}")
    thresholds = {name: _float(row[name]) for name in THRESHOLDS}
    given = {**{name: value for name, value in thresholds.items() if value is not None},
             "label": 1, "min": 1, "max": 1, "whole": 1, "direction": 1}
    if jt != "caseness":
        given["jt_cutoff"] = 1
    sources = {value: row[column].strip() for value, column in SOURCE_OF.items()
               if value in given}
    return Instrument(
        name=row["name"].strip(), label=row["label"].strip(),
        min=float(row["min"]), max=float(row["max"]),
        whole=row["whole"].strip().lower() == "true",
        direction=direction,  # type: ignore[arg-type]
        jt_cutoff=jt,  # type: ignore[arg-type]
        sources=sources, **thresholds,
    )


def parse_catalogue(text: str) -> dict[str, Instrument]:
    """Instruments from catalogue CSV text, keyed by name, in file order."""
    rows = csv.DictReader(io.StringIO(text))
    instruments = [_row_to_instrument(row) for row in rows]
    return {instrument.name: instrument for instrument in instruments}


def catalogue_text() -> str:
    """The shipped catalogue file's text."""
    return (resources.files("data_schemas") / CATALOGUE_FILE).read_text(encoding="utf-8")


def load_catalogue() -> dict[str, Instrument]:
    """The shipped instrument catalogue, keyed by column name (``phq9``, ``madrs`` ...)."""
    return parse_catalogue(catalogue_text())


def match_columns(columns: list[str] | tuple[str, ...], names: list[str] | tuple[str, ...]
                  ) -> list[str]:
    """The instrument ``names`` that appear among ``columns`` (case-insensitive), in the
    order of ``names``."""
    present = {str(c).strip().lower() for c in columns}
    return [name for name in names if name.lower() in present]


CATALOGUE: Final = load_catalogue()
