"""A loaded config set against the data: covariate columns, primary instrument, plain data."""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.config.sections import ConfigError, StudyConfig


def check_columns(config: StudyConfig, patient_columns: list[str]) -> None:
    """Covariates the config names must be columns of the patients table.

    Raises
    ------
    ConfigError
        Naming the key, the covariate and the columns there are.
    """
    keys = {"comparison.covariates": config.comparison.covariates,
            "audit.case_mix_covariates": config.audit.case_mix_covariates}
    for key, covariates in keys.items():
        for i, name in enumerate(covariates):
            if name not in patient_columns:
                raise ConfigError(f"{key}[{i}]: {name!r} is not a column of the patients "
                                  f"table (columns: {', '.join(patient_columns)})")


def resolved(config: StudyConfig) -> dict[str, Any]:
    """The full config as plain data, for the manifest and the methods section."""
    return dataclasses.asdict(config)


def for_data(config: StudyConfig, scored: list[str]) -> tuple[StudyConfig, list[str]]:
    """The config with its primary instrument resolved against the data.

    When no session carries a score of ``primary_instrument`` but other instruments are
    scored, the first of those (in ``scored`` order) becomes the primary instrument and a
    note says so: a BDI-II trial run with the defaults is analysed on the BDI-II instead of
    reporting every PHQ-9 analysis as not estimable.

    Parameters
    ----------
    config : StudyConfig
        The loaded config.
    scored : list of str
        Instruments with at least one score in the sessions, in catalogue order.
    """
    if config.primary_instrument in scored or not scored:
        return config, []
    chosen = scored[0]
    note = (f"primary instrument {config.primary_instrument} has no scores in the data; "
            f"{chosen} is used instead (set primary_instrument in the study config)")
    return dataclasses.replace(config, primary_instrument=chosen), [note]
