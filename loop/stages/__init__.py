"""The stages of a cycle: the stage table (`table`: every stage in order, its MCP tool, body, typed
arguments and result, console lines) and the stage bodies the stage tools run, one module per stage or pair
of stages (`diagnose`, `augment`, `candidate`: train and evaluate, `decide`: gate, confirm and log,
`approve`; cycle 0: `bootstrap`), with what they share (`inputs`: what every stage reads, `scoring`) and the
resume state machine (`progress`). README's stage table is the table's, in words.

Each stage reads what the previous one wrote in `artifacts/loop/cycle_N/` and writes its own output
atomically, so a killed cycle resumes stage by stage. The stages the loop runs itself as an MCP client
(snapshot, plan) live with the driver (`loop.driver`).
"""
