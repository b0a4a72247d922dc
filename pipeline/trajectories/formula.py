"""Parse lme4-style model formulas into a :class:`pipeline.trajectories.engines.MixedSpec`.

A formula is ``outcome ~ fixed terms + random terms``. The fixed terms use the usual
Wilkinson-Rogers notation (``+``, ``:``, ``*``, ``/``, ``^``, ``-1``/``0 +``) and the
functions ``I()``, ``log()``, ``exp()`` (arithmetic ``+ - * / **`` on column names and
numbers inside), ``poly(column, degree)`` and ``C(column)``, passed to ``formulaic``
unchanged. Because ``formulaic`` evaluates terms as Python, every formula is first checked
against the whitelist grammar of :mod:`pipeline.trajectories.formula_grammar` (no attribute access,
subscripts, strings, keywords or other functions); anything else is a
:class:`FormulaError` quoting the offending part. Random terms are lme4 "bars":

=====================================  ==============================================
``(1 | g)``                            random intercept per level of ``g``
``(1 + weeks | g)`` or ``(weeks | g)``  correlated random intercept and slope
``(0 + weeks | g)``                    random slope only
``(1 + weeks || g)``                   intercept and slope, uncorrelated
``(1 | a/b)``                          nested: ``(1 | a) + (1 | a:b)``
``(1 | a:b)``                          one level per combination of ``a`` and ``b``
=====================================  ==============================================

Terms inside a bar must be ``1``, ``0`` or column names. A bar's intercept is implied
unless ``0`` or ``-1`` is given, as in lme4.

References
----------
Bates D, Maechler M, Bolker B, Walker S (2015). Fitting linear mixed-effects models using
lme4. Journal of Statistical Software 67(1):1-48 (Table 2: the bar notation).
Wilkinson GN, Rogers CE (1973). Symbolic description of factorial models for analysis of
variance. Applied Statistics 22:392-399.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pipeline.trajectories.engines import MixedSpec, RandomEffect
from pipeline.trajectories.formula_grammar import FormulaError, check_formula

__all__ = ["FormulaError", "ParsedFormula", "parse", "to_spec"]

_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula taken apart.

    Attributes
    ----------
    outcome : str
        Left-hand side.
    fixed : str
        Fixed part (``"1"`` when only random terms were given).
    random : tuple of RandomEffect
        One entry per bar (``a/b`` expanded).
    """

    outcome: str
    fixed: str
    random: tuple[RandomEffect, ...]


def split_top_level(text: str, separator: str = "+") -> list[str]:
    """Split ``text`` at ``separator`` characters outside parentheses; strip the pieces.

    >>> split_top_level("a + (1 + b | g) + c")
    ['a', '(1 + b | g)', 'c']
    """
    pieces: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise FormulaError(f"unbalanced parentheses in {text!r}")
        if char == separator and depth == 0:
            pieces.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise FormulaError(f"unbalanced parentheses in {text!r}")
    pieces.append("".join(current).strip())
    return pieces


def _bar(piece: str) -> tuple[str, str, bool] | None:
    """(terms, grouping, correlated) of a ``( ... | g)`` piece; None for a fixed term."""
    if not (piece.startswith("(") and piece.endswith(")")):
        return None
    inner = piece[1:-1]
    if split_top_level(inner, "|") == [inner]:
        return None
    double = "||" in inner
    left, _, group = inner.partition("||" if double else "|")
    return left.strip(), group.strip(), not double


def _bar_terms(left: str, piece: str) -> tuple[str, ...]:
    """Random terms of a bar, intercept first when present."""
    parts = []
    for chunk in split_top_level(left.replace("-", "+-"), "+"):
        if chunk:
            parts.append(chunk.replace(" ", ""))
    intercept = not any(p in ("0", "-1") for p in parts)
    names = [p for p in parts if p not in ("0", "-1", "1")]
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise FormulaError(f"random terms must be column names; got {', '.join(bad)} in "
                           f"{piece!r}")
    terms = (["1"] if intercept else []) + names
    if not terms:
        raise FormulaError(f"a random term without any effect: {piece!r}")
    return tuple(terms)


def _levels(group: str, piece: str) -> list[str]:
    """Grouping levels of a bar: ``a/b`` is ``a`` and ``a:b``."""
    parts = [p.strip() for p in group.split("/")]
    for part in parts:
        if not all(_NAME.match(p.strip()) for p in part.split(":")):
            raise FormulaError(f"grouping must be column names: {piece!r}")
    nested = [":".join(p.strip() for p in ":".join(parts[: i + 1]).split(":"))
              for i in range(len(parts))]
    return nested


def parse(formula: str) -> ParsedFormula:
    """Take an lme4 formula apart.

    Parameters
    ----------
    formula : str
        E.g. ``"bdi2 ~ baseline_bdi2 + weeks * arm + (1 + weeks | patient_id)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        Outside the grammar of :mod:`pipeline.trajectories.formula_grammar`, without ``~``, with
        unbalanced parentheses, or with a bar this module cannot read.

    Examples
    --------
    >>> p = parse("y ~ weeks * arm + (1 + weeks | patient_id) + (1 | site/therapist)")
    >>> p.fixed, [(r.level, r.terms) for r in p.random]
    ('weeks * arm', [('patient_id', ('1', 'weeks')), ('site', ('1',)), ('site:therapist', ('1',))])
    """
    if formula.count("~") != 1:
        raise FormulaError(f"a formula needs exactly one '~': {formula!r}")
    check_formula(formula)
    left, right = (side.strip() for side in formula.split("~"))
    if not _NAME.match(left):
        raise FormulaError(f"the outcome must be a column name: {left!r}")
    fixed, random = [], []
    for piece in split_top_level(right):
        bar = _bar(piece)
        if bar is None:
            if piece:
                fixed.append(piece)
            continue
        terms, group, correlated = bar
        for level in _levels(group, piece):
            random.append(RandomEffect(level, _bar_terms(terms, piece), correlated))
    return ParsedFormula(left, " + ".join(fixed) or "1", tuple(random))


def to_spec(formula: str, reml: bool = True) -> MixedSpec:
    """A :class:`MixedSpec` from an lme4 formula (all bars as random effects).

    Raises
    ------
    FormulaError
        If the formula cannot be parsed or has no random term.
    """
    parsed = parse(formula)
    if not parsed.random:
        raise FormulaError(f"no random term such as (1 | patient_id) in {formula!r}")
    return MixedSpec(parsed.outcome, parsed.fixed, parsed.random, reml=reml)
