"""What every table and message passes through on its way out of a run.

:func:`table` and :func:`failures` are the only places where ids are replaced by keyed
pseudonyms for the CLI's outputs (the audit calls :mod:`pipeline.sharing.pseudonyms` itself,
because it orders its rows by pseudonym before it suppresses, and its stage says so with
``StageOutput.pseudonymised``). Cells and headers that a spreadsheet would run as a
formula are defused when any CSV is written (``pipeline.io.write_csv``), and validation
writes only the contract's declared columns (``pipeline.ingest.validate.declared_columns``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.sharing import pseudonyms

#: The columns holding ids, and the prefix of their pseudonyms.
PATIENT_ID = ("patient_id", "p")
THERAPIST_ID = ("therapist_id", "t")


@dataclass(frozen=True)
class SharingOptions:
    """How a run's outputs are protected.

    Attributes
    ----------
    keep_ids : bool
        Keep real patient ids (for a researcher on a secure machine; not for sharing).
    no_suppress : bool
        Show small counts (internal research use; not for sharing).
    pseudonymise_therapists : bool
        Replace therapist ids by keyed pseudonyms too.
    """

    keep_ids: bool = False
    no_suppress: bool = False
    pseudonymise_therapists: bool = False

    def id_columns(self) -> tuple[tuple[str, str], ...]:
        """The (column, prefix) pairs to pseudonymise."""
        patients = () if self.keep_ids else (PATIENT_ID,)
        return (*patients, *((THERAPIST_ID,) if self.pseudonymise_therapists else ()))


def table(frame: pd.DataFrame, options: SharingOptions, key: bytes,
          pseudonymised: bool = False) -> pd.DataFrame:
    """``frame`` as it may leave the run: its id columns pseudonymised (unless the stage
    that built it already did, ``pseudonymised``)."""
    columns = () if pseudonymised else options.id_columns()
    return pseudonyms.pseudonymise_columns(frame, key, columns) if columns else frame


def failures(frame: pd.DataFrame, options: SharingOptions, key: bytes) -> pd.DataFrame:
    """Validation's failure cases: messages never hold an id (validation keeps a failing id
    in the ``value`` field of its row), so only that field is pseudonymised."""
    if options.keep_ids or frame.empty:
        return frame
    out = frame.copy()
    is_id = out["column"] == PATIENT_ID[0]
    out.loc[is_id, "value"] = pseudonyms.pseudonymise(out.loc[is_id, "value"], key,
                                                      PATIENT_ID[1])
    return out
