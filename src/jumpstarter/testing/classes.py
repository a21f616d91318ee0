"""The target of a `JumpstarterTest` class: the session's, or a lease for the class's selector.

Upstream's `JumpstarterTest` meant to lease a device by the class's `selector` when not inside
`jmp shell`, but caught the wrong exception, so that branch never ran. Here the choice is made from
the resolved settings instead of from an exception: a configured target is used as is (inside a
shell the class's selector is ignored, as upstream); otherwise, or in distributed mode with a
selector of its own, the class leases its device through `leasing.lease()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from jumpstarter.testing.settings import HOW_TO, LeaseSpec, Resolved


def selector_of(cls: type) -> str:
    """The class's label selector: `selector = "k=v,..."`, or upstream's older `filter_labels` dict."""
    selector = getattr(cls, "selector", "") or ""
    if not selector:
        labels = getattr(cls, "filter_labels", None) or {}
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
    return str(selector)


def _has_client_config() -> bool:
    from jumpstarter.config import paths
    from jumpstarter.testing.leasing import current_client_alias

    return paths.client_path(current_client_alias()).is_file()


def class_spec(resolved: Resolved, selector: str, owner: str) -> LeaseSpec | None:
    """The lease a class needs of its own, or None when it uses the session's target."""
    target = resolved.target
    if isinstance(target, LeaseSpec):
        if not selector or selector == target.selector:
            return None
        return LeaseSpec(target.client, selector, target.duration, source=f"{owner}.selector")
    if target is not None:
        return None
    if not selector or not _has_client_config():
        pytest.skip(HOW_TO + (f"; or set up a client config to lease a device by {owner}.selector" if selector else ""))
    return LeaseSpec(None, selector, source=f"{owner}.selector")


@contextmanager
def class_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Yield the root client a `JumpstarterTest` class drives (the class-scoped `client` fixture)."""
    from jumpstarter.testing import plugin

    cls = request.cls
    assert cls is not None, "JumpstarterTest.client is a class fixture"
    resolved = plugin.resolved_for(request.config)
    spec = class_spec(resolved, selector_of(cls), cls.__name__)
    if spec is None and request.config.pluginmanager.is_registered(plugin):
        yield request.getfixturevalue("jumpstarter_session").client
        return
    worker = plugin.worker_of(request.config)
    target = spec or resolved.target
    assert target is not None
    if spec is None:
        plugin.check_workers(resolved, worker)
    session = plugin.open_session(target, resolved, worker)
    setattr(cls, plugin.CLASS_SESSION_ATTR, session)
    try:
        yield session.client
    finally:
        setattr(cls, plugin.CLASS_SESSION_ATTR, None)
        session.close()
