"""HTTP to modelship's gateway, for the metrics SDK and call_model: the standard library only."""

import json
import os
import urllib.error
import urllib.request

#: The gateway of `modelship up`.
DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds a request may take before it fails.
TIMEOUT_SECONDS = 60


class MetricsError(Exception):
    """A metrics endpoint (or the gateway itself) refused or could not be reached.

    ``status`` is the HTTP status (None when no answer came), ``code`` the server's error code
    (``metrics.*``, ``auth.*``; None when the answer had none), ``server_message`` its message.
    """

    def __init__(self, message, status=None, code=None, server_message=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.server_message = server_message


def base_url():
    """MODELSHIP_URL, without a trailing slash; the local gateway's by default."""
    return (os.environ.get("MODELSHIP_URL") or DEFAULT_URL).rstrip("/")


def api_key(explicit=None):
    """The model API key: the one given, else MODELSHIP_API_KEY, else none."""
    return explicit or os.environ.get("MODELSHIP_API_KEY") or None


def send(method, path, body=None, key=None):
    """Sends one request; returns (status, the answer parsed as JSON or None, its text).

    Raises MetricsError only when no answer came at all.
    """
    url = base_url() + path
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = body.encode("utf-8")
        headers["Content-Type"] = "application/json"
    key = api_key(key)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:  # a 4xx or 5xx: still an answer, with a body
        status, raw = error.code, error.read()
        error.close()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise MetricsError(
            f"cannot reach modelship at {base_url()} ({method} {path}): {reason}; "
            "MODELSHIP_URL says where its gateway is"
        ) from error
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return status, parsed, text


def request(method, path, body=None, key=None):
    """Sends one request to a metrics endpoint; returns its JSON answer, or raises MetricsError
    with the server's code and message when it answers an error."""
    status, parsed, text = send(method, path, body, key)
    if 200 <= status < 300 and isinstance(parsed, dict):
        return parsed
    where = f"HTTP {status} from {method} {base_url()}{path}"
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        code, message = parsed["error"], str(parsed.get("message", ""))
        raise MetricsError(f"{code}: {message} ({where})", status, code, message)
    snippet = text if len(text) <= 200 else text[:200] + "..."
    raise MetricsError(f"{where}, not a modelship answer: {snippet!r}", status)
