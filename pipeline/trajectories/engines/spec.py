"""The model a caller asks the engines to fit: outcome, fixed part and random structure.

Public types only, importing nothing from the engines (every engine module imports them):

- :class:`MixedSpec` -- the model (lme4 notation by :meth:`MixedSpec.lme4`);
- :class:`RandomEffect` -- random coefficients of one grouping level;
- :class:`VarianceComponent` -- one variance of a nesting level;
- :class:`EngineError` -- a model that no engine could fit.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EngineError", "MixedSpec", "RandomEffect", "VarianceComponent"]


class EngineError(RuntimeError):
    """A model that no engine could fit; the message says why."""


@dataclass(frozen=True)
class RandomEffect:
    """Random coefficients of one grouping level.

    Parameters
    ----------
    level : str
        Grouping column (e.g. ``patient_id``); ``"a:b"`` is the interaction of two columns.
    terms : tuple of str
        ``"1"`` for the intercept, otherwise numeric columns (e.g. ``"weeks"``).
    correlated : bool
        True: one unstructured covariance matrix (lme4 ``(1 + weeks | g)``); False:
        independent variances (lme4 ``(1 + weeks || g)``).
    """

    level: str
    terms: tuple[str, ...] = ("1",)
    correlated: bool = True


@dataclass(frozen=True)
class VarianceComponent:
    """One variance of a nesting level (therapy group, therapist).

    Parameters
    ----------
    level : str
        Grouping column.
    term : str
        ``"1"`` (a random intercept) or a numeric column (a random slope).
    where : str or None
        A boolean column: the component applies to these rows only (e.g. ``is_group`` for
        the therapy group of group-format patients; lme4 ``(0 + is_group | group_id)``).
    """

    level: str
    term: str = "1"
    where: str | None = None


@dataclass(frozen=True)
class MixedSpec:
    """A linear mixed model: outcome, fixed effects and random-effects structure.

    Parameters
    ----------
    outcome : str
        Outcome column.
    fixed : str
        Right-hand side of the fixed part in Wilkinson-Rogers notation (``formulaic``), e.g.
        ``"weeks * (condition + format) + age"``. Categorical columns use treatment coding
        with the first category (or, for text, the alphabetically first value) as reference.
    random : tuple of RandomEffect
        Random coefficients per grouping level (usually the patient).
    components : tuple of VarianceComponent
        Variance components of nesting levels.
    reml : bool
        REML (default) or maximum likelihood.
    """

    outcome: str
    fixed: str
    random: tuple[RandomEffect, ...]
    components: tuple[VarianceComponent, ...] = ()
    reml: bool = True

    def lme4(self) -> str:
        """The model in lme4 notation (for reports and for the R check)."""
        parts = [self.fixed]
        for effect in self.random:
            terms = " + ".join(effect.terms) if "1" in effect.terms else (
                "0 + " + " + ".join(effect.terms))
            parts.append(f"({terms} {'|' if effect.correlated else '||'} {effect.level})")
        for comp in self.components:
            # a variance component has no intercept beside it: (0 + weeks | therapist_id),
            # never (weeks | therapist_id), which lme4 reads as a correlated intercept too
            term = comp.term if comp.where is None else comp.where
            parts.append(f"({'1' if term == '1' else '0 + ' + term} | {comp.level})")
        return f"{self.outcome} ~ " + " + ".join(parts)
