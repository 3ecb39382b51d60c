"""modelship's Python runtime: the worker that calls a model's function for the replica agent.

The metrics SDK (track_metric, read_metrics, ...) will live in this package too.
"""

from modelship import _runtime

__all__ = ["PROTOCOL_VERSION", "requests_in_flight"]

#: Version of the newline-delimited JSON protocol between the replica agent and a worker.
PROTOCOL_VERSION = 1


def requests_in_flight():
    """How many requests this worker holds now, the one being answered included.

    The agent sends one at a time, so a model sees 1; more means the agent broke its promise.
    Outside a worker it is 0.
    """
    return _runtime.reader.in_flight() if _runtime.reader is not None else 0
