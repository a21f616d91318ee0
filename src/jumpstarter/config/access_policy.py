"""Upstream's `ExporterAccessPolicy` document (for `jmp admin apply policy -f FILE`) and how it maps
onto our access policies.

One document holds one exporter selector and a list of policies, each admitting clients through
one or more `from[].clientSelector` entries with a priority and a maximum duration. Ours admit one
client selector each, so entry `i`'s `from[j]` becomes policy `NAME` when the document has a
single entry with a single `from`, else `NAME.i.j` (all removed and rewritten together on apply).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from jumpstarter.config.common import API_VERSION, ConfigDocument, ConfigModel
from jumpstarter.controller.durations import parse_duration
from jumpstarter.controller.model import DEFAULT_NAMESPACE, Policy
from jumpstarter.controller.selectors import Op, Requirement, Selector

_OPS = {"In": Op.IN, "NotIn": Op.NOT_IN, "Exists": Op.EXISTS, "DoesNotExist": Op.DOES_NOT_EXIST}


class SelectorRequirement(ConfigModel):
    """`matchExpressions[]` of a Kubernetes label selector."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(ConfigModel):
    """A Kubernetes `LabelSelector` (`matchLabels` and `matchExpressions`)."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[SelectorRequirement] = Field(default_factory=list, alias="matchExpressions")

    def text(self) -> str:
        """The selector in `k=v,k in (a,b)` form."""
        extra = tuple(Requirement(e.key, _OPS[e.operator], tuple(e.values)) for e in self.match_expressions)
        return str(Selector(Selector.from_labels(self.match_labels).requirements + extra))


class From(ConfigModel):
    """`from[]`: which clients an entry admits."""

    client_selector: LabelSelector = Field(alias="clientSelector")


class PolicyEntry(ConfigModel):
    """`spec.policies[]`."""

    description: str | None = None
    priority: int = 0
    from_: list[From] = Field(alias="from", min_length=1)
    maximum_duration: str | None = Field(default=None, alias="maximumDuration")
    spot_access: bool = Field(default=False, alias="spotAccess")

    @field_validator("maximum_duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)  # ValueError names the accepted forms
        return value

    @field_validator("spot_access")
    @classmethod
    def _no_spot(cls, value: bool) -> bool:
        if value:
            raise ValueError("spot access is not supported")
        return value


class AccessPolicySpec(ConfigModel):
    """`spec`."""

    exporter_selector: LabelSelector = Field(default_factory=LabelSelector, alias="exporterSelector")
    policies: list[PolicyEntry] = Field(min_length=1)


class AccessPolicyMeta(ConfigModel):
    """`metadata`."""

    name: str
    namespace: str = DEFAULT_NAMESPACE


class ExporterAccessPolicy(ConfigDocument):
    """An `ExporterAccessPolicy` document (upstream's CRD shape)."""

    KIND: ClassVar[str] = "ExporterAccessPolicy"

    api_version: Literal["jumpstarter.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["ExporterAccessPolicy"] = "ExporterAccessPolicy"
    metadata: AccessPolicyMeta
    spec: AccessPolicySpec

    def policies(self) -> list[Policy]:
        """Our access policies for this document (see the module docstring for their names)."""
        name, namespace = self.metadata.name, self.metadata.namespace
        exporters = self.spec.exporter_selector.text()
        single = len(self.spec.policies) == 1 and len(self.spec.policies[0].from_) == 1
        found = []
        for i, entry in enumerate(self.spec.policies):
            maximum = parse_duration(entry.maximum_duration).total_seconds() if entry.maximum_duration else None
            for j, source in enumerate(entry.from_):
                found.append(Policy(
                    namespace=namespace, name=name if single else f"{name}.{i}.{j}", exporter_selector=exporters,
                    client_selector=source.client_selector.text(), maximum_duration=maximum, priority=entry.priority,
                ))
        return found


def owned_by(document_name: str, policy_name: str) -> bool:
    """Whether `policy_name` is one written for document `document_name`."""
    if policy_name == document_name:
        return True
    prefix, _, rest = policy_name.rpartition(".")
    head, _, index = prefix.rpartition(".")
    return head == document_name and index.isdigit() and rest.isdigit()
