"""pipeline.modelling: the one rule for pooling rare levels, and the one patient sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.modelling.pooling import POOLED, pool_rare_levels, rare_levels
from pipeline.modelling.sampling import hash_sample


def _labels(counts: dict[str, int]) -> pd.Series:
    return pd.Series([level for level, n in counts.items() for _ in range(n)])


def test_rare_levels_pooled_and_named() -> None:
    # a: 6, b: 3, c: 3 patients; minimum 3: nothing rare
    values = _labels({"a": 6, "b": 3, "c": 3})
    assert pool_rare_levels(values, 3).pooled == ()
    # minimum 4: b and c rare, pooled (6 patients, not rare) and kept as other_pooled
    result = pool_rare_levels(values, 4, name="x")
    assert result.pooled == ("b", "c") and result.merged_into is None
    assert list(result.values) == ["a"] * 6 + [POOLED] * 6
    assert result.reference == "a"
    assert result.notes == ("x: levels b, c pooled into other_pooled (fewer than 4 patients)",)


def test_still_rare_pool_merged_into_reference() -> None:
    # b (2) and c (1) pooled: 3 patients, still < 4, merged into the commonest level a
    result = pool_rare_levels(_labels({"a": 5, "d": 4, "b": 2, "c": 1}), 4, name="x")
    assert result.merged_into == "a" and result.reference == "a"
    assert result.values.value_counts().to_dict() == {"a": 8, "d": 4}
    assert "merged into reference a" in result.notes[1]
    # a preferred reference takes the pooled level instead
    preferred = pool_rare_levels(_labels({"a": 5, "d": 4, "b": 2, "c": 1}), 4,
                                 preferred=("d",))
    assert preferred.values.value_counts().to_dict() == {"a": 5, "d": 7}
    # a single rare level is merged too (pooled alone it would still be rare)
    single = pool_rare_levels(_labels({"a": 5, "b": 4, "c": 1}), 4)
    assert single.pooled == ("c",) and single.merged_into == "a"


def test_patients_counted_once() -> None:
    # b has 4 rows but 2 patients: rare at minimum 3
    values = pd.Series(["a", "a", "a", "b", "b", "b", "b"])
    first = np.array([True, True, True, True, False, True, False])
    assert rare_levels(values, 3) == []
    assert rare_levels(values, 3, first=first) == ["b"]


def test_outcome_needs_events_and_non_events() -> None:
    # level b has 5 patients, all with the event: separation, so rare
    values = _labels({"a": 6, "b": 5, "c": 5})
    y = pd.Series([1, 0, 1, 0, 1, 0] + [1] * 5 + [0, 1, 0, 1, 0])
    assert rare_levels(values, 5, outcome=y) == ["b"]
    result = pool_rare_levels(values, 5, outcome=y, name="x")
    assert result.merged_into == "a"  # other_pooled = b alone: still all events
    assert "or no events or no non-events" in result.notes[0]


def test_one_level_left_has_no_reference() -> None:
    result = pool_rare_levels(_labels({"a": 2, "b": 1}), 5)
    assert result.reference is None and set(result.values) == {POOLED}


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 12), min_size=1, max_size=6),
       min_patients=st.integers(1, 10), with_outcome=st.booleans(), seed=st.integers(0, 99))
def test_pooling_properties(counts: list[int], min_patients: int, with_outcome: bool,
                            seed: int) -> None:
    values = _labels({f"L{i}": n for i, n in enumerate(counts)})
    outcome = (pd.Series(np.random.default_rng(seed).integers(0, 2, len(values)))
               if with_outcome else None)
    result = pool_rare_levels(values, min_patients, outcome=outcome, name="x")
    # every row keeps a level, in place
    assert len(result.values) == len(values) and result.values.notna().all()
    assert (result.values.index == values.index).all()
    # no level left rare unless only one level is left
    if result.values.nunique() > 1:
        assert rare_levels(result.values, min_patients, outcome) == []
        assert result.reference in set(result.values)
    # the notes name every pooled level, and only rare levels were pooled
    assert set(result.pooled) == set(rare_levels(values, min_patients, outcome))
    for level in result.pooled:
        assert level in result.notes[0]
    # rows of levels that were not rare keep their label
    kept = ~values.isin(result.pooled)
    assert (result.values[kept] == values[kept]).all()


def test_hash_sample_reproducible_order_free_and_stable() -> None:
    ids = pd.Series([f"P{i:04d}" for i in range(1000)])
    chosen = hash_sample(ids, 100)
    assert len(chosen) == 100 and (np.diff(chosen) > 0).all()
    assert (hash_sample(ids, 100) == chosen).all()
    assert (hash_sample(ids, None) == np.arange(1000)).all()
    assert (hash_sample(ids, 1000) == np.arange(1000)).all()
    shuffled = ids.sample(frac=1.0, random_state=2).reset_index(drop=True)
    assert set(shuffled.iloc[hash_sample(shuffled, 100)]) == set(ids.iloc[chosen])
    # adding patients keeps most of the sample (each old member stays unless displaced)
    more = pd.concat([ids, pd.Series([f"Q{i:04d}" for i in range(100)])], ignore_index=True)
    again = set(more.iloc[hash_sample(more, 100)])
    assert len(again & set(ids.iloc[chosen])) >= 80
