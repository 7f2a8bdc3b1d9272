"""The MCP server's plumbing (`server`) and the capability tools, one module per capability: W&B-mirroring
run queries (`wandb_tools`), Weave trace queries (`weave_tools`), the loop's read-only records (`loop_tools`),
predictions (`predict_tools`), plus what they share (`safety`, `pathguard`, `http_auth`).

The top layer of `tools`: may import every other part of it, never `agent` or `loop`. The tools that run or
steer the loop live with it (`loop.server`), which assembles the full server.
"""
