"""`python -m tools.evaluate`: the command's code lives in `tools.evaluation.harness`."""

import sys

from tools.evaluation.harness import main

if __name__ == "__main__":
    sys.exit(main())
