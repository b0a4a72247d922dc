"""The instrument catalogue (``data_schemas/instruments.csv``): complete, sourced, parsed."""

from __future__ import annotations

import csv
import io

import pytest

from data_schemas.instruments import (
    CATALOGUE,
    SOURCE_OF,
    THRESHOLDS,
    catalogue_text,
    load_catalogue,
    match_columns,
    parse_catalogue,
)

REQUIRED = ("phq9", "gad7", "hamd17", "bdi2", "madrs", "qids_sr16", "hama", "epds", "wsas",
            "core10", "pdss", "spin", "pcl5", "ocir", "hai", "iesr", "mi")


def test_catalogue_has_every_required_instrument() -> None:
    assert set(REQUIRED) <= set(load_catalogue())


def test_every_value_in_the_file_has_a_source() -> None:
    rows = list(csv.DictReader(io.StringIO(catalogue_text())))
    assert len(rows) == len(CATALOGUE)
    for row in rows:
        for value, source in SOURCE_OF.items():
            if row[value].strip():
                text = row[source].strip()
                assert text, f"{row['name']}.{value} has no source"
                assert not text.lower().startswith(("not defined", "not confirmed")), \
                    f"{row['name']}.{value} is set but its source says it is not"


def test_every_set_value_of_a_loaded_instrument_carries_its_source() -> None:
    for instrument in CATALOGUE.values():
        for value in THRESHOLDS:
            if getattr(instrument, value) is not None:
                assert instrument.sources[value], (instrument.name, value)
        assert instrument.sources["min"] and instrument.sources["max"]
        assert instrument.min < instrument.max


def test_published_values() -> None:
    bdi = CATALOGUE["bdi2"]
    assert (bdi.response_reduction, bdi.remission_at_most, bdi.caseness) == (0.5, 13, 14)
    assert (bdi.reliability, bdi.sd_pre, bdi.jt_cutoff) == (0.92, 12.75, "c")
    madrs = CATALOGUE["madrs"]
    assert (madrs.min, madrs.max, madrs.remission_below, madrs.response_reduction) == \
        (0, 60, 10, 0.5)
    core = CATALOGUE["core10"]
    assert (core.max, core.caseness, core.reliable_change) == (40, 11, 6)
    mi = CATALOGUE["mi"]
    assert (mi.min, mi.max, mi.whole, mi.caseness, mi.reliable_change) == (1, 5, False, 2.3,
                                                                            0.73)
    assert CATALOGUE["hamd17"].whole is False
    gad = CATALOGUE["gad7"]
    assert gad.response_reduction is None and gad.remission_below is None


def test_unconfirmed_values_are_left_undefined() -> None:
    ocir = CATALOGUE["ocir"]
    assert ocir.caseness is None and ocir.reliable_change is None
    assert "ocir" in CATALOGUE  # the scale and its range are still checked


def test_parse_rejects_a_bad_direction() -> None:
    text = catalogue_text().replace("lower_is_better", "sideways", 1)
    with pytest.raises(ValueError, match="direction"):
        parse_catalogue(text)


def test_columns_match_case_insensitively() -> None:
    assert match_columns(["patient_id", "MADRS", " Phq9 "], ["phq9", "gad7", "madrs"]) == \
        ["phq9", "madrs"]


def test_range_text() -> None:
    assert CATALOGUE["phq9"].range_text() == "0-27"
    assert CATALOGUE["mi"].range_text() == "1-5"
