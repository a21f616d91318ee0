"""Label selector parsing and matching, with Kubernetes semantics."""

from __future__ import annotations

import pytest

from jumpstarter.controller.selectors import Op, Requirement, SelectorError, parse_selector

LABELS = {"board": "rpi4", "site": "lab", "rev": "b"}

MATCHES = [
    ("", True),
    ("board=rpi4", True),
    ("board==rpi4", True),
    ("board=rpi5", False),
    ("board!=rpi5", True),
    ("board!=rpi4", False),
    ("missing!=x", True),  # != matches objects without the key
    ("board in (rpi4,rpi5)", True),
    ("board in (rpi5)", False),
    ("missing in (x)", False),
    ("board notin (rpi5,x86)", True),
    ("board notin (rpi4)", False),
    ("missing notin (x)", True),
    ("board", True),
    ("missing", False),
    ("!missing", True),
    ("!board", False),
    ("board=rpi4,site=lab", True),
    ("board=rpi4,site=home", False),
    ("  board = rpi4 ,  rev in ( a , b ) ", True),
    ("site=lab,!gpu,rev notin (c)", True),
]


@pytest.mark.parametrize(("text", "expected"), MATCHES)
def test_matching(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


PARSED = [
    ("a=b", Requirement("a", Op.EQUALS, ("b",))),
    ("a==b", Requirement("a", Op.EQUALS, ("b",))),
    ("a!=b", Requirement("a", Op.NOT_EQUALS, ("b",))),
    ("a in (x,y)", Requirement("a", Op.IN, ("x", "y"))),
    ("a notin (x)", Requirement("a", Op.NOT_IN, ("x",))),
    ("a", Requirement("a", Op.EXISTS)),
    ("!a", Requirement("a", Op.DOES_NOT_EXIST)),
    ("example.com/board=x", Requirement("example.com/board", Op.EQUALS, ("x",))),
    ("a=", Requirement("a", Op.EQUALS, ("",))),
]


@pytest.mark.parametrize(("text", "requirement"), PARSED)
def test_parsing_and_round_trip(text: str, requirement: Requirement) -> None:
    selector = parse_selector(text)
    assert selector.requirements == (requirement,)
    assert parse_selector(str(selector)) == selector


ERRORS = [
    ("a=b,", "at the end"),
    ("a b", "position 2"),
    ("=b", "expected a label key"),
    ("a in b", "expected '('"),
    ("a in (b", "at the end"),
    ("a=(b)", "expected a label value"),
    ("a=b=c", "position 3"),
    ("-bad=x", "expected a label key"),
]


@pytest.mark.parametrize(("text", "where"), ERRORS)
def test_errors_point_at_the_offending_token(text: str, where: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert where in str(info.value)
    assert "^" in str(info.value)


@pytest.mark.parametrize(
    ("text", "contradictory"),
    [("a=1,a=2", True), ("a,!a", True), ("a in (1,2),a!=1,a!=2", True), ("a=1,b=2", False),
     ("a in (1,2),a=2", False), ("!a,a!=1", False)],
)
def test_contradictions(text: str, contradictory: bool) -> None:
    assert parse_selector(text).contradictory() is contradictory
