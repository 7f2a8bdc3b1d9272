"""MCP tools grouped by capability; each module exposes `register(server)` (see tools/server.py)."""
