"""Loading the client class an exporter names, under an allow-list of import globs."""

from __future__ import annotations

import importlib
from fnmatch import fnmatchcase

from jumpstarter.errors import MissingDriverClientError

#: Client classes shipped with Jumpstarter itself are always allowed.
BUILTIN_ALLOW = ("jumpstarter.*", "jumpstarter_driver_*")


def package_hint(class_path: str) -> str:
    """The distribution that usually provides a module path (`jumpstarter_driver_x` -> `jumpstarter-driver-x`)."""
    top = class_path.split(".", 1)[0]
    return top.replace("_", "-")


def is_allowed(class_path: str, allow: list[str] | tuple[str, ...], unsafe: bool) -> bool:
    """Whether `class_path` may be imported."""
    if unsafe:
        return True
    return any(fnmatchcase(class_path, pattern) for pattern in (*BUILTIN_ALLOW, *allow))


def import_client_class(class_path: str, allow: list[str] | tuple[str, ...] = (), unsafe: bool = False) -> type:
    """Import a client class by dotted path, or raise `MissingDriverClientError` saying why."""
    if not is_allowed(class_path, allow, unsafe):
        raise MissingDriverClientError(
            f"driver client {class_path} is not in the allow-list; allow it with "
            f"JMP_DRIVERS_ALLOW='{class_path.split('.', 1)[0]}.*' (or drivers.allow in the client "
            "config), or trust every driver with JMP_DRIVERS_ALLOW=UNSAFE"
        )
    module_name, _, class_name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise MissingDriverClientError(
            f"driver client {class_path} is not installed ({exc}); install the "
            f"'{package_hint(class_path)}' package on this machine"
        ) from None
    if not isinstance(cls, type):
        raise MissingDriverClientError(f"{class_path} is not a class")
    return cls
