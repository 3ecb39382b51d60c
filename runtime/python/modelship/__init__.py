"""modelship's Python runtime: the worker that calls a model's function for the replica agent.

The metrics SDK (track_metric, read_metrics, ...) will live in this package too.
"""

__all__ = ["PROTOCOL_VERSION"]

#: Version of the newline-delimited JSON protocol between the replica agent and a worker.
PROTOCOL_VERSION = 1
