"""Pieces shared by every config file model: the base class, metadata and TLS settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Final, Self

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr

from jumpstarter.config.loading import Source, load_model

API_VERSION: Final = "jumpstarter.dev/v1alpha1"


class ConfigModel(BaseModel):
    """Base of the config models: unknown fields are errors; fields accept YAML or Python names."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


class ConfigDocument(ConfigModel):
    """A whole config file (`apiVersion` + `kind` + body) that remembers which file it came from."""

    #: The value `kind` must have in this document's files.
    KIND: ClassVar[str] = ""
    _source: Source | None = PrivateAttr(default=None)

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """Load and validate a config file (raises `ConfigurationError` naming file, line, field)."""
        return load_model(cls, path, kind=cls.KIND or None)

    def attach_source(self, source: Source) -> None:
        """Remember the file this config was read from (used to locate later errors)."""
        self._source = source

    @property
    def source(self) -> Source | None:
        """The file this config was read from, or None when it was built in code."""
        return self._source

    @property
    def path(self) -> Path | None:
        """Path of the file this config was read from, or None."""
        return Path(self._source.name) if self._source is not None else None

    def to_yaml(self) -> str:
        """The YAML text of this config; fields left at their defaults are omitted."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        header = {"apiVersion": data.pop("apiVersion", API_VERSION), "kind": data.pop("kind", self.KIND)}
        return yaml.safe_dump({**header, **data}, sort_keys=False, default_flow_style=False)


class ObjectMeta(ConfigModel):
    """`metadata`: the name and namespace of the Client or Exporter object on the controller."""

    name: str | None = None
    namespace: str | None = None


class TLSConfig(ConfigModel):
    """`tls`: a PEM CA bundle to trust, or `insecure: true` to skip verification."""

    ca: str = ""
    insecure: bool = False
