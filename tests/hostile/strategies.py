"""Hypothesis generators of hostile data: every class issue 17 names, as Python values (what a
tool returns), as JSON text (what a client or a model sends) and as plain text (forms, query
strings). Each draw is tagged with its class, so the harness can count per class."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from orchestration.untrusted import MAX_DEPTH, MAX_QUERY_LENGTH, MAX_STRING_LENGTH

# The classes, as named in docs/security.md ("Hostile data").
NUL, SURROGATE, DEEP, NUMBER, LONG, DISPLAY, DATE_ENUM, DIGITS = (
    "nul",
    "lone surrogate",
    "deep nesting",
    "number out of range",
    "very long string",
    "control/bidi characters",
    "invalid date/enum",
    "unicode digits/signs",
)
JSON_CLASSES = (NUL, SURROGATE, DEEP, NUMBER, LONG, DISPLAY)
TEXT_CLASSES = (NUL, LONG, DISPLAY, DATE_ENUM, DIGITS)

# Numbers as a person might type them that are not ASCII digits: "²" and "٣" pass
# str.isdigit() but int("²") raises; "--1" passed a lstrip("-") check; 40 digits overflow.
DIGIT_TEXTS = ["²", "٣", "1²", "¹²", "߁", "--1", "-1", "+1", " 1", "1.0", "9" * 40, "0x10"]
# Dates a calendar cannot step past (9999-12-31 plus a day) or before, and impossible ones.
FAR_DATES = ["9999-12-31", "0001-01-01", "9999-12-31T23:59", "0001-01-01T00:00"]

DISPLAY_CHARS = [
    "\u202e",
    "\u202d",
    "\u2066",
    "\u2067",
    "\u2069",
    "\u200f",
    "\u061c",
    "\x1b",
    "\x07",
    "\x7f",
    "\x85",
    "\r",
]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]


def _around(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A hostile fragment with ordinary text either side."""
    plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)
    return st.tuples(plain, strategy, plain).map("".join)


def text_of(cls: str) -> st.SearchStrategy[str]:
    """A Python string of class ``cls`` (surrogates only reach us through JSON escapes)."""
    if cls == NUL:
        return _around(st.just("\x00"))
    if cls == SURROGATE:
        return _around(st.sampled_from(SURROGATES))
    if cls == DISPLAY:
        return _around(
            st.lists(st.sampled_from(DISPLAY_CHARS), min_size=1, max_size=4).map("".join)
        )
    if cls == LONG:
        return st.sampled_from([MAX_STRING_LENGTH + 1, MAX_STRING_LENGTH * 3]).map(
            lambda n: "x" * n
        )
    raise ValueError(cls)


def query_text_of(cls: str) -> st.SearchStrategy[str]:
    if cls == LONG:
        return st.integers(MAX_QUERY_LENGTH + 1, MAX_QUERY_LENGTH * 4).map(lambda n: "q" * n)
    if cls == DATE_ENUM:
        return st.sampled_from(
            ["2026-02-30", "9999-99-99", "yesterday", "-1", "0000-00-00", "running ", "☃"]
            + FAR_DATES
        )
    if cls == DIGITS:
        return st.one_of(
            st.sampled_from(DIGIT_TEXTS),
            st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=4),
        )
    return text_of(cls)


def number_token() -> st.SearchStrategy[str]:
    """A JSON number token no column can hold (as raw text: json.dumps cannot write 1e400)."""
    return st.one_of(
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999"]),
        st.integers(64, 5000).map(lambda n: "9" * n),
        st.integers(2**63, 2**80).map(str),
        st.integers(-(2**80), -(2**63) - 1).map(str),
    )


def deep_token(max_depth: int = 200) -> st.SearchStrategy[str]:
    return st.tuples(st.integers(MAX_DEPTH + 1, max_depth), st.sampled_from(["[]", "{}"])).map(
        lambda t: ("[" * t[0] + "]" * t[0]) if t[1] == "[]" else ('{"a":' * t[0] + "1" + "}" * t[0])
    )


def _escaped(text: str) -> str:
    import json

    return json.dumps(text)  # ASCII: NUL as \u0000, a lone surrogate as \ud800


def json_token(cls: str, max_depth: int = 200) -> st.SearchStrategy[str]:
    """A JSON text fragment (a value) of class ``cls``."""
    if cls == NUMBER:
        return number_token()
    if cls == DEEP:
        return deep_token(max_depth)
    return text_of(cls).map(_escaped)


def json_case(max_depth: int = 200) -> st.SearchStrategy[tuple[str, str]]:
    """(class, JSON value text); text classes sometimes as an object key instead of a value."""

    def one(cls: str) -> st.SearchStrategy[tuple[str, str]]:
        token = json_token(cls, max_depth)
        if cls in (NUL, SURROGATE, DISPLAY):
            token = st.one_of(token, token.map(lambda k: "{" + k + ': "v"}'))
        return token.map(lambda t: (cls, t))

    return st.sampled_from(JSON_CLASSES).flatmap(one)


def python_value(cls: str) -> st.SearchStrategy[Any]:
    """A value of class ``cls`` as a tool would return it (any depth, any number)."""
    if cls == NUMBER:
        return st.one_of(
            st.sampled_from([float("nan"), float("inf"), float("-inf")]),
            st.integers(2**63, 2**100),
            st.just(10**5000),
        )
    if cls == DEEP:

        def nest(n: int) -> Any:
            value: Any = "bottom"
            for _ in range(n):
                value = [value]
            return value

        return st.sampled_from([MAX_DEPTH + 1, 200, 5000]).map(nest)
    return text_of(cls)


def python_case() -> st.SearchStrategy[tuple[str, Any]]:
    return st.sampled_from(JSON_CLASSES).flatmap(lambda c: python_value(c).map(lambda v: (c, v)))


def text_case(classes: tuple[str, ...] = TEXT_CLASSES) -> st.SearchStrategy[tuple[str, str]]:
    return st.sampled_from(classes).flatmap(lambda c: query_text_of(c).map(lambda v: (c, v)))
