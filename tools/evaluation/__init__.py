"""Scoring: the metric definitions and `EvalReport` (`metrics`), the ten-line baselines every figure is
printed beside and the learnability diagnosis (`baselines`), and the harness that runs any predictor over a
split (`harness`; `python -m tools.evaluate`).

May import `tools.core` and `tools.data`; it takes predictors as functions, so it never imports a student.
"""
