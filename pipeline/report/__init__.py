"""Report: everything a reader sees, drawn from the tables the stages returned.

Modules
-------
``html``
    ``write(out_dir)``: the HTML report (jinja2) from a run's outputs.
``findings``
    The first screen's sentences, from the tables.
``figures``, ``outcome_plots``, ``trajectory_plots``, ``relapse_plots``, ``audit_plots``
    The figures (matplotlib lives only here).
``stage_figures``
    ``draw(stage, output, config)``: each stage's figures from the data it returned.
``paper_tables``, ``paper_export``
    Tables 1--5 for papers (CSV, LaTeX, Word); ``paper_tables`` builds Tables 2 and 3 and
    re-exports ``paper_cells`` (labels, formatting, ``PaperTable``), ``paper_baseline``
    (Table 1), ``paper_growth`` (Table 4) and ``paper_relapse`` (Table 5).
``manifest``
    Software versions, inputs and seeds of a run.
"""
