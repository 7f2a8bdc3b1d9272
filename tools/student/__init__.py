"""The student model: the bundled base model (`base_model`), the generative LoRA student (`generative`,
`decoding`, `generative_training`), the regression-head student (`regression`, `regression_training`), and
the one interface the loop uses for either (`interface`: `load_student`, `train_student`).

May import `tools.core`, `tools.data` and `tools.evaluation` (the cheap baselines a stack blends).
"""
