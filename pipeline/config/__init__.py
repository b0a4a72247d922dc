"""The study configuration: every outcome definition in force, with published defaults.

A study config is a YAML file (read with ``yaml.safe_load``); any key left out takes the
default below, an unknown key or a bad value is a ``ConfigError`` that names it. Each default
carries its source in ``SOURCES``, which the report's methods section prints.

Instruments come from the shipped catalogue (``data_schemas/instruments.csv``, loaded by
``data_schemas.instruments``): ``DEFAULT_RULES`` and the instrument entries of ``SOURCES``
are read from it. A config's ``instruments:`` section overrides a catalogued instrument's
thresholds or declares a new one (``min``, ``max`` and ``direction`` required); its
``conditions:`` list adds condition codes to the built-in ones.

Definitions (for an instrument where a lower score is better; for a ``higher_is_better``
scale improvement is a rise, caseness is a score at or below ``caseness`` and response by
percentage reduction and remission are not defined):

- caseness: baseline score >= ``caseness``;
- response: reduction from baseline of at least ``response_reduction`` (0.5 = 50%), i.e.
  ``(baseline - endpoint) / baseline >= 0.5``; undefined when the baseline is 0;
- remission: endpoint < ``remission_below`` (PHQ-9) or endpoint <= ``remission_at_most``
  (HAM-D-17);
- reliable change: a fall (rise) of at least ``reliable_change`` points, or, when that is not
  set, the Jacobson-Truax reliable change index RCI = (x2 - x1) / S_diff, with
  S_diff = sqrt(2 * SE^2) and SE = SD_pre * sqrt(1 - r), beyond +-1.96.

References: Kroenke, Spitzer & Williams (2001) J Gen Intern Med 16:606; Spitzer et al. (2006)
Arch Intern Med 166:1092; NHS England, NHS Talking Therapies Manual (2024) and its
measurement conventions; Frank et al. (1991) Arch Gen Psychiatry 48:851 (response and
remission); Jacobson & Truax (1991) J Consult Clin Psychol 59:12; Beck, Steer & Brown (1996)
BDI-II Manual.

Modules
-------
``sections``
    The frozen dataclasses (``StudyConfig`` and its sections), ``ConfigError``, ``DEFAULT_RULES``.
``loading``
    ``load(path)`` and ``from_mapping(values)``: read, build and check a config.
``resolve``
    ``for_data``, ``check_columns`` and ``resolved``: a loaded config set against the data.
``describe``
    ``SOURCES`` (the source of every default) and ``EXAMPLE`` (the commented example config).

Every public name is re-exported here: ``from pipeline import config; config.StudyConfig``.
"""

from __future__ import annotations

from pipeline.config.describe import EXAMPLE, SOURCES
from pipeline.config.loading import from_mapping, load
from pipeline.config.resolve import check_columns, for_data, resolved
from pipeline.config.sections import (
    BUILTIN_MODELS,
    CODE,
    DEFAULT_RULES,
    MODEL_NAME,
    RESERVED_COLUMNS,
    Audit,
    Comparison,
    ConfigError,
    Endpoint,
    InstrumentRules,
    ModelSpec,
    Populations,
    Relapse,
    StudyConfig,
    Trajectories,
    rules_from,
)

__all__ = [
    "BUILTIN_MODELS",
    "CODE",
    "DEFAULT_RULES",
    "EXAMPLE",
    "MODEL_NAME",
    "RESERVED_COLUMNS",
    "SOURCES",
    "Audit",
    "Comparison",
    "ConfigError",
    "Endpoint",
    "InstrumentRules",
    "ModelSpec",
    "Populations",
    "Relapse",
    "StudyConfig",
    "Trajectories",
    "check_columns",
    "for_data",
    "from_mapping",
    "load",
    "resolved",
    "rules_from",
]
