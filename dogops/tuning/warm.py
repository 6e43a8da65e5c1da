"""Warm trials: a worker that has already imported ``train`` forks each trial, instead of a fresh interpreter.

A fresh ``train`` process spends about 3 s starting Python and importing torch, which with the feature
cache is most of a trial. The warm worker (``python -P -m dogops.tuning.warm``) imports the script's
entry point once (torch and the training modules) and, before each trial, runs its preload hook
(``training.train.warm``: the job's cached features read into memory); then it forks. The child becomes the
process a cold start would have been: its own session, the trial's argv, environment and working
directory, the tuner's stdin, stdout and stderr into the pipe the tuner reads; it runs the entry point as
the console script does and exits with its status. So what the SageMaker contract fixes (job directory,
hyperparameters file, ``SM_*``/``SAGEMAKER_*`` variables, the log, the exit status) is the same either way.

Fork safety, as in multiprocessing's forkserver: the worker keeps to one Python thread and runs no torch
computation before forking. GNU OpenMP's thread pool does not survive ``fork`` (the child hangs at its
first parallel op), so the worker refuses to fork once it has more threads than right after its imports
(the tuner then starts that trial cold), and each child applies ``OMP_NUM_THREADS`` through
``torch.set_num_threads`` (OpenMP read the variable when the worker loaded torch).

Protocol (Unix ``SOCK_SEQPACKET`` sockets: Linux): each request is one JSON message on the control
socket, with one end of a new per-trial socket, the stdin and the output pipe passed as file descriptors.
On the trial socket the worker answers the child's pid, delivers the signals the tuner sends while the
child is unreaped (so never to a reused pid), and finally sends its exit status. When the tuner closes a
trial socket early the child gets SIGTERM; when it closes the control socket (or dies) all children do, and
the worker exits once they have ended.
"""

import functools
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 20  # a request carries an environment: a few KiB


class WarmUnavailable(RuntimeError):
    """The warm worker cannot start this trial (not started, gone, or no longer safe to fork)."""


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def _send(sock: socket.socket, message: dict) -> None:
    sock.send(json.dumps(message).encode())


def _receive(sock: socket.socket) -> dict | None:
    """The next message, or None when the other end has closed."""
    data = sock.recv(MAX_MESSAGE)
    return json.loads(data) if data else None


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _resolve(spec: str) -> Callable:
    """``"package.module:function"`` -> the function (importing its module)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class WarmProcess:
    """A trial forked by the warm worker, with the part of ``subprocess.Popen`` a trial's runner uses."""

    def __init__(self, channel: socket.socket, stdout, pid: int, argv: list[str]):
        self._channel = channel
        self.stdout = stdout
        self.pid = pid
        self.args = argv
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        """Signal the trial, unless it has already ended."""
        if self.returncode is None:
            try:
                _send(self._channel, {"signal": int(sig)})
            except OSError:  # ended meanwhile (the channel is closed), or the worker is gone
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        """The exit status as ``Popen.returncode`` has it: the code, or minus the signal that ended it."""
        if self.returncode is None:
            self._channel.settimeout(timeout)
            try:
                reply = _receive(self._channel)
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
            if reply is None:
                log.error("the warm worker exited while trial process %d ran: its exit status is unknown", self.pid)
            self.returncode = reply["returncode"] if reply else 1
            self._channel.close()
        return self.returncode

    def __enter__(self) -> "WarmProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stdout.close()
        self.wait()


