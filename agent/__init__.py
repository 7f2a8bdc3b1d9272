"""The agent: the MCP client it reads and acts through (`mcp_client`, every call recorded by
`transcript`), the planner interface and evidence (`planner`), its two backends (`offline_planner`: rules;
`mistral_planner`: function calling), the backend choice (`backends`) and the guardrails every plan passes
(`guardrails`).
"""
