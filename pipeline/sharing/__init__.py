"""The one privacy layer between the analyses and anything shared outside the service.

Its job: whatever leaves a run for sharing passes through here. Today it holds
small-number suppression (:mod:`pipeline.sharing.suppression`: primary suppression of
counts 1..high, complementary (secondary) suppression across every published additive
relation -- table margins, and cells that tables repeat -- checked by linear programming)
and its application to the shared tables of the outcomes stage
(:mod:`pipeline.sharing.outcome_tables`). Pseudonyms (``pipeline.privacy``) and declared
columns are to move here as well.

Public functions
----------------
``suppression.protect_cells``, ``suppression.audit_column``, ``suppression.Relation``
    The general engine (also used by the clinic audit).
``suppression.margin_relations``, ``suppression.protect_tables``
    Relations of tidy tables with ``"all"`` margins, and their joint suppression.
``outcome_tables.share``
    The shared versions of the outcomes stage's tables.
"""
