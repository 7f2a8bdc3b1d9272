"""Cycle orchestration, in floors (each imports only those below it; `scripts/import_layers.py` draws them):

- the loop's rules, this folder's modules: the promotion gate (`gate`), settings (`config`), the run lock
  (`state`), the champion registry (`registry`), the history table (`history`), decision logs
  (`decision_log`), the plateau record (`plateau`), candidates as Ray tasks (`parallel`), steering;
- `stages/`: the stage table and the stage bodies;
- `server/`: the stage and steering tools, and the full MCP server;
- `driver/`: what `loop.run` is made of (arguments, the cycle driver, console, signals);
- the commands: `run`, `report`, `publish`, `steer`.
"""
