"""The metrics SDK, CDSW's (``import modelship as cdsw``): what a model function tracks for each
prediction, delayed and aggregate metrics, reading them back, and experiments' metrics.

Where a tracked metric goes:

- inside a call the worker is answering: into that prediction, sent on the answer line
  (docs/workers.md) and stored by the gateway under the request's uuid;
- inside a ``@model_metrics`` function called outside a worker (a notebook, a script): into a
  prediction of its own (a uuid4), kept in this process's in-memory dev store with its start
  and end (CDSW's dev mode), which ``read_metrics(..., dev=True)`` reads;
- outside any prediction: a JSON line in ``MODELSHIP_RUN_METRICS_FILE`` when it is set (an
  experiment, ``modelship run``), else this process's session list (``session_metrics()``).

Every value must be JSON (numpy arrays and scalars are converted); one that is not raises at
once, naming its key.
"""

import collections
import contextvars
import functools
import json
import math
import numbers
import os
import threading
import time
import urllib.parse
import uuid as uuids
from collections.abc import Mapping

from modelship import _client, _json, _runtime

#: The most a prediction's metrics may take, encoded, on an answer line: larger ones are dropped
#: (with a line on stderr) and the answer goes without them.
MAX_METRICS_BYTES = 64 * 1024
#: Rows asked for per page of read_metrics.
READ_PAGE_ROWS = 1000
#: The most entries session_metrics() keeps (the oldest go first): a worker's model that tracks
#: from a thread of its own between calls must not grow without end.
MAX_SESSION_ENTRIES = 10000
#: The prefix of modelship's CRNs (controller/metrics/crn.ts); it may be left out.
CRN_PREFIX = "crn:modelship:"


def _now_ms():
    # Rounded, as CDSW's examples take their windows: int(round(time.time() * 1000)).
    return int(round(time.time() * 1000))


def _metric_text(key, value):
    """The value's JSON text; raises, naming the key, for a key that is not a string or a value
    that is not JSON."""
    if not isinstance(key, str):
        raise TypeError(f"a metric's key is a string, not {type(key).__name__} ({key!r})")
    try:
        return _json.encode(value)
    except (TypeError, ValueError) as error:
        raise type(error)(
            f"metric {key!r} is not JSON and cannot be tracked: {error}"
            + (" (NaN and Infinity are not JSON)" if "Out of range float" in str(error) else "")
        ) from None


