"""The capabilities the loop's agent calls through MCP, one subpackage each (lower layers never import
upper ones): `core` < `data` < `evaluation`, `student` < `tracking`, `serving` < `mcp`.

The modules at this level are the commands:
`python -m tools.server | tools.evaluate | tools.generator | tools.predict`.
"""
