"""Lets the example's tests run from a checkout without installing the package first."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("jumpstarter_driver_relay") is None:
    sys.path.insert(0, str(Path(__file__).parent / "src"))
