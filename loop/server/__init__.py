"""The loop's MCP wing: the tools that run a cycle's stages (`stage_tools`), the tools a person steers a
running loop with (`steering_tools`), and the full server (`assemble`: the capability tools of `tools.mcp`
plus these), which `python -m tools.server` serves.

Above `loop.stages` (the stage tools wrap its bodies), below the driver and the commands.
"""
