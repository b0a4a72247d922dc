"""Runner: each analysis at its own boundary, and a run's ownership of OUT.

Modules
-------
``stages``
    The stages as functions from validated tables and a config to a ``StageOutput``.
``run_folder``
    Staged runs swapped in, the lock beside OUT, consistency of a run's folder.
``runlog``
    Wall time and peak memory per stage.
"""
