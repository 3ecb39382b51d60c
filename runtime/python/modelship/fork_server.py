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

A file whose import leaves threads running cannot be forked: a child would have none of them
(fork copies only the thread that forks), and what waits on them would wait for ever. The parent
then refuses every launcher, saying why, and each loads the file itself, as without a parent.

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
import threading

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


def _child(function, failure, fds, message, with_traceback, parent_fds, parent_pid):
    """In the forked child: becomes the replica's worker on the launcher's fds. Never returns."""
    try:
        os.setsid()  # a process group of its own: the agent's stop and kill reach all it starts
        _die_with_parent()
        # The parent may have ended before prctl took effect: then nothing would end this one.
        if os.getppid() != parent_pid:
            os._exit(70)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Out of the way first: a handed fd may have any number, 3 or 4 included.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        for target, fd in zip((1, 2, REQUEST_FD, ANSWER_FD), high):
            os.dup2(fd, target)
        # Nothing of the parent's own (what the model's import opened stays open, as in a
        # worker started afresh).
        for fd in (set(parent_fds) | set(fds) | set(high)) - {1, 2, REQUEST_FD, ANSWER_FD}:
            try:
                os.close(fd)
            except OSError:
                pass
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


def _unforkable_reason():
    """Why the loaded file cannot be forked, or None: the Python threads its import left running
    (a fork would copy none of them). Threads of native libraries are not seen here: OpenBLAS,
    which numpy loads, makes its own again in a forked child; one that does not (GCC's OpenMP
    runtime once used, CUDA) may not work in the workers (docs/workers.md)."""
    names = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
    if not names:
        return None
    return (
        f"the model's import left {len(names)} thread(s) running ({', '.join(names[:5])}), which a "
        "forked worker would not have"
    )


def _reserve_protocol_fds():
    """Puts /dev/null on fds 3 and 4 while the file loads, so that what the import opens gets
    other numbers, as in a worker started afresh (whose 3 and 4 are its pipes)."""
    for fd in (REQUEST_FD, ANSWER_FD):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _read_request(connection):
    """The launcher's fds and its message: one byte carries the fds, then a line of JSON of any
    length. Returns (fds, message); fds is empty when the launcher sent none or went away."""
    fds = []
    try:
        _, fds, _, _ = socket.recv_fds(connection, 1, _HANDED_FDS)
        if len(fds) != _HANDED_FDS:
            raise ValueError("no fds")
        connection.settimeout(10)  # it writes the rest at once; a stalled one is dropped
        data = b""
        while not data.endswith(b"\n"):
            chunk = connection.recv(1 << 16)
            if not chunk:
                raise ValueError("the launcher went away")
            data += chunk
        connection.settimeout(None)
        return fds, json.loads(data.decode())
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        return [], {}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="modelship.fork_server")
    parser.add_argument("--file", required=True)
    parser.add_argument("--function", required=True)
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    with_traceback = os.environ.get("MODELSHIP_TRACEBACKS") == "1"

    _reserve_protocol_fds()
    function, failure = None, None
    try:
        function = worker.load_function(args.file, args.function)
    except BaseException as exc:  # reported by every child, as a worker started afresh would
        failure = worker._encode({"type": "load_error", "error": worker._error(exc, with_traceback)})

    unforkable = _unforkable_reason() if failure is None else None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    os.chmod(args.socket, 0o600)
    listener.listen(64)
    # SIGCHLD wakes the loop through a pipe, so that children are reaped as they end.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children = {}  # pid -> the launcher's connection
    by_connection = {}  # connection -> pid

    def stop(signum, _frame):
        # The workers' own process groups go too: PR_SET_PDEATHSIG reaches a child, not what
        # it started.
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    # What the file loaded stays out of the collector's way: a collection in a child would touch
    # (and so copy) every page of it.
    gc.freeze()
    print(json.dumps({"type": "listening", "loaded": failure is None}), flush=True)

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    selector.register(wake_read, selectors.EVENT_READ, "wake")

    def own_fds():
        """What a child must not keep: the listener, the wake pipe, the selector, every
        launcher's connection (a launcher must see its end close when the parent goes)."""
        fds = [listener.fileno(), wake_read, wake_write, selector.fileno()]
        return fds + [connection.fileno() for connection in by_connection] + [
            key.fileobj.fileno() for key in selector.get_map().values() if key.data == "launcher"
        ]

    def reap():
        for pid in list(children):
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                reaped, status = pid, 0
            if reaped == 0:
                continue
            # What the worker left in its process group (a daemon it forked) goes too.
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            connection = children.pop(pid)
            if by_connection.pop(connection, None) is not None:
                _send(connection, {"exited": _status_of(status)})
            _forget(selector, connection)

    def serve_launcher(connection):
        pid = by_connection.get(connection)
        if pid is not None:
            # The launcher has nothing more to say: its end closed (or was reset), so it is gone.
            try:
                gone = not connection.recv(1)
            except OSError:
                gone = True
            if gone:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                # Reaped later, like any child; nothing is sent to a launcher gone.
                by_connection.pop(connection, None)
                try:
                    selector.unregister(connection)
                except (KeyError, ValueError):
                    pass
            return
        fds, message = _read_request(connection)
        if not fds:
            _forget(selector, connection)
            return
        if unforkable is not None:
            # The launcher still holds its own fds: it becomes the worker on them.
            for fd in fds:
                os.close(fd)
            _send(connection, {"refused": unforkable})
            _forget(selector, connection)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        closing = own_fds()
        parent_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            for fd in fds:
                os.close(fd)
            _forget(selector, connection)  # the launcher becomes a worker itself
            return
        if pid == 0:
            _child(function, failure, fds, message, with_traceback, closing, parent_pid)
        for fd in fds:
            os.close(fd)
        children[pid] = connection
        by_connection[connection] = pid
        _send(connection, {"pid": pid})

    while True:
        for key, _ in selector.select():
            # Nothing that goes wrong with one launcher may end the parent: its children die
            # with it.
            try:
                if key.data == "listener":
                    connection, _ = listener.accept()
                    selector.register(connection, selectors.EVENT_READ, "launcher")
                elif key.data == "wake":
                    os.read(wake_read, 4096)
                    reap()
                else:
                    serve_launcher(key.fileobj)
            except OSError:
                continue


if __name__ == "__main__":
    sys.exit(main())
