"""Turn an exporter config file into a ready `Exporter` (driver tree, hooks, motd, labels)."""

from __future__ import annotations

from pathlib import Path

from jumpstarter.exporter.exporter import Exporter, Hooks
from jumpstarter.exporter.hooks import HookSpec, OnFailure


def load_exporter(path: Path | str) -> Exporter:
    """Load, validate and instantiate the exporter config at `path` (errors name file and line)."""
    from jumpstarter.config.exporter import ExporterConfig, HookInstance
    from jumpstarter.config.loading import load_model

    path = Path(path)
    config = load_model(ExporterConfig, path, kind="ExporterConfig")
    root = config.build_drivers()

    def spec(hook: HookInstance | None) -> HookSpec | None:
        if hook is None:
            return None
        return HookSpec(
            script=hook.script, exec=hook.exec_, timeout=float(hook.timeout), on_failure=OnFailure(hook.on_failure)
        )

    hooks = Hooks(
        before_lease=spec(config.hooks.before_lease), after_lease=spec(config.hooks.after_lease), base_dir=path.parent
    )
    labels: dict[str, str] = {}
    if config.metadata.name:
        labels.setdefault("jumpstarter.dev/name", config.metadata.name)
    return Exporter(root=root, hooks=hooks, motd=config.motd or "", labels=labels)
