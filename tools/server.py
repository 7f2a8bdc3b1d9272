"""`python -m tools.server`: the command's code lives in `tools.mcp.server`."""

import sys

from tools.mcp.server import main

if __name__ == "__main__":
    sys.exit(main())