class ForkServer:
    """A warm worker that runs ``script`` as ``entry`` (``"module:function"``) in forked children.

    ``preload`` (``"module:function"``, called with a trial's environment) runs in the worker once it has
    imported ``entry`` and again before each fork; ``env`` is the worker's own environment.
    """

    def __init__(self, script: Path, entry: str, preload: str = "", env: dict[str, str] | None = None):
        self.script = str(script)
        self._lock = threading.Lock()
        self._ready = False
        self._unavailable = ""
        self._control, theirs = _pair()
        with theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", __name__, str(theirs.fileno()), entry, preload],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                start_new_session=True)

    @property
    def pid(self) -> int:
        """The worker's process id (each trial's parent)."""
        return self._proc.pid

    def serves(self, argv: list[str]) -> bool:
        """Whether ``argv`` runs this worker's script (its arguments go to the entry point as ``sys.argv``)."""
        return argv[:1] == [self.script]

    def _fail(self, reason: str) -> WarmUnavailable:
        if not self._unavailable:
            self._unavailable = reason
            log.warning("warm trials unavailable (%s): trials start as fresh processes", reason)
        return WarmUnavailable(self._unavailable)

    def start(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> WarmProcess:
        """Fork the worker into a process running ``argv`` with exactly ``env``, in ``cwd`` (default: ours)."""
        request = {"argv": argv, "env": env, "cwd": str(cwd or os.getcwd())}
        channel, theirs = _pair()
        read, write = os.pipe()
        stdin = _stdin()
        try:
            with self._lock:
                if self._unavailable:
                    raise WarmUnavailable(self._unavailable)
                if not self._ready:
                    if _receive(self._control) is None:  # the worker failed while importing
                        raise self._fail(f"the worker exited with code {self._proc.wait()} while starting")
                    self._ready = True
                try:
                    socket.send_fds(self._control, [json.dumps(request).encode()],
                                    [theirs.fileno(), stdin, write])
                except OSError as exc:
                    raise self._fail(f"the worker is gone: {exc}") from None
            reply = _receive(channel)
            if reply is None or "error" in reply:
                raise self._fail(reply["error"] if reply else "the worker exited")
        except BaseException:
            os.close(read)
            channel.close()
            raise
        finally:
            theirs.close()
            os.close(write)
            os.close(stdin)
        return WarmProcess(channel, open(read), reply["pid"], argv)

    def close(self) -> None:
        """Stop the worker: trials still running get SIGTERM, and it exits when they have ended."""
        self._control.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _stdin() -> int:
    """A copy of our stdin for the child, as a cold start inherits it (/dev/null when ours is closed)."""
    try:
        return os.dup(0)
    except OSError:
        return os.open(os.devnull, os.O_RDONLY)


def _exit_status(main: Callable) -> int:
    """Run a console script's entry point as ``sys.exit(main())`` would end the interpreter."""
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        return 1
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _child(request: dict, fds: list[int], main: Callable, forget: Callable[[], None]) -> None:
    """In the forked child: become the trial's process, run ``main``, and exit with its status."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        forget()
        _, stdin, out = fds
        for fd, target in ((stdin, 0), (out, 1), (out, 2)):
            os.dup2(fd, target)
        for fd in {stdin, out} - {0, 1, 2}:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as Python does for a script
        if "torch" in sys.modules and os.environ.get("OMP_NUM_THREADS"):
            sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        code = _exit_status(main)
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - exiting regardless
                pass
        os._exit(code)


def serve(control: socket.socket, entry: str, preload: str) -> None:
    """The worker's loop: fork a child per request, relay signals, report exit statuses."""
    main = _resolve(entry)
    baseline = _threads()  # torch's imported; OpenMP has started no threads yet
    warm = _resolve(preload) if preload else (lambda env: None)
    warm(dict(os.environ))
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so SIGCHLD reaches the wake-up fd
    wake = os.fdopen(wake_read, "rb", buffering=0)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake, selectors.EVENT_READ)
    children: dict[int, socket.socket | None] = {}  # pid -> its trial socket (None once the tuner let go)

    def forget(channel: socket.socket) -> None:
        """In a child: close the worker's selector, sockets and wake-up pipe."""
        for thing in (selector, control, wake, channel, *filter(None, children.values())):
            thing.close()
        os.close(wake_write)

    _send(control, {"ready": True})
    while control.fileno() >= 0 or children:
        for key, _ in selector.select():
            if key.fileobj is control:
                message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 3)
                if not message:  # the tuner closed us: stop the trials, report how they end, exit
                    selector.unregister(control)
                    control.close()
                    for pid in children:
                        os.kill(pid, signal.SIGTERM)
                    continue
                channel = socket.socket(fileno=fds[0])
                try:
                    request = json.loads(message)
                    warm(request["env"])
                    if _threads() > baseline:
                        raise WarmUnavailable(f"the worker runs {_threads()} threads, {baseline} after its imports: "
                                              f"forking it is unsafe (did it run torch computation?)")
                    for stream in (sys.stdout, sys.stderr):
                        stream.flush()
                    pid = os.fork()
                    if pid == 0:
                        _child(request, fds, main, functools.partial(forget, channel))
                except Exception as exc:  # noqa: BLE001 - the tuner starts this trial cold and says why
                    _send(channel, {"error": f"{type(exc).__name__}: {exc}"})
                    channel.close()
                    continue
                finally:
                    for fd in fds[1:]:
                        os.close(fd)
                children[pid] = channel
                selector.register(channel, selectors.EVENT_READ, pid)
                _send(channel, {"pid": pid})
            elif key.fileobj is wake:
                wake.read(4096)
                _reap(children, selector)
            else:
                _relay(key.data, key.fileobj, children, selector)


def _reap(children: dict[int, socket.socket | None], selector: selectors.BaseSelector) -> None:
    """Report every child that has ended to its trial socket."""
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        channel = children.pop(pid, None)
        if channel is not None:
            selector.unregister(channel)
            try:
                _send(channel, {"returncode": os.waitstatus_to_exitcode(status)})
            except OSError:  # the tuner has let go of it meanwhile
                pass
            channel.close()


def _relay(pid: int, channel: socket.socket, children: dict[int, socket.socket | None],
           selector: selectors.BaseSelector) -> None:
    """A message on a trial socket: a signal for its (still unreaped) child, or the tuner letting go."""
    if children.get(pid) is not channel:  # reaped (and its socket closed) earlier in this round
        return
    try:
        message = _receive(channel)
    except OSError:
        message = None
    if message is None:
        selector.unregister(channel)
        channel.close()
        children[pid] = None
        os.kill(pid, signal.SIGTERM)
        return
    os.kill(pid, message["signal"])


def main() -> None:
    control_fd, entry, preload = sys.argv[1:4]
    serve(socket.socket(fileno=int(control_fd)), entry, preload)


if __name__ == "__main__":
    main()
