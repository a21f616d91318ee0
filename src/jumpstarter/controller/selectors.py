"""Kubernetes label selectors: parsing `a=b,c!=d,e in (f,g),h notin (i),j,!k` and matching labels.

Semantics follow Kubernetes exactly: `!=` and `notin` also match objects without the key; `in`
and `=` need the key; a bare key needs it to exist, `!key` needs it absent; terms are ANDed and
the empty selector matches everything.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class SelectorError(ValueError):
    """A label selector that does not parse; the message points at the offending token."""


class Op(enum.StrEnum):
    """Selector operators, named as in Kubernetes `LabelSelectorRequirement.operator`."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a selector."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy this term."""
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case Op.EQUALS | Op.IN:
                return present and value in self.values
            case Op.NOT_EQUALS | Op.NOT_IN:
                return not present or value not in self.values
            case Op.EXISTS:
                return present
            case Op.DOES_NOT_EXIST:
                return not present
        raise AssertionError(self.op)

    def __str__(self) -> str:
        match self.op:
            case Op.EQUALS | Op.NOT_EQUALS:
                return f"{self.key}{self.op.value}{self.values[0]}"
            case Op.IN:
                return f"{self.key} in ({','.join(self.values)})"
            case Op.NOT_IN:
                return f"{self.key} notin ({','.join(self.values)})"
            case Op.EXISTS:
                return self.key
            case Op.DOES_NOT_EXIST:
                return f"!{self.key}"
        raise AssertionError(self.op)


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy every requirement."""
        return all(r.matches(labels) for r in self.requirements)

    def is_empty(self) -> bool:
        """Whether this selector has no terms (and so matches everything)."""
        return not self.requirements

    def contradictory(self) -> bool:
        """Whether no label set can ever match (for example `a=1,a=2`, or `a,!a`)."""
        by_key: dict[str, list[Requirement]] = {}
        for r in self.requirements:
            by_key.setdefault(r.key, []).append(r)
        for terms in by_key.values():
            needs_key = any(t.op in (Op.EQUALS, Op.IN, Op.EXISTS) for t in terms)
            if needs_key and any(t.op is Op.DOES_NOT_EXIST for t in terms):
                return True
            allowed: set[str] | None = None
            for t in terms:
                if t.op in (Op.EQUALS, Op.IN):
                    allowed = set(t.values) if allowed is None else allowed & set(t.values)
            if allowed is not None:
                for t in terms:
                    if t.op in (Op.NOT_EQUALS, Op.NOT_IN):
                        allowed -= set(t.values)
                if not allowed:
                    return True
        return False

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Selector:
        """The selector `k1=v1,k2=v2` of a label map."""
        return cls(tuple(Requirement(k, Op.EQUALS, (v,)) for k, v in sorted(labels.items())))

    @classmethod
    def combine(cls, selectors: Iterable[Selector]) -> Selector:
        """All requirements of several selectors (their conjunction)."""
        return cls(tuple(r for s in selectors for r in s.requirements))


# A label key: optional DNS prefix and a name; a value: empty or a name.
_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^(?:{_NAME})?$")
_TOKEN_RE = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


def _tokens(text: str) -> list[tuple[str, int]]:
    tokens: list[tuple[str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if m is None:  # pragma: no cover - the pattern accepts any non-space character
            raise SelectorError(f"cannot read selector at position {pos}: {text[pos:]!r}")
        tokens.append((m.group(1), m.start(1)))
        pos = m.end()
    return tokens


def parse_selector(text: str) -> Selector:
    """Parse a Kubernetes label selector string; raises `SelectorError` pointing at the bad token."""
    parser = _Parser(text)
    return parser.parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    def error(self, message: str) -> SelectorError:
        if self.i < len(self.tokens):
            token, pos = self.tokens[self.i]
            where = f"at position {pos} ({token!r})"
        else:
            pos, where = len(self.text), "at the end"
        marker = f"\n  {self.text}\n  {' ' * pos}^"
        return SelectorError(f"invalid selector {self.text!r}: {message} {where}{marker}")

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise self.error("unexpected end")
        self.i += 1
        return token

    def parse(self) -> Selector:
        requirements: list[Requirement] = []
        if self.peek() is None:
            return Selector()
        while True:
            requirements.append(self.requirement())
            token = self.peek()
            if token is None:
                return Selector(tuple(requirements))
            if token != ",":
                raise self.error("expected ','")
            self.take()

    def key(self) -> str:
        token = self.peek()
        if token is None or token in ("!", "=", "==", "!=", ",", "(", ")") or not _KEY_RE.match(token):
            raise self.error("expected a label key")
        return self.take()

    def value(self) -> str:
        token = self.peek()
        if token is None or token in (",", ")"):
            return ""  # `a=` selects the empty value, as in Kubernetes
        if token in ("!", "=", "==", "!=", "(") or not _VALUE_RE.match(token):
            raise self.error("expected a label value")
        return self.take()

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(self.key(), Op.DOES_NOT_EXIST)
        key = self.key()
        token = self.peek()
        if token is None or token == ",":
            return Requirement(key, Op.EXISTS)
        if token in ("=", "=="):
            self.take()
            return Requirement(key, Op.EQUALS, (self.value(),))
        if token == "!=":
            self.take()
            return Requirement(key, Op.NOT_EQUALS, (self.value(),))
        if token in ("in", "notin"):
            self.take()
            return Requirement(key, Op.IN if token == "in" else Op.NOT_IN, self.value_set())
        raise self.error("expected '=', '==', '!=', 'in', 'notin' or ','")

    def value_set(self) -> tuple[str, ...]:
        if self.peek() != "(":
            raise self.error("expected '('")
        self.take()
        values: list[str] = []
        while True:
            values.append(self.value())
            token = self.peek()
            if token == ")":
                self.take()
                return tuple(values)
            if token != ",":
                raise self.error("expected ',' or ')'")
            self.take()
