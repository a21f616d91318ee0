"""The `jumpstarter` pytest plugin (registered through the `pytest11` entry point).

Fixtures: `jumpstarter_session`, `jumpstarter_client` (alias `client`), `jumpstarter_driver`
(alias `driver`: `driver("power")`), `jumpstarter_metadata`. The target is opened once per session
(per xdist worker) on first use; tests that never ask for it run as usual, and when no target is
configured the tests that do are skipped with instructions. See docs/pytest.md.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from jumpstarter.errors import ConfigurationError
from jumpstarter.testing.settings import HOW_TO, SETTINGS, LeaseSpec, Resolved, Sources, TargetSpec, resolve

if TYPE_CHECKING:
    from jumpstarter.testing.leasing import Worker
    from jumpstarter.testing.session import JumpstarterSession

RESOLVED_KEY = pytest.StashKey["Resolved | Exception"]()
SESSION_KEY = pytest.StashKey["JumpstarterSession | None"]()
MARK_KEY = pytest.StashKey[int]()
#: Class attribute holding a `JumpstarterTest` class's own session, when it leases a device of its own.
CLASS_SESSION_ATTR = "_jumpstarter_session"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jumpstarter", "Jumpstarter: which device the tests drive")
    for s in SETTINGS:
        env = f" (env {s.env}, ini {s.ini})" if s.env else f" (ini {s.ini})"
        dest = f"jmp_{s.name}"
        if s.kind == "bool":
            group.addoption(s.flag, action="store_true", default=None, dest=dest, help=s.help + env)
        elif s.kind == "list":
            group.addoption(s.flag, action="append", default=None, dest=dest, metavar=s.metavar, help=s.help + env)
        else:
            group.addoption(s.flag, default=None, dest=dest, metavar=s.metavar, help=s.help + env)
        parser.addini(s.ini, s.help, type="string", default="")
    parser.addini(
        "jmp_fixture_aliases",
        "Also provide the Jumpstarter fixtures under the short names `client` and `driver`.",
        type="bool",
        default=True,
    )


def _sources(config: pytest.Config) -> Sources:
    import os

    cli = {s.name: config.getoption(f"jmp_{s.name}", None) for s in SETTINGS}
    ini: dict[str, Any] = {}
    for s in SETTINGS:
        try:
            ini[s.ini] = config.getini(s.ini)
        except ValueError:  # the plugin is disabled (-p no:jumpstarter): its ini keys are unknown
            pass
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    return Sources(cli=cli, env=dict(os.environ), ini=ini, cwd=config.invocation_params.dir, ini_dir=ini_dir)


def fail(message: str) -> NoReturn:
    """Fail the test asking for the target with a one-line message (no traceback)."""
    raise pytest.fail.Exception(f"jumpstarter: {message}", pytrace=False)


def resolved_for(config: pytest.Config) -> Resolved:
    """The session's resolved settings (resolved once, at configure time)."""
    found = config.stash.get(RESOLVED_KEY, None)
    if found is None:
        try:
            found = resolve(_sources(config))
        except ConfigurationError as exc:  # reported where a test asks for the target
            found = exc
        config.stash[RESOLVED_KEY] = found
    if isinstance(found, Exception):
        fail(str(found))
    return found


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[RESOLVED_KEY] = resolve(_sources(config))
    except ConfigurationError as exc:  # reported in the header and where a test asks for the target
        config.stash[RESOLVED_KEY] = exc
    if config.getini("jmp_fixture_aliases"):
        from jumpstarter.testing import aliases

        config.pluginmanager.register(aliases, "jumpstarter-aliases")


def pytest_report_header(config: pytest.Config) -> str | None:
    found = config.stash.get(RESOLVED_KEY, None)
    if isinstance(found, Exception):
        return f"jumpstarter: {found}"
    if found is not None and found.target is not None:
        return f"jumpstarter: {found.target.describe()}"
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:  # normally closed by its fixture; this covers aborted runs
        config.stash[SESSION_KEY] = None
        session.close()


# ---- xdist --------------------------------------------------------------------------------
def worker_of(config: pytest.Config) -> Worker:
    """Which pytest-xdist worker this process is (`workerinput` exists only inside workers)."""
    from jumpstarter.testing.leasing import Worker

    workerinput = getattr(config, "workerinput", None)
    if not workerinput:
        return Worker()
    return Worker(str(workerinput.get("workerid", "")), int(workerinput.get("workercount", 1)))