def _metric_texts(metrics, what):
    """Every value of a dict of metrics as JSON text, all checked before any is kept."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{what} takes a dict of metrics, not {type(metrics).__name__}")
    return {key: _metric_text(key, value) for key, value in metrics.items()}


def _object_text(texts):
    """A JSON object's text from its members' texts (ASCII, like every member)."""
    return "{" + ",".join(f"{json.dumps(key)}:{text}" for key, text in texts.items()) + "}"


def _decoded(texts):
    return {key: _json.decode(text) for key, text in texts.items()}


class Prediction:
    """One prediction: its uuid and what was tracked for it. Thread-safe: a model may track from
    threads of its own."""

    def __init__(self, uuid=None, make_uuid=True):
        self._uuid = uuid
        #: A worker's call without a uuid (a replica called directly, `modelship plan
        #: --predict`) keeps none: its answer then says the same for the same input.
        self._make_uuid = make_uuid
        self._texts = {}
        self._lock = threading.Lock()
        #: Whether a @model_metrics function ran for it (its answer then carries metrics, even
        #: none: the uuid is the caller's handle for delayed metrics).
        self.decorated = False

    @property
    def uuid(self):
        with self._lock:
            if self._uuid is None and self._make_uuid:
                self._uuid = str(uuids.uuid4())
            return self._uuid

    def track(self, texts):
        with self._lock:
            self._texts.update(texts)

    def texts(self):
        with self._lock:
            return dict(self._texts)

    def metrics_json(self):
        """The metrics as one JSON object's text (ASCII), or None when the call neither was
        decorated nor tracked anything."""
        texts = self.texts()
        if not texts and not self.decorated:
            return None
        return _object_text(texts)


#: The prediction of a @model_metrics function running outside a worker, in this context.
_dev_prediction = contextvars.ContextVar("modelship_prediction", default=None)


def current_prediction():
    """The prediction being made now: a decorated function's outside a worker (this context's),
    else the one the worker is answering, else None."""
    prediction = _dev_prediction.get()
    return prediction if prediction is not None else _runtime.current


def _deployment_crn():
    return os.environ.get("MODELSHIP_DEPLOYMENT_CRN") or None


def _normal_crn(crn):
    if crn is None:
        return None
    if not isinstance(crn, str) or not crn:
        raise TypeError(f"a CRN is a non-empty string, not {crn!r}")
    return crn if crn.startswith("crn:") else CRN_PREFIX + crn


def _model_of(crn):
    """The Model's CRN of a modelship build or deployment CRN; None for another's."""
    if crn is None or not crn.startswith(CRN_PREFIX):
        return None
    return CRN_PREFIX + crn[len(CRN_PREFIX) :].split("/", 1)[0]


class _DevStore:
    """CDSW's dev mode: predictions, delayed and aggregate metrics kept in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rows = []
        self._predictions = {}
        self._next_aggregate = 1

    def add_prediction(self, prediction, start_ms, end_ms, deployment_crn):
        deployment = _normal_crn(deployment_crn)
        row = {
            "type": "prediction",
            "predictionUuid": prediction.uuid,
            "modelCrn": _model_of(deployment),
            "modelBuildCrn": None,
            "modelDeploymentCrn": deployment,
            "startTimeStampMs": start_ms,
            "endTimeStampMs": end_ms,
            "texts": prediction.texts(),
            "delayed": {},
        }
        with self._lock:
            self._rows.append(row)
            self._predictions[row["predictionUuid"]] = row

    def add_delayed(self, prediction_uuid, texts):
        with self._lock:
            row = self._predictions.get(prediction_uuid)
            if row is None:
                return False
            row["delayed"].update(texts)
            return True

    def add_aggregate(self, texts, start_ms, end_ms, model, build, deployment):
        with self._lock:
            number = self._next_aggregate
            self._next_aggregate += 1
            self._rows.append(
                {
                    "type": "aggregate",
                    "modelCrn": model or _model_of(build) or _model_of(deployment),
                    "modelBuildCrn": build,
                    "modelDeploymentCrn": deployment,
                    "startTimeStampMs": start_ms,
                    "endTimeStampMs": end_ms,
                    "texts": texts,
                    "delayed": {},
                }
            )
            return number

    def read(self, model, build, deployment, start_ms, end_ms):
        def covers(query, value):
            # A dev prediction made without MODELSHIP_DEPLOYMENT_CRN belongs to no deployment:
            # whatever CRN the script reads by, it is there (CDSW's dev mode reads it so too).
            # A deployment's CRN without the rollout's id covers all its rollouts.
            return query is None or value is None or value == query or value.startswith(query + "/")

        with self._lock:
            rows = [
                row
                for row in self._rows
                if covers(model, row["modelCrn"])
                and covers(build, row["modelBuildCrn"])
                and covers(deployment, row["modelDeploymentCrn"])
                # Both ends inclusive: a script takes its window with its own clock, and a
                # prediction in the very millisecond of end_timestamp_ms is meant to be in it.
                and start_ms <= row["startTimeStampMs"]
                and (end_ms is None or row["startTimeStampMs"] <= end_ms)
            ]
            rows = [(row, {**row["texts"], **row["delayed"]}) for row in rows]
        answer = []
        for row, texts in sorted(rows, key=lambda pair: pair[0]["startTimeStampMs"]):
            shown = {
                name: value
                for name, value in row.items()
                if name not in ("texts", "delayed") and value is not None
            }
            shown["metrics"] = _decoded(texts)
            answer.append(shown)
        return answer

    def clear(self):
        with self._lock:
            self._rows.clear()
            self._predictions.clear()


_dev_store = _DevStore()
_session_lock = threading.Lock()
_session = collections.deque(maxlen=MAX_SESSION_ENTRIES)


def _record_outside(line_text, entry):
    """A metric or file tracked outside any prediction: the run's file, else the session."""
    path = os.environ.get("MODELSHIP_RUN_METRICS_FILE")
    if path:
        # One write of one whole line, in append mode: lines of several processes never mix.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, (line_text + "\n").encode("ascii"))
        finally:
            os.close(descriptor)
        return
    with _session_lock:
        _session.append(entry)


def session_metrics():
    """What this process tracked outside any prediction and outside an experiment (no
    MODELSHIP_RUN_METRICS_FILE): ``[{"key": k, "value": v}, {"file": name}, ...]``, in order
    (the latest MAX_SESSION_ENTRIES)."""
    with _session_lock:
        return [dict(entry) for entry in _session]


def track_metric(key, value):
    """Tracks a metric: for the current prediction inside a model function, for the experiment
    (``MODELSHIP_RUN_METRICS_FILE``) or the session outside one. The value must be JSON."""
    track_metrics({key: value})


