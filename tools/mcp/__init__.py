"""The MCP server (`server`: every tool is registered there) and its tools, one module per capability:
W&B-mirroring run queries (`wandb_tools`), Weave trace queries (`weave_tools`), the loop's read-only domain
tools (`loop_tools`) and its action tools (`actions`), plus what they share (`safety`, `pathguard`).

The top layer of `tools`: may import every other part of it, and `loop` stage functions (the action tools
wrap them), never `loop.run`.
"""
