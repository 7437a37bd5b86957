"""The agent itself: the command line, the loop, one cycle, check, status, the metrics server.

The only layer that knows all the others.
"""
