"""Reading config files: good files parse, and every bad input names its file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jumpstarter.config.client import ClientConfig, ClientConfigV1Alpha1
from jumpstarter.config.exporter import ExporterConfig
from jumpstarter.config.loading import ConfigNotFoundError
from jumpstarter.config.user import UserConfig
from jumpstarter.errors import ConfigurationError


def write(tmp_path: Path, text: str, name: str = "exporter.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load_error(path: Path, model: type[ExporterConfig] | type[ClientConfig] = ExporterConfig) -> str:
    with pytest.raises(ConfigurationError) as info:
        model.from_file(path)
    return str(info.value)


def test_full_exporter_config_parses_with_upstream_field_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        apiVersion: jumpstarter.dev/v1alpha1
        kind: ExporterConfig
        metadata:
          namespace: lab
          name: bench-1
        endpoint: grpc.example.com:443
        token: secret
        tls:
          ca: ""
          insecure: true
        grpcOptions:
          grpc.keepalive_time_ms: 20000
        description: bench one
        motd: be nice
        export:
          power:
            type: jumpstarter_driver_composite.driver.Composite
            description: power switch
          board:
            children:
              serial:
                type: Composite
          again:
            ref: board.serial
        hooks:
          beforeLease:
            script: echo hi
            timeout: 30
            onFailure: endLease
          afterLease:
            exec: /bin/bash
            script: echo bye
        failureDetection:
          maxRapidFailures: 3
          rapidFailureWindow: 10
        exitOnLeaseEnd: true
        """,
    )
    config = ExporterConfig.from_file(path)
    assert config.metadata.name == "bench-1"
    assert config.tls.insecure is True
    assert config.grpc_options == {"grpc.keepalive_time_ms": 20000}
    assert config.export["board"].children is not None
    assert config.export["again"].ref == "board.serial"
    assert config.hooks.before_lease is not None
    assert config.hooks.before_lease.on_failure == "endLease"
    assert config.hooks.after_lease is not None
    assert config.hooks.after_lease.exec_ == "/bin/bash"
    assert config.hooks.after_lease.timeout == 120
    assert config.hooks.after_lease.on_failure == "warn"
    assert config.failure_detection.max_rapid_failures == 3
    assert config.exit_on_lease_end is True
    assert config.path == path


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        export:
          power:
            type: Composite
            config: {a: 1
          other: 2
        """,
    )
    message = load_error(path)
    assert message.startswith(f"{path}:5:")
    assert "invalid YAML" in message


def test_unknown_field_names_line_field_and_allowed_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        kind: ExporterConfig
        export:
          power:
            type: Composite
            confg: {}
        """,
    )
    message = load_error(path)
    assert message.startswith(f"{path}:5: export.power.confg: unknown field 'confg'")
    assert "allowed: type, config, children, description, methods_description, ref" in message


def test_unknown_top_level_field(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: ExporterConfig\nexports: {}\n")
    assert load_error(path).startswith(f"{path}:2: exports: unknown field 'exports'")


def test_wrong_type_names_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        export:
          power:
            type: Composite
        hooks:
          beforeLease:
            script: echo
            timeout: soon
            onFailure: panic
        """,
    )
    message = load_error(path)
    assert f"{path}:7: hooks.beforeLease.timeout: Input should be a valid integer" in message
    assert "got 'soon'" in message
    assert f"{path}:8: hooks.beforeLease.onFailure: Input should be 'warn', 'endLease' or 'exit'" in message


def test_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "export:\n  power:\n    type: Composite\n    config: 5\n")
    message = load_error(path)
    assert message.startswith(f"{path}:4: export.power.config: Input should be a valid dictionary")


def test_missing_required_field_points_at_its_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "export: {}\nhooks:\n  beforeLease:\n    timeout: 5\n")
    assert load_error(path).startswith(f"{path}:3: hooks.beforeLease.script: required field is missing")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{ref: a, type: Composite}", "`ref` stands alone; remove type"),
        ("{config: {x: 1}}", "`config` needs a `type`"),
        ("{description: lonely}", "needs `type`, `children` or `ref`"),
    ],
)
def test_driver_entry_shapes(tmp_path: Path, entry: str, problem: str) -> None:
    path = write(tmp_path, f"export:\n  a:\n    type: Composite\n  b: {entry}\n")
    message = load_error(path)
    assert message.startswith(f"{path}:4: export.b: ")
    assert problem in message


def test_wrong_kind_is_reported_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nendpoint: x:1\n")
    message = load_error(path)
    assert message.startswith(f"{path}:2: kind: expected 'ExporterConfig', found 'ClientConfig'")


def test_wrong_api_version(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: jumpstarter.dev/v2\nkind: ExporterConfig\n")
    assert load_error(path).startswith(f"{path}:1: apiVersion: expected 'jumpstarter.dev/v1alpha1'")


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "export:\n  power:\n    type: Composite\n  power:\n    type: Composite\n")
    assert load_error(path) == f"{path}:4: duplicate key 'power' (first at line 2)"


def test_empty_and_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing\n")
    assert load_error(path) == f"{path}: the config file is empty"
    with pytest.raises(ConfigNotFoundError) as info:
        ExporterConfig.from_file(tmp_path / "absent.yaml")
    assert isinstance(info.value, FileNotFoundError)


def test_client_config_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        apiVersion: jumpstarter.dev/v1alpha1
        kind: ClientConfig
        metadata: {namespace: lab, name: alice}
        endpoint: grpc.example.com:443
        tls: {ca: "", insecure: false}
        token: t0k
        refresh_token: r3fresh
        grpcOptions: {grpc.max_receive_message_length: 1000}
        drivers:
          allow: ["vendor_*"]
          unsafe: false
        shell:
          use_profiles: true
        leases:
          acquisition_timeout: 60
        """,
        name="client.yaml",
    )
    config = ClientConfigV1Alpha1.from_file(path)
    assert config.refresh_token == "r3fresh"
    assert config.drivers.allow == ["vendor_*"]
    assert config.shell.use_profiles is True
    assert (config.leases.acquisition_timeout, config.leases.dial_timeout, config.leases.retry_timeout) == (
        60,
        60,
        300,
    )


def test_client_config_rejects_exporter_kind(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: ExporterConfig\n", name="client.yaml")
    assert "kind: expected 'ClientConfig', found 'ExporterConfig'" in load_error(path, ClientConfig)


def test_user_config(tmp_path: Path) -> None:
    text = "apiVersion: jumpstarter.dev/v1alpha1\nkind: UserConfig\nconfig:\n  current-client: lab\n"
    path = write(tmp_path, text, name="config.yaml")
    assert UserConfig.from_file(path).config.current_client == "lab"


def test_to_yaml_round_trips_and_omits_defaults(tmp_path: Path) -> None:
    config = ClientConfig.model_validate(
        {"metadata": {"name": "alice"}, "endpoint": "e:1", "leases": {"dial_timeout": 5}}
    )
    text = config.to_yaml()
    assert text.startswith("apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\n")
    assert "acquisition_timeout" not in text and "dial_timeout: 5" in text
    path = write(tmp_path, text, name="client.yaml")
    assert ClientConfig.from_file(path).model_dump() == config.model_dump()
