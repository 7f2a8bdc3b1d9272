"""The stages of a cycle, one module each (README: "What a cycle does"), in the order they run:

| stage | module | runs in |
|---|---|---|
| snapshot | `snapshot` | the loop, through read-only MCP tools |
| diagnose | `diagnose` | the MCP server (`diagnose_failures_tool`) |
| plan | `agent.planner` backends | the loop, through read-only MCP tools |
| augment | `augment` | the MCP server (`augment_training_data_tool`) |
| train, evaluate | `candidate` | the MCP server (`train_candidates_tool`, `evaluate_candidates_tool`) |
| gate, confirm, log | `decide` | the MCP server (`run_gate_tool`, `confirm_winner_tool`, `write_decision_log_tool`) |

Cycle 0 (`bootstrap`) evaluates the base model and the baselines. `inputs` is what every stage reads,
`calls` how the loop calls a stage's tool. Each stage reads what the previous one wrote in
`artifacts/loop/cycle_N/` and writes its own output atomically, so a killed cycle resumes stage by stage.
"""
