"""The agent itself: the command line, the loop, one cycle, check, status, the metrics server.

The only layer that knows all the others.
"""

__version__ = "0.1.0"  # the project's one version: pyproject.toml reads it from here

# what started a cycle: its interval, or new lines in a followed log (agent/follow.py)
SCHEDULED, EVENT = "schedule", "event"
