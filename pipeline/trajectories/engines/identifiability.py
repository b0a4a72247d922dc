"""Refuse what lme4 refuses: random effects that the data cannot identify.

- :func:`check_identifiable` -- lme4's default checks on a prepared model, raising
  :class:`pipeline.estimability.NotEstimable` with the reason.
"""

from __future__ import annotations

from pipeline.estimability import require
from pipeline.trajectories.engines.design import Prepared

__all__ = ["check_identifiable"]


def check_identifiable(prepared: Prepared) -> None:
    """Refuse what lme4 refuses: random effects the data cannot identify.

    lme4's default checks (``lmerControl``; Bates et al. 2015, section 2.2), all "stop":

    - ``check.nlev.gtr.1``: every grouping factor has more than one level;
    - ``check.nobs.vs.nlev``: every grouping factor has fewer levels than there are
      observations (one score per patient cannot separate a patient intercept from the
      residual: any split of the variance fits equally well);
    - ``check.nobs.vs.nRE``: for every random-effects term, more observations than random
      effects (levels times terms per level), else the random-effects parameters and the
      residual variance are unidentifiable.

    Raises
    ------
    pipeline.estimability.NotEstimable
        With lme4's reason and what would make the model estimable.
    """
    n_obs = int(prepared.y.size)
    for block in prepared.blocks:
        terms = ["1" if t == "(Intercept)" else t for t in block.terms]
        term = f"({' + '.join(terms)} | {block.level})"
        require(block.n_levels > 1,
                f"{block.level} has only {block.n_levels} level in the data; a random effect "
                "needs more than one (lme4: grouping factors must have > 1 sampled level)",
                f"data from more than one {block.level}, or a model without {term}")
        require(block.n_levels < n_obs,
                f"{block.n_levels:,} levels of {block.level} for {n_obs:,} observations: "
                "the number of levels of each grouping factor must be < number of "
                "observations (lme4), so the variance split is not identified",
                f"repeated scores per {block.level}, or a model without {term}")
        n_effects = block.n_levels * len(block.terms)
        require(n_obs > n_effects,
                f"number of observations ({n_obs:,}) <= number of random effects "
                f"({n_effects:,}) for term {term}; the random-effects parameters and the "
                "residual variance are unidentifiable (lme4)",
                f"more scores per {block.level} than random terms, or a simpler random part "
                f"(e.g. (1 | {block.level}))")
