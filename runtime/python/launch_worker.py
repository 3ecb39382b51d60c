"""A replica's worker, forked from its model's preloaded parent (modelship/fork_server.py).

The agent starts this as it starts a worker (`python3 -S launch_worker.py --file F --function
FN`, with MODELSHIP_FORK_SERVER naming the parent's socket): it hands its stdout, stderr and
protocol pipes (fds 1-4) and its environment to the parent, which forks a child that serves on
them, then stays as the child's stand-in. The agent's signals reach the child through it (a
SIGTERM is passed on; a SIGKILL of this process makes the parent kill the child), and it exits
as the child did, so the agent sees what it sees of a worker started afresh. Without a parent to
reach, or refused by it (a file it cannot fork), it becomes a worker started afresh itself.
Standard library only, and small: one of these runs per replica.
"""

import json
import os
import signal
import socket
import sys


def _become_worker():
    """No parent to fork from: this process becomes the worker, loading the file itself."""
    os.execv(sys.executable, [sys.executable, "-m", "modelship.worker", *sys.argv[1:]])


def main():
    path = os.environ.pop("MODELSHIP_FORK_SERVER", "")
    limit = os.environ.pop("MODELSHIP_FORK_MEMORY_LIMIT_BYTES", None)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        message = {"env": dict(os.environ), "memoryLimitBytes": int(limit) if limit else None}
        # One byte carries the fds; the message follows as a line, however long it is.
        socket.send_fds(connection, [b"F"], [1, 2, 3, 4])
        connection.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        connection.close()
        _become_worker()
    child = None
    # A signal that comes before the child's pid is passed on as soon as it is known.
    pending = []

    def pass_on(signum, _frame):
        if child is None:
            pending.append(signum)
            return
        try:
            os.killpg(child, signum)
        except OSError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, pass_on)
    received = b""
    while True:
        try:
            chunk = connection.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            if child is None:
                # Refused, or the parent went away before it forked: this becomes the worker,
                # on the pipes it still holds.
                connection.close()
                _become_worker()
            # The parent went away without saying how the child ended (its child dies with it).
            try:
                os.killpg(child, signal.SIGKILL)
            except OSError:
                pass
            print("modelship: the model's preloaded parent went away", file=sys.stderr)
            return 70
        received += chunk
        while b"\n" in received:
            line, received = received.split(b"\n", 1)
            message = json.loads(line)
            if "refused" in message and child is None:
                # The parent cannot fork this file (docs/workers.md): said in the replica's log.
                print(
                    f"modelship: not forked from the preloaded parent: {message['refused']}; "
                    "this worker loads the file itself",
                    file=sys.stderr,
                    flush=True,
                )
                connection.close()
                _become_worker()
            if "pid" in message:
                child = message["pid"]
                # The child has its own copies; ours would keep the agent's pipes open after it.
                os.close(3)
                os.close(4)
                for signum in pending:
                    pass_on(signum, None)
            elif "exited" in message:
                ended = message["exited"]
                if "signal" in ended:
                    # Ends as the child did: by the same signal.
                    try:
                        signal.signal(ended["signal"], signal.SIG_DFL)
                    except (OSError, ValueError):
                        pass  # SIGKILL has no handler to reset
                    os.kill(os.getpid(), ended["signal"])
                return ended.get("code", 1)


if __name__ == "__main__":
    sys.exit(main())
