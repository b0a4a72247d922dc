"""The whitelist grammar of model formulas, checked before any formula library sees one.

``formulaic`` evaluates every factor of a formula (``weeks``, ``log(weeks + 1)``,
``I(weeks ** 2)``) as Python code. A formula from a study config is therefore untrusted
input: ``I(weeks.__class__.__mro__[1].__subclasses__()...)`` would run arbitrary code.
This module accepts only the small language below and refuses everything else with a
:class:`FormulaError` quoting the offending part. It never evaluates anything: the text is
split by a hand-written tokenizer and checked by a recursive-descent recogniser.

Accepted language
-----------------
Tokens (whitespace between them is ignored):

- column names: ASCII letters, digits and ``_``, starting with a letter (``baseline_bdi2``);
  Python keywords (``lambda``, ``not``, ...) are refused;
- numbers: ``12``, ``0.5`` (digits, optionally a decimal point and digits);
- operators: ``~ + - * : / ^ ( ) | ||`` and, inside ``I()``, ``log()`` and ``exp()``
  only, ``**``; a ``,`` only between the two arguments of ``poly()``.

Grammar (EBNF; ``|`` as an operator of the formula is written ``'|'``)::

    formula  = NAME "~" sum
    sum      = ["+" | "-"] product {("+" | "-") product}
    product  = inter {("*" | "/") inter}
    inter    = power {":" power}
    power    = atom ["^" INTEGER]                     (degree 1..10)
    atom     = NAME | "0" | "1" | call
             | "(" sum [("'|'" | "||") sum] ")"         (a bar only directly in brackets)
    call     = ("I" | "log" | "exp") "(" arith ")"
             | "poly" "(" NAME "," INTEGER ")"         (degree 1..10)
             | "C" "(" NAME ")"
    arith    = aterm {("+" | "-") aterm}
    aterm    = afactor {("*" | "/") afactor}
    afactor  = ("+" | "-") afactor | apower
    apower   = aatom ["**" ["+" | "-"] NUMBER]         (the base must contain a column)
    aatom    = NAME | NUMBER | "(" arith ")"

So inside ``I(...)`` there is only arithmetic on column names and numbers: no attribute
access (``.``), subscripts (``[``), strings, keywords, lambdas, calls or names starting
with ``_``. A power's base must contain a column, so a constant such as ``2 ** 2 ** 99``
(an endless integer computation in Python) cannot be written. Which terms make sense
(a bar's terms must be column names, the grouping ``a``, ``a:b`` or ``a/b``) is checked by
:mod:`pipeline.trajectories.formula`; this module only decides what may reach a formula library.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["ARITHMETIC_FUNCTIONS", "FUNCTIONS", "FormulaError", "check_fixed", "check_formula"]

#: Functions whose single argument is arithmetic on columns and numbers.
ARITHMETIC_FUNCTIONS: Final = ("I", "exp", "log")
#: Every function a formula may call.
FUNCTIONS: Final = ("C", "I", "exp", "log", "poly")
MAX_LENGTH: Final = 2000
MAX_DEPTH: Final = 20
MAX_DEGREE: Final = 10

_TOKEN: Final = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[0-9]+(?:\.[0-9]+)?(?![0-9A-Za-z_.]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<quoted>`[A-Za-z][A-Za-z0-9_\[\]. -]*`)
  | (?P<op>\|\||\*\*|[~+\-*:/^()|,])
""", re.VERBOSE)

_REFUSED_CHARACTERS: Final = {
    ".": "attribute access ('.') is not allowed",
    "[": "subscripts ('[') are not allowed",
    "]": "subscripts (']') are not allowed",
    "'": "string literals are not allowed",
    '"': "string literals are not allowed",
    "`": "quoted names are not allowed",
    "{": "Python blocks ('{') are not allowed",
    "}": "Python blocks ('}') are not allowed",
    "=": "'=' (keywords, assignment, comparison) is not allowed",
    "\\": "backslashes are not allowed",
}