def track_metrics(metrics):
    """track_metric for each key and value of a dict, all checked before any is tracked."""
    texts = _metric_texts(metrics, "track_metrics")
    prediction = current_prediction()
    if prediction is not None:
        prediction.track(texts)
        return
    for key, text in texts.items():
        _record_outside(
            f'{{"key":{json.dumps(key)},"value":{text}}}',
            {"key": key, "value": _json.decode(text)},
        )


def track_file(name):
    """Records a file an experiment wrote (CDSW's, for `modelship run`): a ``{"file": name}`` line
    in ``MODELSHIP_RUN_METRICS_FILE``, or the session's list outside an experiment."""
    name = os.fspath(name)
    if not isinstance(name, str) or not name:
        raise TypeError(f"track_file takes a file's name, not {name!r}")
    _record_outside(json.dumps({"file": name}, separators=(",", ":")), {"file": name})


def _wrapped(result, prediction_uuid):
    return {
        "prediction": result,
        "uuid": prediction_uuid,
        "model_deployment_crn": _deployment_crn(),
    }


def model_metrics(function):
    """Decorates a model function whose predictions track metrics (CDSW's ``@cdsw.model_metrics``).

    It returns ``{"prediction": <the function's result>, "uuid": <the prediction's uuid>,
    "model_deployment_crn": <MODELSHIP_DEPLOYMENT_CRN or None>}``. In a worker the uuid is the
    request's (the gateway's); outside one it is a new uuid4 and the prediction is kept, with its
    metrics and start and end, in the in-memory dev store.
    """

    @functools.wraps(function)
    def decorated(*args, **kwargs):
        prediction = current_prediction()
        if prediction is not None:  # in a worker's call, or inside another decorated function
            prediction.decorated = True
            return _wrapped(function(*args, **kwargs), prediction.uuid)
        prediction = Prediction()
        prediction.decorated = True
        token = _dev_prediction.set(prediction)
        start_ms = _now_ms()
        try:
            result = function(*args, **kwargs)
        finally:
            _dev_prediction.reset(token)
        _dev_store.add_prediction(prediction, start_ms, _now_ms(), _deployment_crn())
        return _wrapped(result, prediction.uuid)

    return decorated


