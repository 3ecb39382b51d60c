"""The Python worker: loads the user's file, finds the function, then answers requests.

It talks to the replica agent over two dedicated pipes (by default fd 3 for requests and fd 4
for answers), one JSON object per line, so that the user's own prints on stdout and stderr stay
free for the logs. See docs/workers.md for the protocol.

    python3 -m modelship.worker --file predict.py --function predict
"""

import argparse
import collections
import importlib.util
import inspect
import os
import re
import select
import sys
import threading
import traceback

from modelship import PROTOCOL_VERSION, _json, _metrics, _runtime

#: Exit status when the model cannot be loaded: the agent reports the error and does not retry.
EXIT_LOAD_ERROR = 3


# The JSON the protocol carries (docs/workers.md); ExactNumber stays importable from here.
ExactNumber = _json.ExactNumber
_decode = _json.decode
_encode = _json.encode


def _error(exc, with_traceback):
    error = {"type": type(exc).__name__, "message": str(exc)}
    if with_traceback:
        error["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return error


def _functions_in(module):
    return sorted(
        name
        for name, value in vars(module).items()
        if inspect.isfunction(value) and not name.startswith("_")
    )


def load_function(path, function_name):
    """Imports the file as a module and returns the function; raises LookupError if absent."""
    directory = os.path.dirname(os.path.abspath(path))
    # The model's own modules (helpers beside predict.py) must be importable, as in a script.
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location("__model__", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules["__model__"] = module
    spec.loader.exec_module(module)
    function = getattr(module, function_name, None)
    if not callable(function):
        found = _functions_in(module)
        listed = ", ".join(found) if found else "none"
        raise LookupError(
            f"function {function_name!r} is not defined in {os.path.basename(path)}; "
            f"functions found: {listed}"
        )
    return function


class _RequestReader:
    """Reads request lines from the agent's pipe, on the worker's own thread: a reader thread
    would hand every request over through a queue and a switch between threads, which cost
    more than some models' whole call. It still knows at every moment how many requests it
    holds: `in_flight()` takes in, without waiting, whatever the agent sent meanwhile, and
    counts it with the one being answered. The agent promises one at a time; `in_flight()`
    above 1 means it broke that promise."""

    def __init__(self, fd):
        self._fd = fd
        # Non-blocking, so that taking in what is there is one read, not a select and a read.
        os.set_blocking(fd, False)
        self._buffer = bytearray()
        self._lines = collections.deque()
        self._closed = False
        self._answering = False
        # in_flight() may be called from threads the model starts, while this one reads.
        self._lock = threading.Lock()

    def _take(self):
        """Takes in what the pipe holds now, without waiting, split into lines. The caller holds
        the lock."""
        try:
            chunk = os.read(self._fd, _READ_BYTES)
        except BlockingIOError:  # nothing there now
            return
        if not chunk:
            self._closed = True
            return
        # Only the new bytes can hold a newline: a long line is not scanned again per chunk.
        searched = len(self._buffer)
        self._buffer += chunk
        start = 0
        while True:
            end = self._buffer.find(b"\n", searched if start == 0 else start)
            if end < 0:
                break
            line = bytes(self._buffer[start:end])
            if line.strip():
                self._lines.append(line)
            start = end + 1
        del self._buffer[:start]

    def __iter__(self):
        while True:
            with self._lock:
                if self._lines:
                    line = self._lines.popleft()
                    self._answering = True
                elif self._closed:
                    return  # the agent closed the pipe: time to exit
                else:
                    line = None
            if line is not None:
                yield line
                continue
            # Waiting for the next request without the lock: a thread of the model's may ask
            # requests_in_flight() meanwhile, and gets its answer at once.
            select.select([self._fd], [], [])
            with self._lock:
                # Looked at again under the lock: such a thread may have taken it in already.
                self._take()

    def answered(self):
        with self._lock:
            self._answering = False

    def in_flight(self):
        with self._lock:
            if not self._closed:
                self._take()
            return (1 if self._answering else 0) + len(self._lines)


#: How much of the pipe one read takes: a request is a line, usually far smaller.
_READ_BYTES = 1 << 16


def _answer(request_id, response, prediction):
    """`{"id":N,"ok":true,"metrics":{...},"response":...}`: `metrics` when the function was
    decorated or tracked anything, and only if it fits MAX_METRICS_BYTES."""
    response_text = _encode(response)  # first: a response that is not JSON fails the call
    text = f'{{"id":{_encode(request_id)},"ok":true'
    metrics = prediction.metrics_json()
    if metrics is not None:
        if len(metrics) > _metrics.MAX_METRICS_BYTES:  # ASCII: its length is its size
            print(
                f"modelship: dropped the metrics of prediction {prediction.uuid}: {len(metrics)} "
                f"bytes encoded, more than the {_metrics.MAX_METRICS_BYTES} (64 KiB) an answer "
                "carries; the answer goes without them",
                file=sys.stderr,
                flush=True,
            )
        else:
            text += f',"metrics":{metrics}'
    return f'{text},"response":{response_text}}}'


#: The id at the head of a request line (bytes, as read).
_ID = re.compile(rb'\{"id":(\d+)')


def _write_all(fd, data):
    """Writes all of `data` to the pipe, as a loop of os.write (which may write part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(function, request_fd, answers, with_traceback=False):
    """Answers each request line with one answer line, until the requests pipe closes. Answers
    go straight to the file descriptor under `answers`: a write through its text layer and a
    flush cost more than the answer's one syscall."""
    answers.flush()
    answer_fd = answers.fileno()
    reader = _runtime.reader = _RequestReader(request_fd)
    for line in reader:
        # The agent writes the id first: it is known even when the request cannot be decoded
        # (an integer of more digits than Python converts, say).
        found = _ID.match(line)
        request_id = int(found.group(1)) if found else None
        try:
            message = _decode(line)
            prediction_uuid = message.get("uuid")
            # What the function tracks goes to this prediction, whichever thread tracks it.
            prediction = _metrics.Prediction(
                prediction_uuid if isinstance(prediction_uuid, str) else None, make_uuid=False
            )
            _runtime.current = prediction
            try:
                response = function(message.get("request"))
            finally:
                _runtime.current = None
            text = _answer(request_id, response, prediction)
        except Exception as exc:  # the user's function raised, or returned something not JSON
            text = _encode({"id": request_id, "ok": False, "error": _error(exc, with_traceback)})
            # The traceback goes to the replica's log too (CDSW's Monitoring pane shows it);
            # the caller gets the type and message only.
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            sys.stderr.flush()
        # Counted before it is sent: the agent may send the next request as soon as it reads this.
        reader.answered()
        _write_all(answer_fd, (text + "\n").encode())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="modelship.worker")
    parser.add_argument("--file", required=True)
    parser.add_argument("--function", required=True)
    parser.add_argument("--request-fd", type=int, default=int(os.environ.get("MODELSHIP_REQUEST_FD", "3")))
    parser.add_argument("--answer-fd", type=int, default=int(os.environ.get("MODELSHIP_ANSWER_FD", "4")))
    args = parser.parse_args(argv)
    with_traceback = os.environ.get("MODELSHIP_TRACEBACKS") == "1"

    # Prints reach the agent's log at once, not when a pipe buffer fills.
    sys.stdout.reconfigure(line_buffering=True)
    answers = os.fdopen(args.answer_fd, "w", encoding="utf-8")

    try:
        function = load_function(args.file, args.function)
    except BaseException as exc:  # a SyntaxError or a sys.exit() in the user's file, too
        answers.write(_encode({"type": "load_error", "error": _error(exc, with_traceback)}) + "\n")
        answers.flush()
        return EXIT_LOAD_ERROR
    answers.write(_encode({"type": "ready", "protocol": PROTOCOL_VERSION, "runtime": "python3"}) + "\n")
    answers.flush()
    serve(function, args.request_fd, answers, with_traceback)
    return 0


if __name__ == "__main__":
    sys.exit(main())
