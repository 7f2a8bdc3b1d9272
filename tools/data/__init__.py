"""Training data: loading datasets (`dataset`: kotone-ft files, the Hub, the shipped data, with file:line
errors and split-leak checks), the project's own generator of Kotone requests (`generator`), the teachers
that write augmented pairs (`teacher`), hard-case replay (`replay`) and the filters every augmented row
goes through (`filters`), and how unlike the training requests a request is (`novelty`).

May import `tools.core` only.
"""
