"""The client config file (`kind: ClientConfig`): how a client reaches the controller."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from jumpstarter.config.common import API_VERSION, ConfigDocument, ConfigModel, ObjectMeta, TLSConfig


class DriversConfig(ConfigModel):
    """`drivers`: which client classes an exporter may make this client import."""

    allow: list[str] = Field(default_factory=list)
    unsafe: bool = False


class ShellConfig(ConfigModel):
    """`shell`: how `jmp shell` starts the user's shell."""

    use_profiles: bool = False


class LeasesConfig(ConfigModel):
    """`leases`: timeouts, in seconds, for getting and connecting to a lease; how long before its
    end `jmp shell` warns that a lease expires (0: never)."""

    acquisition_timeout: int = Field(default=7200, gt=0)
    dial_timeout: int = Field(default=60, gt=0)
    retry_timeout: int = Field(default=300, gt=0)
    warn_before: int = Field(default=300, ge=0)


class ClientConfig(ConfigDocument):
    """A client config file: controller endpoint, credentials and client-side policy."""

    KIND: ClassVar[str] = "ClientConfig"

    api_version: Literal["jumpstarter.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["ClientConfig"] = "ClientConfig"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    endpoint: str | None = None
    tls: TLSConfig = Field(default_factory=TLSConfig)
    token: str | None = None
    refresh_token: str | None = None
    grpc_options: dict[str, str | int] = Field(default_factory=dict, alias="grpcOptions")
    drivers: DriversConfig = Field(default_factory=DriversConfig)
    shell: ShellConfig = Field(default_factory=ShellConfig)
    leases: LeasesConfig = Field(default_factory=LeasesConfig)

    @classmethod
    def load(cls, alias: str) -> ClientConfig:
        """Load client config `alias` from the config home."""
        from jumpstarter.config.store import load_client

        return load_client(alias)


#: Upstream's class name.
ClientConfigV1Alpha1 = ClientConfig
