"""The user config file (`kind: UserConfig`): which client config is the current one."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from jumpstarter.config.common import API_VERSION, ConfigDocument, ConfigModel


class UserSettings(ConfigModel):
    """`config`: the user's settings."""

    current_client: str | None = Field(default=None, alias="current-client")


class UserConfig(ConfigDocument):
    """The user config file (``<config home>/config.yaml``)."""

    KIND: ClassVar[str] = "UserConfig"

    api_version: Literal["jumpstarter.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["UserConfig"] = "UserConfig"
    config: UserSettings = Field(default_factory=UserSettings)


#: Upstream's class name.
UserConfigV1Alpha1 = UserConfig
