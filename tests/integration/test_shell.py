"""`jmp shell --exporter-config FILE -- COMMAND` and `j` inside it (the fast path)."""

from __future__ import annotations

import os
import signal
import subprocess

from tests.integration.conftest import JMP, Cli, assert_clean_failure, wait_until


def test_exit_status_propagates_and_j_works(cli: Cli) -> None:
    config = cli.exporter_config()
    result = cli.jmp("shell", "--exporter-config", str(config), "--",
                     "sh", "-c", "j lamp on --level 42 && j lamp status; exit 7")
    assert result.returncode == 7, result.stderr
    assert result.stdout == "on at 42%\n42\n"
    assert cli.marker().read_text() == "closed\n"  # drivers closed when the shell ends


def test_j_uses_the_shell_command_socket(cli: Cli) -> None:
    # without JUMPSTARTER_HOST only the fast path (JMP_J_SOCKET) can reach the exporter
    script = 'test -S "$JMP_J_SOCKET" && test -S "$JUMPSTARTER_HOST" && env -u JUMPSTARTER_HOST j lamp on --level 5'
    result = cli.jmp("shell", "--exporter-config", str(cli.exporter_config()), "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "on at 5%\n"


def test_generated_commands(cli: Cli) -> None:
    script = "; ".join([
        "j lamp rename desk --suffix=-left",
        "j lamp rename 'two words'",
        "j lamp blink 3",
        "j lamp on",
        "j lamp status",
        "j lamp on --level 101; echo code=$?",
        "j lamp on --level notanumber; echo code=$?",
        "j lamp nosuchmethod; echo code=$?",
        "j lamp --help",
    ])
    result = cli.jmp("shell", "--exporter-config", str(cli.exporter_config()), "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:7] == ["desk-left", "two words", "blink 1", "blink 2", "blink 3", "on at 100%", "100"]
    assert lines[7:10] == ["code=1", "code=2", "code=2"]
    assert "level 101 is above the maximum of 100" in result.stderr
    assert "'notanumber' is not a valid integer" in result.stderr
    assert "No such command 'nosuchmethod'" in result.stderr
    assert "Yield one line per blink." in result.stdout
    assert "Traceback" not in result.stderr


def test_command_not_found_and_signals(cli: Cli) -> None:
    config = str(cli.exporter_config())
    missing = cli.jmp("shell", "--exporter-config", config, "--", "no-such-program-here")
    assert missing.returncode == 127
    assert "command not found: no-such-program-here" in missing.stderr
    killed = cli.jmp("shell", "--exporter-config", config, "--", "sh", "-c", "kill -TERM $$")
    assert killed.returncode == 128 + 15


def test_ctrl_c_is_the_commands_to_handle(cli: Cli) -> None:
    # a terminal's Ctrl-C reaches the whole foreground group; an interactive shell ignores it, and
    # so must `jmp shell` around it (it used to kill the command and end the shell)
    script = 'trap "" INT; touch started; while [ ! -e go ]; do sleep 0.02; done; echo survived'
    proc = subprocess.Popen([JMP, "shell", "--exporter-config", str(cli.exporter_config()), "--", "sh", "-c", script],
                            env=cli.env, cwd=cli.tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until(lambda: (cli.tmp / "started").exists() or proc.poll() is not None, what="the command started")
        os.killpg(proc.pid, signal.SIGINT)
        (cli.tmp / "go").touch()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (0, "survived\n"), err


def test_interactive_shell_reads_commands_from_stdin(cli: Cli) -> None:
    result = cli.jmp("shell", "--exporter-config", str(cli.exporter_config()),
                     input="j lamp on --level 9\necho JMP_EXPORTER=$JMP_EXPORTER\nexit 3\n")
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == ["on at 9%", "JMP_EXPORTER=exporter"]


def test_j_without_a_shell(cli: Cli) -> None:
    result = cli.j("lamp", "status")
    assert result.returncode == 2
    assert "JUMPSTARTER_HOST is not set" in result.stderr
    assert "jmp shell" in result.stderr
    gone = cli.j("lamp", "status", host=str(cli.socket("gone.sock")))
    assert_clean_failure(gone, "no exporter socket there")


def test_shell_without_any_exporter_config(cli: Cli) -> None:
    result = cli.jmp("shell", "--", "true")
    assert_clean_failure(result, "jmp config exporter create", str(cli.config_home / "exporters"))
    for alias in ("bench", "rack"):
        created = cli.jmp("config", "exporter", "create", alias, "--nointeractive")
        assert created.returncode == 0, created.stderr
    listed = cli.jmp("shell", "--", "true")
    assert_clean_failure(listed, "bench, rack", "jmp config exporter create")
    missing = cli.jmp("shell", "--exporter", "nope", "--", "true")
    assert_clean_failure(missing, "'nope'", str(cli.config_home / "exporters"), str(cli.system_dir / "exporters"))