def _is_dev(dev):
    """dev=None: MODELSHIP_DEV decides (1, true, yes or on)."""
    if dev is None:
        return os.environ.get("MODELSHIP_DEV", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(dev)


def _ms(name, value, optional=False):
    if value is None and optional:
        return None
    # numbers.Integral and Real: numpy's int64 and float64 are welcome too.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} is ms since the epoch (an int), not {value!r}")
    if not isinstance(value, numbers.Integral) and not math.isfinite(value):
        raise ValueError(f"{name} is ms since the epoch (an int), not {value!r}")
    return int(value)


def _subject(model_crn, model_build_crn, model_deployment_crn, what):
    crns = [_normal_crn(crn) for crn in (model_crn, model_build_crn, model_deployment_crn)]
    if all(crn is None for crn in crns):
        raise ValueError(
            f"{what} needs model_crn, model_build_crn or model_deployment_crn "
            "(`modelship describe MODEL` prints them)"
        )
    return crns


def read_metrics(
    model_crn=None,
    model_build_crn=None,
    model_deployment_crn=None,
    start_timestamp_ms=0,
    end_timestamp_ms=None,
    dev=None,
):
    """The metrics of a model, a build or a deployment in a window, oldest first:
    ``{"metrics": [row, ...]}``, each row
    ``{"type": "prediction"|"aggregate"|"rollup", "predictionUuid", "modelCrn", "modelBuildCrn",
    "modelDeploymentCrn", "startTimeStampMs", "endTimeStampMs", "metrics": {...}}`` with a
    prediction's delayed metrics merged into its own. All pages are read.

    dev=True reads this process's dev store (both ends of the window inclusive); dev=None is
    MODELSHIP_DEV's choice. Raises MetricsError when the server refuses.
    """
    model, build, deployment = _subject(
        model_crn, model_build_crn, model_deployment_crn, "read_metrics"
    )
    start_ms = _ms("start_timestamp_ms", start_timestamp_ms)
    end_ms = _ms("end_timestamp_ms", end_timestamp_ms, optional=True)
    if _is_dev(dev):
        return {"metrics": _dev_store.read(model, build, deployment, start_ms, end_ms)}
    query = [
        (name, crn)
        for name, crn in (("modelCrn", model), ("modelBuildCrn", build), ("modelDeploymentCrn", deployment))
        if crn is not None
    ]
    query.append(("startTimestampMs", str(start_ms)))
    if end_ms is not None:
        # The API's end is exclusive; CDSW's (and the dev store's) is inclusive: a script that
        # takes the time right after its last call must find that call.
        query.append(("endTimestampMs", str(end_ms + 1)))
    query.append(("limit", str(READ_PAGE_ROWS)))
    rows = []
    cursor = None
    while True:
        page = query + ([("cursor", cursor)] if cursor is not None else [])
        answer = _client.request("GET", "/model-metrics?" + urllib.parse.urlencode(page))
        found = answer.get("metrics")
        if not isinstance(found, list):
            raise _client.MetricsError(f'GET /model-metrics answered without a "metrics" list: {answer!r}')
        rows.extend(found)
        following = answer.get("next")
        if following is None or following == "":
            return {"metrics": rows}
        if following == cursor:
            raise _client.MetricsError(f"GET /model-metrics answered the same page again (cursor {cursor!r})")
        cursor = str(following)


def track_delayed_metrics(metrics, prediction_uuid, dev=None):
    """Adds metrics to a past prediction by its uuid (ground truth that arrives later); they are
    merged into its row's metrics. Returns ``{"success": True}``; raises MetricsError when no
    prediction has the uuid (HTTP 404) or the server refuses."""
    texts = _metric_texts(metrics, "track_delayed_metrics")
    if not isinstance(prediction_uuid, str) or not prediction_uuid:
        raise TypeError(f"prediction_uuid is a prediction's uuid (a string), not {prediction_uuid!r}")
    if _is_dev(dev):
        if not _dev_store.add_delayed(prediction_uuid, texts):
            message = f"no prediction of this process has the uuid {prediction_uuid!r}"
            raise _client.MetricsError(
                f"metrics.unknown_prediction: {message} (the dev store)",
                code="metrics.unknown_prediction",
                server_message=message,
            )
        return {"success": True}
    body = f'{{"predictionUuid":{json.dumps(prediction_uuid)},"metrics":{_object_text(texts)}}}'
    return _client.request("POST", "/model-metrics/delayed", body)


def track_aggregate_metrics(
    metrics,
    start_timestamp_ms,
    end_timestamp_ms,
    model_deployment_crn=None,
    model_build_crn=None,
    model_crn=None,
    dev=None,
):
    """Records metrics computed over a window of predictions (accuracy, drift) for a
    deployment, a build or a model. Returns ``{"success": True, "id": n}``."""
    texts = _metric_texts(metrics, "track_aggregate_metrics")
    model, build, deployment = _subject(
        model_crn, model_build_crn, model_deployment_crn, "track_aggregate_metrics"
    )
    start_ms = _ms("start_timestamp_ms", start_timestamp_ms)
    end_ms = _ms("end_timestamp_ms", end_timestamp_ms)
    if _is_dev(dev):
        number = _dev_store.add_aggregate(texts, start_ms, end_ms, model, build, deployment)
        return {"success": True, "id": number}
    members = [
        f'"metrics":{_object_text(texts)}',
        f'"startTimestampMs":{start_ms}',
        f'"endTimestampMs":{end_ms}',
    ]
    for name, crn in (("modelDeploymentCrn", deployment), ("modelBuildCrn", build), ("modelCrn", model)):
        if crn is not None:
            members.append(f"{json.dumps(name)}:{json.dumps(crn)}")
    return _client.request("POST", "/model-metrics/aggregate", "{" + ",".join(members) + "}")


def call_model(model_access_key, ipt, api_key=None):
    """Calls a deployed model through the gateway, as CDSW's ``cdsw.call_model`` does: POST
    /model with ``{"accessKey": ..., "request": ipt}``, the API key (``api_key``, else
    MODELSHIP_API_KEY) as ``Authorization: Bearer``.

    Returns the gateway's answer as a dict whatever its status, as CDSW does: ``{"success": True,
    "response": ..., "replicaId": ..., "uuid": ...}``, or ``{"success": False, "error": CODE,
    "message": ...}``. Raises MetricsError only when no JSON answer comes (the gateway cannot be
    reached, or something else answered).
    """
    if not isinstance(model_access_key, str) or not model_access_key:
        raise TypeError(f"model_access_key is the model's access key (a string), not {model_access_key!r}")
    body = f'{{"accessKey":{json.dumps(model_access_key)},"request":{_json.encode(ipt)}}}'
    status, parsed, text = _client.send("POST", "/model", body, api_key)
    if isinstance(parsed, dict):
        return parsed
    snippet = text if len(text) <= 200 else text[:200] + "..."
    raise _client.MetricsError(
        f"HTTP {status} from POST {_client.base_url()}/model, not a modelship answer: {snippet!r}",
        status,
    )
