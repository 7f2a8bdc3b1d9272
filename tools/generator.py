"""`python -m tools.generator`: the command's code lives in `tools.data.generator`."""

import sys

from tools.data.generator import main

if __name__ == "__main__":
    sys.exit(main())
