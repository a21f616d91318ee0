"""Test helpers at upstream's import paths: `JumpstarterTest` and `eventually`."""

from jumpstarter_testing.eventually import eventually
from jumpstarter_testing.pytest import JumpstarterTest

__all__ = ["JumpstarterTest", "eventually"]
