#!/usr/bin/env python3
"""The agent's entry point: `python monitor_agent.py [--once] [--json] [COMMAND]` (agent/cli.py)."""
import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
