"""IPT outcomes: validation, outcomes, trajectories, relapse and reports for
Interpersonal Psychotherapy services and trials.

The data's path through the packages (``docs/ARCHITECTURE.md`` draws it)::

    ingest -> outcomes -> trajectories | relapse | audit -> sharing -> report

Packages
--------
``ingest``
    Read, clean (no row dropped) and validate a study folder; quarantine with reasons.
``outcomes``
    Per-patient outcomes from the instrument catalogue; rates, comparison, benchmarks.
``trajectories``
    Mixed-effects models of scores over time, their formulas and fitting engines.
``relapse``
    Did the gains last: the relapse cohort, Kaplan--Meier, Turnbull, Cox.
``audit``
    Sites and therapists against each other and benchmarks: case mix, funnels.
``modelling``
    What the models share: pooling rare levels, sampling patients for a model.
``sharing``
    The one privacy layer: pseudonyms, declared columns, small-number suppression.
``report``
    Figures, the HTML report, tables for papers and the manifest (the only drawing code).
``runner``
    Each analysis at its own boundary; a run's ownership of OUT.
``columnar``
    The per-patient outcomes and rates as one query on DuckDB or Spark (registry scale).
``demo``
    The synthetic demo cohort (our own generator, with its known truth).

Modules
-------
``cli``
    The command line: parses arguments, decides what the user sees.
``config``
    The study configuration (``study.yaml``): defaults, checks, descriptions.
``estimability``
    ``NotEstimable``, ``require`` and ``attempt``: what became of each analysis.
``io``
    The disk edge: reading study files, writing under OUT (nothing else opens files).
``study``
    For notebooks: load a study folder, or a finished run's artifacts.
"""

__version__ = "0.1.0"
