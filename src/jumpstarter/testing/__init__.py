"""pytest integration: the `jumpstarter` pytest plugin (entry point `pytest11`) and its fixtures.

`settings` resolves which target a test session drives (pure logic), `targets` opens it,
`leasing` is the seam to the controller for distributed mode, `capture` collects exporter logs
and console output for failure reports, and `plugin` wires all of it into pytest.
"""
