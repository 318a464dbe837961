#!/usr/bin/env python3
"""Entry point of the gate GitHub Action (a Docker container action; see action.yml).

All logic lives in gate/action.py; this file only hands it the process environment.
It also runs outside a container: `python entrypoint.py` with the INPUT_* and GITHUB_*
variables set, which is how the tests drive it.
"""

import sys

from gate.action import main

if __name__ == "__main__":
    sys.exit(main())
