"""The preloaded parent of a model's Python replicas (docs/workers.md): it loads the user's file
once, then forks a worker for each replica that asks, so that N replicas of one model share one
copy of what the file loaded (copy-on-write, as gunicorn's preload does).

    python3 -m modelship.fork_server --file predict.py --function predict --socket PATH

A replica's worker process is a small launcher (`launch_worker.py`) that the agent starts as it
would start a worker; it connects to PATH and hands over its stdout, stderr and protocol pipes
(fds 1-4) with the environment it was given. The parent forks a child that takes those fds as
its own and serves the protocol exactly as a worker started afresh does: `ready` (or the load
error, the same for every child: the file was loaded once), then answers. The parent tells the
launcher the child's pid and, when it ends, how; a launcher that goes away (killed with its
process group) takes its child with it, and so does the parent: a child dies with it.

The parent prints one line on stdout once it listens: {"type": "listening", "loaded": true}.
"""

import argparse
import ctypes
import fcntl
import gc
import json
import os
import resource
import selectors
import signal
import socket
import sys

from modelship import PROTOCOL_VERSION, worker

#: The fds a launcher hands over, in this order: stdout, stderr, requests, answers.
_HANDED_FDS = 4
#: Where the worker protocol expects its pipes (docs/workers.md).
REQUEST_FD, ANSWER_FD = 3, 4
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Linux: the child gets SIGKILL when the parent ends, however it ends."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _child(function, failure, fds, message, with_traceback):
    """In the forked child: becomes the replica's worker on the launcher's fds. Never returns."""
    try:
        os.setsid()  # a process group of its own: the agent's stop and kill reach all it starts
        _die_with_parent()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Out of the way first: a handed fd may have any number, 3 or 4 included.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        for target, fd in zip((1, 2, REQUEST_FD, ANSWER_FD), high):
            os.dup2(fd, target)
        # Nothing else of the parent's: its listener, the other launchers' connections (a
        # launcher must see its end close when the parent goes), the wake pipe.
        os.closerange(ANSWER_FD + 1, os.sysconf("SC_OPEN_MAX"))
        os.environ.clear()
        os.environ.update(message.get("env") or {})
        limit = message.get("memoryLimitBytes")
        if limit:
            resource.setrlimit(resource.RLIMIT_DATA, (int(limit), int(limit)))
        sys.stdout.reconfigure(line_buffering=True)
        answers = os.fdopen(ANSWER_FD, "w", encoding="utf-8")
        if failure is not None:
            answers.write(failure + "\n")
            answers.flush()
            os._exit(worker.EXIT_LOAD_ERROR)
        answers.write(
            worker._encode({"type": "ready", "protocol": PROTOCOL_VERSION, "runtime": "python3"}) + "\n"
        )
        answers.flush()
        worker.serve(function, REQUEST_FD, answers, with_traceback)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    except BaseException:  # nothing of the parent's loop may run in a child
        try:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(70)


def _status_of(status):
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"code": os.waitstatus_to_exitcode(status)}


def _send(connection, message):
    try:
        connection.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the launcher is gone; its child is killed when its end is seen


def _forget(selector, connection):
    """Stops watching a launcher's connection (if it still is) and closes it."""
    try:
        selector.unregister(connection)
    except (KeyError, ValueError):
        pass
    connection.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="modelship.fork_server")
    parser.add_argument("--file", required=True)
    parser.add_argument("--function", required=True)
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    with_traceback = os.environ.get("MODELSHIP_TRACEBACKS") == "1"

    function, failure = None, None
    try:
        function = worker.load_function(args.file, args.function)
    except BaseException as exc:  # reported by every child, as a worker started afresh would
        failure = worker._encode({"type": "load_error", "error": worker._error(exc, with_traceback)})

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    os.chmod(args.socket, 0o600)
    listener.listen(64)
    # SIGCHLD wakes the loop through a pipe, so that children are reaped as they end.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # What the file loaded stays out of the collector's way: a collection in a child would touch
    # (and so copy) every page of it.
    gc.freeze()
    print(json.dumps({"type": "listening", "loaded": failure is None}), flush=True)

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    selector.register(wake_read, selectors.EVENT_READ, "wake")
    children = {}  # pid -> the launcher's connection
    by_connection = {}  # connection -> pid
    while True:
        for key, _ in selector.select():
            if key.data == "listener":
                connection, _ = listener.accept()
                selector.register(connection, selectors.EVENT_READ, "launcher")
            elif key.data == "wake":
                os.read(wake_read, 4096)
                while children:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    # What the worker left in its process group (a daemon it forked) goes too,
                    # as the agent's reaping of a worker started afresh does.
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    connection = children.pop(pid, None)
                    if connection is not None:
                        by_connection.pop(connection, None)
                        _send(connection, {"exited": _status_of(status)})
                        _forget(selector, connection)
            else:
                connection = key.fileobj
                pid = by_connection.get(connection)
                if pid is not None:
                    # The launcher has nothing more to say: its end closed, so it is gone.
                    if not connection.recv(1):
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except OSError:
                            pass
                        # Reaped later, like any child; nothing is sent to a launcher gone.
                        selector.unregister(connection)
                    continue
                try:
                    data, fds, _, _ = socket.recv_fds(connection, 1 << 20, _HANDED_FDS)
                    message = json.loads(data.decode() or "{}")
                except (OSError, ValueError):
                    data, fds, message = b"", [], {}
                if len(fds) != _HANDED_FDS:
                    for fd in fds:
                        os.close(fd)
                    _forget(selector, connection)
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(function, failure, fds, message, with_traceback)
                for fd in fds:
                    os.close(fd)
                children[pid] = connection
                by_connection[connection] = pid
                _send(connection, {"pid": pid})


if __name__ == "__main__":
    sys.exit(main())
