"""Serving the current champion: read its pointer (`tools.core.records`), load its student, answer requests.

Each answer carries the request's novelty against the champion's training rows (`tools.data.novelty`).
Used by the `python -m tools.predict` command and the MCP server's `predict_tool`. May import `tools.core`,
`tools.data` and `tools.student` (every student kind is reached through `tools.student.interface`).
"""
