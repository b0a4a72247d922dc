"""IPT outcomes: validation, outcomes, trajectories, relapse and reports for
Interpersonal Psychotherapy services and trials.

Stages are pure functions from DataFrames to DataFrames or result objects; only
``pipeline.io`` (and the report renderer) touch the disk, and only ``pipeline.cli``
parses arguments.
"""

__version__ = "0.1.0"
