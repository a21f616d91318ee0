"""The exporter config file (`kind: ExporterConfig`): controller access, hooks and the driver tree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from jumpstarter.config.common import API_VERSION, ConfigDocument, ConfigModel, ObjectMeta, TLSConfig

if TYPE_CHECKING:
    from jumpstarter.driver.base import Driver


class DriverInstance(ConfigModel):
    """One entry of `export` (or of a `children` mapping).

    Three shapes: ``{type, config, children, description, methods_description}`` (a driver),
    ``{children}`` (a plain Composite grouping its children) and ``{ref: "a.b"}`` (the node at
    that dotted path of the export tree, shown here a second time).
    """

    type: str | None = None
    config: dict[str, Any] | None = None
    children: dict[str, DriverInstance] | None = None
    description: str | None = None
    methods_description: dict[str, str] | None = None
    ref: str | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        if self.ref is not None:
            others = [name for name in ("type", "config", "children", "description", "methods_description")
                      if getattr(self, name) is not None]
            if others:
                raise ValueError(f"`ref` stands alone; remove {', '.join(others)} or drop the ref")
            if not self.ref.strip("."):
                raise ValueError("`ref` must name another entry, like `power` or `board.power`")
        elif self.type is None:
            if self.config is not None:
                raise ValueError("`config` needs a `type` naming the driver it configures")
            if self.children is None:
                raise ValueError("a driver entry needs `type`, `children` or `ref`")
        return self


class HookInstance(ConfigModel):
    """One lease hook: a script run by the exporter around a lease."""

    exec_: str | None = Field(default=None, alias="exec")
    script: str
    timeout: int = Field(default=120, gt=0)
    on_failure: Literal["warn", "endLease", "exit"] = Field(default="warn", alias="onFailure")


class HooksConfig(ConfigModel):
    """`hooks`: scripts run before a lease is handed to a client and after it ends."""

    before_lease: HookInstance | None = Field(default=None, alias="beforeLease")
    after_lease: HookInstance | None = Field(default=None, alias="afterLease")


class FailureDetection(ConfigModel):
    """`failureDetection`: stop restarting after too many rapid failures."""

    max_rapid_failures: int = Field(default=5, ge=1, alias="maxRapidFailures")
    rapid_failure_window: int = Field(default=60, gt=0, alias="rapidFailureWindow")


class ExporterConfig(ConfigDocument):
    """An exporter config file: how to reach the controller and which drivers to export."""

    KIND: ClassVar[str] = "ExporterConfig"

    api_version: Literal["jumpstarter.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["ExporterConfig"] = "ExporterConfig"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    endpoint: str | None = None
    token: str | None = None
    tls: TLSConfig = Field(default_factory=TLSConfig)
    grpc_options: dict[str, str | int] = Field(default_factory=dict, alias="grpcOptions")
    description: str | None = None
    motd: str | None = None
    export: dict[str, DriverInstance] = Field(default_factory=dict)
    hooks: HooksConfig = Field(default_factory=HooksConfig)
    failure_detection: FailureDetection = Field(default_factory=FailureDetection, alias="failureDetection")
    exit_on_lease_end: bool = Field(default=False, alias="exitOnLeaseEnd")

    @classmethod
    def load(cls, alias: str) -> ExporterConfig:
        """Load exporter config `alias` (user directory first, then the system one)."""
        from jumpstarter.config.store import load_exporter

        return load_exporter(alias)

    def build_drivers(self) -> Driver:
        """Instantiate the driver tree of `export` (a Composite root); see `config.drivers`."""
        from jumpstarter.config.drivers import build_driver_tree

        return build_driver_tree(self.export, source=self.source)


#: Upstream's class name.
ExporterConfigV1Alpha1 = ExporterConfig

__all__ = [
    "DriverInstance",
    "ExporterConfig",
    "ExporterConfigV1Alpha1",
    "FailureDetection",
    "HookInstance",
    "HooksConfig",
]
