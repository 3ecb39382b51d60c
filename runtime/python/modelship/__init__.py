"""modelship's Python runtime: the worker that calls a model's function for the replica agent, and
the metrics SDK, CDSW's: scripts written for CDSW run with ``import modelship as cdsw``.

In a model's file::

    import modelship as cdsw

    @cdsw.model_metrics
    def predict(args):
        cdsw.track_metric("input", args)
        result = {"result": 42}
        cdsw.track_metric("predict_result", result)
        return result          # callers get {"prediction": ..., "uuid": ..., ...}

Elsewhere (a notebook, a job)::

    cdsw.track_delayed_metrics({"actual": 41}, uuid)
    cdsw.track_aggregate_metrics({"mse": 0.2}, start_ms, end_ms, model_deployment_crn=crn)
    cdsw.read_metrics(model_deployment_crn=crn, start_timestamp_ms=start_ms)["metrics"]
    cdsw.call_model(access_key, {"a": 3})

In an experiment (a training script)::

    cdsw.track_metric("R_squared", 0.79)   # outside a prediction: a line of the run's file
    cdsw.track_file("model.pkl")           # (MODELSHIP_RUN_METRICS_FILE), else session_metrics()

Settings come from the environment, read at each call:

- ``MODELSHIP_URL``: the gateway, ``http://127.0.0.1:8080`` (``modelship up``'s) by default;
- ``MODELSHIP_API_KEY``: the model API key sent as ``Authorization: Bearer``;
- ``MODELSHIP_DEV=1``: ``dev=True`` is the default (CDSW's dev mode: this process's store);
- ``MODELSHIP_DEPLOYMENT_CRN``: the deployment a decorated function's answer names;
- ``MODELSHIP_RUN_METRICS_FILE``: where an experiment's ``track_metric`` and ``track_file``
  append JSON lines, outside any prediction.

HTTP failures of the metrics functions raise ``MetricsError`` (its message has the server's code
and message). See docs/workers.md for how tracked metrics travel on the worker's answer line.
"""

from modelship import _runtime
from modelship._client import MetricsError
from modelship._metrics import (
    call_model,
    model_metrics,
    read_metrics,
    session_metrics,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_file,
    track_metric,
    track_metrics,
)

__all__ = [
    "PROTOCOL_VERSION",
    "MetricsError",
    "call_model",
    "model_metrics",
    "read_metrics",
    "requests_in_flight",
    "session_metrics",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_file",
    "track_metric",
    "track_metrics",
]

#: Version of the newline-delimited JSON protocol between the replica agent and a worker.
PROTOCOL_VERSION = 1


def requests_in_flight():
    """How many requests this worker holds now, the one being answered included.

    The agent sends one at a time, so a model sees 1; more means the agent broke its promise.
    Outside a worker it is 0.
    """
    return _runtime.reader.in_flight() if _runtime.reader is not None else 0
