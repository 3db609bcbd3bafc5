"""Fault-injection tests: bad inputs must end in typed errors or failed manifest rows, never crashes."""
