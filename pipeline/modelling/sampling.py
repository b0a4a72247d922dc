r"""Sampling patients: a reproducible pseudo-random sample by a keyed hash of the id.

Registry-scale data (a national service's million patients a year) is too large for some
models. The sample is the ``limit`` patients with the smallest keyed hash of their id
(``pandas.util.hash_pandas_object``, key :data:`SAMPLE_HASH_KEY`): a simple random sample
in effect, the same whatever the row order, and largely the same when patients are added,
so reruns and updates are comparable (a seeded ``rng.choice`` changes entirely when one
patient is added). Estimates keep their meaning; their standard errors grow to about
:math:`\sqrt{N/m}` times those of a fit to all :math:`N` patients (Cochran 1977, ch. 2).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["SAMPLE_HASH_KEY", "hash_sample"]

SAMPLE_HASH_KEY: Final = "ipt-outcomes-smp"  # 16 bytes, as pandas requires


def hash_sample(patient_ids: pd.Series, limit: int | None) -> npt.NDArray[np.intp]:
    """Positions of the sampled patients, in their original order.

    Parameters
    ----------
    patient_ids : Series
        One id per patient (unique).
    limit : int or None
        At most this many patients; None keeps every patient.

    Returns
    -------
    array of int
        Sorted positions into ``patient_ids`` (all of them when ``limit`` is None or not
        smaller than the number of patients).
    """
    total = len(patient_ids)
    if limit is None or total <= limit:
        return np.arange(total, dtype=np.intp)
    hashes = pd.util.hash_pandas_object(patient_ids.astype(str), index=False,
                                        hash_key=SAMPLE_HASH_KEY).to_numpy()
    return np.sort(np.argsort(hashes, kind="stable")[:limit]).astype(np.intp)
