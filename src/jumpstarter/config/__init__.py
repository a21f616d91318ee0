"""Configuration files: pydantic models of the YAML files and where they live.

Modules: `paths` (locations, aliases, atomic writes), `loading` (YAML with line-numbered errors),
`client`, `exporter`, `user` (the three file kinds), `store` (list/load/save/delete by alias,
current client) and `drivers` (the driver tree an exporter config describes). Nothing is
imported here, so `jumpstarter.config.paths` stays cheap for commands that only need paths.
"""
