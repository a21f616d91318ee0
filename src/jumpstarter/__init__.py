"""Jumpstarter: hardware-in-the-loop testing through one Python API.

Import what you need from the sub-packages (`jumpstarter.driver`, `jumpstarter.client`,
`jumpstarter.common.utils`); this package imports nothing eagerly so that command-line
start-up stays fast.
"""
