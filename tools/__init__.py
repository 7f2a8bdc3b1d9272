"""The capabilities the loop's agent calls through MCP, one subpackage each (lower layers never import
upper ones): `core` < `data` < `evaluation` < `student`, `tracking` < `serving` < `mcp`. No subpackage
imports `agent` or `loop`.

The modules at this level are the commands (the top floor, free to import any package):
`python -m tools.server` (the full server, assembled in `loop.server`) `| tools.evaluate | tools.generator |
tools.predict`.
"""
