"""The data stages on a columnar engine, for registries beyond one machine's memory.

The per-patient outcomes and the rates, written once as Ibis expressions, run embedded in
DuckDB (default: out of core, no server) or on Apache Spark (a warehouse or a cluster);
the small aggregated tables come back to pandas, where the intervals and the sharing
rules are the in-memory route's own. See ``docs/SCALING.md``.

Modules
-------
engine
    ``connect`` (DuckDB or Spark) and ``read_tables`` (the I/O edge).
checks
    ``check``: the contract's row rules the derivation relies on, counted on the engine.
patient_outcomes
    ``derive``: the ``patient_outcomes`` table as one query.
rates
    ``response_rates``: the rates table from engine-side cell sums.
run
    ``run``: the ``ipt-outcomes columnar`` edge (read, check, derive, write).
"""
