"""Runner: each analysis at its own boundary, and a run's ownership of OUT.

Modules
-------
``stages``
    The stages as functions from validated tables and a config to a ``StageOutput``.
``run``
    The orchestration of a run: validate once (or reuse ``OUT/validated/``), run the
    stages, write their outputs, the manifest and run log, render (``run_stages``,
    ``run_all``, ``validate``, ``emit``).
``artifacts``
    ``OUT/validated/``: the validated tables and per-patient outcomes as Parquet, internal
    to the run (``write``, ``read``, ``discard``).
``freshness``
    Content fingerprints of each stage's inputs, config and code (``fingerprints``).
``run_folder``
    Staged runs swapped in, the lock beside OUT, consistency of a run's folder.
``runlog``
    Wall time and peak memory per stage.
"""