class FormulaError(ValueError):
    """A formula that cannot be read; the message quotes the offending part."""


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is ``name``, ``number``, ``op`` or ``end``."""

    kind: str
    text: str
    position: int


def _quote(text: str, position: int) -> str:
    """The offending part: the text from ``position``, cut at 40 characters."""
    part = text[position:position + 40]
    return repr(part + ("..." if len(text) > position + 40 else ""))


def _refuse(text: str, position: int, reason: str) -> FormulaError:
    """An error naming the reason, the offending part and where it starts."""
    where = f"character {position + 1}" + (f" of {text!r}" if len(text) <= 120 else "")
    return FormulaError(f"{reason}: {_quote(text, position)} ({where})")


def tokenize(text: str, quoted: bool = False) -> list[Token]:
    """Split ``text`` into tokens; any character outside the grammar is refused.

    ``quoted``: also accept backtick-quoted column names such as ```sex[male]``` (letters,
    digits, ``_ [ ] . -`` and spaces), which ``formulaic`` looks up verbatim and never
    evaluates; the built-in models use them, a study config may not.

    >>> [t.text for t in tokenize("y ~ log(weeks + 1)")]
    ['y', '~', 'log', '(', 'weeks', '+', '1', ')', '']
    """
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"a formula longer than {MAX_LENGTH} characters is not accepted")
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            char = text[position]
            reason = _REFUSED_CHARACTERS.get(char, f"the character {char!r} is not allowed")
            if char.isdigit() or (char == "." and text[position + 1:position + 2].isdigit()):
                reason = "a malformed number"
            raise _refuse(text, position, reason)
        kind = match.lastgroup or ""
        if kind == "quoted" and not quoted:
            raise _refuse(text, position, "quoted names are not allowed")
        if kind == "quoted":
            kind = "name"
        if kind != "space":
            tokens.append(Token(kind, match.group(), position))
            if kind == "name" and not match.group().startswith("`"):
                _check_name(text, tokens[-1])
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _check_name(text: str, token: Token) -> None:
    if token.text.startswith("_"):
        raise _refuse(text, token.position, "names starting with '_' are not allowed")
    if keyword.iskeyword(token.text):
        raise _refuse(text, token.position, f"the Python keyword {token.text!r} is not allowed")


class _Recogniser:
    """Recursive descent over the tokens of one formula (see the module docstring)."""

    def __init__(self, text: str, bars: bool) -> None:
        self.text = text
        self.tokens = tokenize(text, quoted=not bars)
        self.index = 0
        self.depth = 0
        self.bars = bars

    # ------------------------------------------------------------------ helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def _next(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _accept(self, *ops: str) -> Token | None:
        if self.token.kind == "op" and self.token.text in ops:
            return self._next()
        return None

    def _error(self, reason: str, token: Token | None = None) -> FormulaError:
        token = token or self.token
        if token.kind == "end":
            return FormulaError(f"{reason}: the formula ends early ({self.text!r})")
        return _refuse(self.text, token.position, reason)

    def _expect(self, op: str, reason: str) -> Token:
        token = self._accept(op)
        if token is None:
            raise self._error(reason)
        return token

    def _open(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error(f"brackets nested more than {MAX_DEPTH} deep")

    def _integer(self, what: str) -> None:
        token = self._next()
        if token.kind != "number" or not token.text.isdigit() or \
                not 1 <= int(token.text) <= MAX_DEGREE:
            raise self._error(f"{what} must be a whole number from 1 to {MAX_DEGREE}", token)

    # ------------------------------------------------------------------ formula level
    def formula(self) -> None:
        outcome = self._next()
        if outcome.kind != "name":
            raise self._error("the outcome must be a column name", outcome)
        self._expect("~", "expected '~' after the outcome")
        self.sum()
        self._end()

    def rhs(self) -> None:
        self.sum()
        self._end()

    def _end(self) -> None:
        if self.token.kind != "end":
            raise self._error(f"unexpected {self.token.text!r}")

    def sum(self) -> None:
        self._accept("+", "-")
        self.product()
        while self._accept("+", "-"):
            self.product()

    def product(self) -> None:
        self.inter()
        while self._accept("*", "/"):
            self.inter()

    def inter(self) -> None:
        self.power()
        while self._accept(":"):
            self.power()

    def power(self) -> None:
        self.atom()
        if self._accept("^"):
            self._integer("the degree after '^'")

    def atom(self) -> None:
        token = self._next()
        if token.kind == "name":
            if self.token.text == "(":
                self._next()
                self.call(token)
            return
        if token.kind == "number":
            if token.text not in ("0", "1"):
                raise self._error("only 0 and 1 may stand alone as terms (use I() for "
                                  "arithmetic)", token)
            return
        if token.kind == "op" and token.text == "(":
            self._open()
            self.sum()
            bar = self._accept("|", "||")
            if bar is not None:
                if not self.bars:
                    raise self._error("a random term '|' is not allowed here", bar)
                self.sum()
            self._expect(")", "expected ')'")
            self.depth -= 1
            return
        raise self._error("expected a column name, 0, 1, a function or '('", token)

    def call(self, name: Token) -> None:
        if name.text not in FUNCTIONS:
            raise self._error(f"unknown function {name.text!r}; allowed: "
                              f"{', '.join(f + '()' for f in FUNCTIONS)}", name)
        self._open()
        if name.text in ARITHMETIC_FUNCTIONS:
            self.arith(name.text)
            if self.token.text == "^":
                raise self._error(f"'^' is not a power inside {name.text}(); use '**'")
        else:
            column = self._next()
            if column.kind != "name":
                raise self._error(f"{name.text}() takes a column name", column)
            if name.text == "poly":
                self._expect(",", "poly() takes a column name and a degree, e.g. "
                                  "poly(weeks, 2)")
                self._integer("the degree of poly()")
        self._expect(")", f"expected ')' closing {name.text}(); inside it only "
                          + ("arithmetic on column names and numbers is allowed"
                             if name.text in ARITHMETIC_FUNCTIONS else "the arguments shown"))
        self.depth -= 1

    # ------------------------------------------------------------------ inside I(), log()
    def arith(self, function: str) -> bool:
        """Recognise arithmetic; True when it contains a column name."""
        has_column = self.aterm(function)
        while self._accept("+", "-"):
            has_column = self.aterm(function) or has_column
        return has_column

    def aterm(self, function: str) -> bool:
        has_column = self.afactor(function)
        while self._accept("*", "/"):
            has_column = self.afactor(function) or has_column
        return has_column

    def afactor(self, function: str) -> bool:
        if self._accept("+", "-"):
            return self.afactor(function)
        start = self.token
        has_column = self.aatom(function)
        power = self._accept("**")
        if power is not None:
            if not has_column:
                raise self._error("a power of a constant is not allowed (only of a "
                                  "column)", start)
            self._accept("+", "-")
            exponent = self._next()
            if exponent.kind != "number":
                raise self._error("the exponent after '**' must be a number", exponent)
        return has_column

    def aatom(self, function: str) -> bool:
        token = self._next()
        if token.kind == "name":
            if self.token.kind == "op" and self.token.text == "(":
                raise self._error(f"function calls are not allowed inside {function}()",
                                  token)
            return True
        if token.kind == "number":
            return False
        if token.kind == "op" and token.text == "(":
            self._open()
            has_column = self.arith(function)
            self._expect(")", f"expected ')'; inside {function}() only arithmetic "
                              "(+ - * / **) on column names and numbers is allowed")
            self.depth -= 1
            return has_column
        reason = (f"'^' is not a power inside {function}(); use '**'" if token.text == "^"
                  else f"inside {function}() only arithmetic (+ - * / **) on column names "
                       "and numbers is allowed")
        raise self._error(reason, token)


def check_formula(formula: str) -> None:
    """Refuse a whole lme4 formula (``outcome ~ terms + (bars)``) outside the grammar.

    Raises
    ------
    FormulaError
        Quoting the first offending part.

    Examples
    --------
    >>> check_formula("bdi2 ~ weeks * arm + log(weeks + 1) + (1 + weeks | patient_id)")
    >>> check_formula("y ~ I(weeks.__class__)")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    pipeline.trajectories.formula_grammar.FormulaError: attribute access ('.') is not allowed
    """
    _Recogniser(formula, bars=True).formula()


def check_fixed(rhs: str) -> None:
    """Refuse a fixed part (right-hand side without bars) outside the grammar.

    This is what :mod:`pipeline.trajectories.engines` checks before ``formulaic`` sees the text,
    so a
    formula that reached a :class:`~pipeline.trajectories.engines.MixedSpec` by another way than a
    study config is still checked. Backtick-quoted names (``sex[male]`` of the built-in
    models) are accepted here: ``formulaic`` looks them up and never evaluates them.

    Raises
    ------
    FormulaError
        Quoting the first offending part.
    """
    _Recogniser(rhs, bars=False).rhs()