def check_workers(resolved: Resolved, worker: Worker) -> None:
    """Fail clearly when several xdist workers would drive the one device of a local, shell or
    direct target (distributed mode leases one device per worker)."""
    target = resolved.target
    if worker.count <= 1 or target is None or isinstance(target, LeaseSpec):
        return
    fail(
        f"pytest-xdist runs {worker.count} workers, but {target.describe()} is one device "
        "and every worker would drive it at once. Run these tests without -n (or with -n 0 / -p no:xdist), "
        "or use distributed mode (--jmp-client ALIAS --jmp-selector K=V), where each worker leases a device "
        "of its own"
    )


# ---- opening targets ----------------------------------------------------------------------
def open_session(target: TargetSpec, resolved: Resolved, worker: Worker) -> JumpstarterSession:
    """Open a `JumpstarterSession`, turning expected failures into a one-line test error."""
    from jumpstarter.errors import JumpstarterError
    from jumpstarter.testing.session import JumpstarterSession

    try:
        return JumpstarterSession.open(target, resolved, worker)
    except (JumpstarterError, OSError, ValueError, LookupError) as exc:
        problem = str(exc)
    fail(f"cannot use {target.describe()}: {problem}")  # outside `except`: no chained traceback


@pytest.fixture(scope="session")
def jumpstarter_session(request: pytest.FixtureRequest) -> Iterator[JumpstarterSession]:
    """The session's target, opened on first use and kept for the whole session."""
    config = request.config
    resolved = resolved_for(config)
    if resolved.target is None:
        pytest.skip(HOW_TO)
    worker = worker_of(config)
    check_workers(resolved, worker)
    session = open_session(resolved.target, resolved, worker)
    config.stash[SESSION_KEY] = session
    try:
        record = request.getfixturevalue("record_testsuite_property")
        for name, value in session.properties():
            record(name, value)
        yield session
    finally:
        if config.stash.get(SESSION_KEY, None) is session:
            config.stash[SESSION_KEY] = None
            session.close()


@pytest.fixture(scope="session")
def jumpstarter_client(jumpstarter_session: JumpstarterSession) -> Any:
    """The root client of the exporter's driver tree (`client.power.on()`)."""
    return jumpstarter_session.client


@pytest.fixture(scope="session")
def jumpstarter_driver(jumpstarter_session: JumpstarterSession) -> Callable[[str], Any]:
    """`jumpstarter_driver("power")`: the client of one driver, by (dotted) name."""
    return jumpstarter_session.driver


@pytest.fixture(scope="session")
def jumpstarter_metadata(jumpstarter_session: JumpstarterSession) -> Any:
    """The exporter's name, labels and lease (`jumpstarter.utils.env.ExporterMetadata`)."""
    return jumpstarter_session.metadata()


# ---- reports ------------------------------------------------------------------------------
def _session_of(item: pytest.Item) -> JumpstarterSession | None:
    """The open session a test drives, or None when it uses none."""
    cls = getattr(item, "cls", None)
    if cls is not None and getattr(cls, "__jumpstarter_test__", False):
        return getattr(cls, CLASS_SESSION_ATTR, None) or item.config.stash.get(SESSION_KEY, None)
    if "jumpstarter_session" in getattr(item, "fixturenames", ()):
        return item.config.stash.get(SESSION_KEY, None)
    return None


#: Seconds to wait before a device test for records of the previous one still on their way.
SETTLE = 0.03


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    session = _session_of(item)
    if session is not None:
        session.capture.settle(quiet=SETTLE, limit=0.5)  # so that the previous test's lines stay its own
    item.stash[MARK_KEY] = session.capture.mark() if session is not None else 0
    try:
        return (yield)
    finally:
        session = _session_of(item)
        if session is not None:
            item.user_properties.extend(session.properties())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        session = _session_of(item)
        if session is not None:
            session.capture.touch()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        session = _session_of(item)
        if session is not None:
            report.sections.extend(session.failure_sections(item.stash.get(MARK_KEY, 0), report.when))
            item.stash[MARK_KEY] = session.capture.mark()  # a later failing phase shows only newer lines
    return report
