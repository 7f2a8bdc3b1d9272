"""The planning agent: MCP client, planners (offline rules, Mistral), guardrails, transcript."""
