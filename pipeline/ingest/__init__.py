"""Ingest: read a study folder, clean it (no row dropped) and validate it against the
data contract (``data_schemas``), quarantining what fails with a reason.

Modules
-------
``clean``
    Normalise raw tables (names, codes, dates, whitespace) without dropping a row.
``validate``
    ``run(raw, ...) -> ValidationResult``: pandera contracts, lazy, every failing row
    quarantined with the file, row and rule; ``rows_in = valid + quarantined``.

Reading files is ``pipeline.io`` (the disk edge); this package works on what it read.
"""
