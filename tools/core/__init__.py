"""The foundation every other part of kotone-loop stands on: the shared vocabulary (`schema`: the six
dims, a training row, a prediction), the pydantic contracts that cross a boundary (`contracts`: plans,
hyperparameters, champion records, history lines), where files live (`paths`), the one reader of the champion
pointer and of the history (`records`), atomic writes (`atomic`) that mask
secrets (`redaction`), jinja2 rendering of `prompts/` (`prompting`), progress that reads well in a log
(`progress`) and the `KOTONE_*` variables that are not loop settings (`env_vars`).

Imports nothing else of the project.
"""
