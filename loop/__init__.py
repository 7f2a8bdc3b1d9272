"""Cycle orchestration: the command (`run`), the stages of a cycle (`stages/`), the promotion gate
(`gate`), settings (`config`), per-cycle state and the run lock (`state`), the champion registry
(`registry`), the history table (`history`), decision logs (`decision_log`) and the HTML report (`report`).
"""
