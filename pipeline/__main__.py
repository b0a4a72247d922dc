"""``python -m pipeline`` is the same as the ``ipt-outcomes`` command."""

from pipeline.cli import main

raise SystemExit(main())
