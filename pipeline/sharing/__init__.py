"""The one privacy layer between the analyses and anything that leaves a run.

Modules
-------
``pseudonyms``
    Keyed pseudonyms (HMAC-SHA-256) for patient and therapist ids.
``publish``
    ``SharingOptions`` and what every table the CLI writes, every quarantine file and the
    validation failure cases pass through (``table``, ``failures``): ids pseudonymised
    (messages carry ids only as their own field). Cells and headers are defused when any
    CSV is written (``pipeline.io.write_csv``); validation writes declared columns only.
``suppression``
    Small-number suppression: primary (counts 1..high shown as ``<N``) and complementary
    (secondary, ``*``) across every published additive relation -- table margins, and
    cells that tables repeat -- checked by linear programming. Also used by the audit.
``cell_suppression``
    Its cell-level half: ``Relation``, ``protect_cells`` (the quick pass over one
    relation) and ``audit_column`` (the linear-programming audit); re-exported by
    ``suppression``.
``trajectory_tables``
    The small counts behind the trajectory stage's observed means.
``outcome_tables``, ``relapse_tables``
    Its application to the outcomes stage's shared tables and the patient flow, and to
    the relapse stage's tables (strata with margins, numbers at risk).
"""
