"""The student model and how a candidate's is trained: the bundled base model (`base_model`); the two LM
students, generative LoRA (`generative`, `decoding`, `generative_training`) and regression head
(`regression`, `regression_training`); the fold ensemble of either (`ensemble`) and the stack that blends it
with cheap models (`stack`); the training split's CV folds and out-of-fold predictions (`folds`); one
candidate trained from its `StudentRecipe`, pruning included (`recipes`); and every kind of student folder
behind one interface (`interface`: `load_student`, `train_student`).

May import `tools.core`, `tools.data` (dataset hashes, replay, novelty, bag of words) and `tools.evaluation`
(the cheap baselines a stack blends, the bootstrap the pruner uses).
"""
