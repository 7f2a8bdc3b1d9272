"""What `python -m loop.run` is made of, one job a module: its arguments (`cli`), one cycle driven stage by
stage (`cycle`), the cycles of a run (`runs`), what it prints (`console`), Ctrl-C and SIGTERM (`signals`), and
the stages the loop runs itself as an MCP client (`snapshot`, `calls`: how it calls a stage's tool).

Above the loop's MCP wing (`loop.server`): the driver talks to the server over MCP and imports what it shares
with it (the stage table, the result models); only the commands sit above it.
"""
