"""The foundation every other part of kotone-loop stands on: the shared vocabulary (`schema`: the six
dims, a training row, a prediction), the pydantic contracts that cross a boundary (`contracts`: plans,
hyperparameters, champion records, history lines), where files live (`paths`), atomic writes (`atomic`) that mask
secrets (`redaction`) and jinja2 rendering of `prompts/` (`prompting`).

Imports nothing else of the project.
"""
