"""``dogops up``, ``down``, ``status``, ``env`` and ``invoke``: the local stack from the command line.

``up`` starts ``python -m services.stack.supervisor`` detached (or in the foreground),
which runs the stack as host processes; ``down`` stops it by its PID. ``env``,
``status`` and ``invoke`` work the same for ``docker compose up``, which
publishes the same ports.
"""

import base64
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from services.stack import settings
from services.stack.supervisor import (
    Layout,
    healthy,
    kill_group,
    live_in_groups,
    pid_alive,
    same_process,
    service_urls,
    start_time,
)

from . import sdk_config
from .commands import ExitWith, json_flag

UP_TIMEOUT = 900.0  # seconds; a cold start trains a model
KILL_WAIT = 10.0  # seconds ``down`` waits for killed processes to be gone


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _running_supervisor(layout: Layout) -> dict | None:
    """The state of a native stack whose supervisor is alive (the process it recorded, not a later one given its
    pid), else None."""
    state = layout.read_state()
    if not state:
        return None
    pid = state.get("supervisor")
    started = state.get("start_times", {}).get(str(pid))
    return state if (same_process(pid, started) if started is not None else pid_alive(pid)) else None


def _stop_supervisor(state: dict, timeout: float) -> list[int]:
    """SIGTERM the supervisor and wait; SIGKILL it and whatever children it left if it does not exit in time; then
    wait (``KILL_WAIT`` more at most) until no process of theirs is left. Returns those still alive.

    A pid is signalled only while its process has the start time ``state["start_times"]`` records (a pid reused
    by another process is left alone, and said so); without that key (``up`` stopping the supervisor it has just
    started) the start times now stand in."""
    pids = [state["supervisor"], *state.get("children", {}).values()]
    recorded = state["start_times"] if "start_times" in state else {str(pid): start_time(pid) for pid in pids}

    def ours(pid: int) -> bool:
        return same_process(pid, recorded.get(str(pid)))

    groups = {pid for pid in pids if ours(pid)}  # each leads its process group (a server's workers are in it)
    for pid in pids:
        if pid_alive(pid) and not ours(pid):
            print(f"pid {pid} is not the process state.json recorded (another start time: the pid was reused); "
                  "not signalling it")
    pid = state["supervisor"]
    if ours(pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while ours(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if ours(pid):
        print(f"the supervisor (pid {pid}) did not stop within {timeout:g} s; killing it and its children")
        os.kill(pid, signal.SIGKILL)
    for child in state.get("children", {}).values():
        if ours(child) and os.getpgid(child) == child:  # still the group leader the supervisor started
            kill_group(child, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT
    while (left := live_in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _preflight(layout: Layout) -> None:
    running = _running_supervisor(layout)
    if running:
        raise SystemExit(f"a native stack is already running (supervisor pid {running['supervisor']}, phase "
                         f"{running['phase']}); `dogops down` stops it")
    ports = {"emulator": settings.EMULATOR_PORT, "serving": settings.SERVING_PORT, "gateway": settings.GATEWAY_PORT}
    taken = [f"{port} ({name})" for name, port in ports.items() if _port_in_use(port)]
    if taken:
        raise SystemExit(f"port {', '.join(taken)} on 127.0.0.1 is in use (a compose stack? `docker compose down`); "
                         f"set DOGOPS_EMULATOR_PORT / DOGOPS_SERVING_PORT / DOGOPS_GATEWAY_PORT to use others")


def _wait_ready(layout: Layout, proc: subprocess.Popen, started: float, timeout: float) -> dict:
    """Follow ``state.json`` until the stack is ready; print each phase with the seconds since ``up`` began."""
    seen = None
    while True:
        state = layout.read_state()
        if state and state.get("supervisor") == proc.pid:
            if state["phase"] != seen:
                seen = state["phase"]
                print(f"[{time.monotonic() - started:6.1f}s] {seen}", flush=True)
            if seen == "ready":
                return state
            if seen in ("stopping", "stopped"):
                raise SystemExit("the stack was stopped (dogops down?) before it was ready")
            if seen == "failed":
                proc.wait(60)  # the supervisor stops what it started, freeing the ports
                raise SystemExit(f"the stack failed to start: {state.get('error')}\nlogs: {layout.logs}")
        if proc.poll() is not None:
            raise SystemExit(f"the supervisor exited with code {proc.returncode}; see "
                             f"{layout.logs / 'supervisor.log'}")
        if time.monotonic() - started > timeout:
            _stop_supervisor({"supervisor": proc.pid, **(state or {})}, 30)
            raise SystemExit(f"the stack was not ready within {timeout:g} s (stopped it); logs: {layout.logs}")
        time.sleep(0.3)


def _own_secret() -> None:
    """Take the secret from the state directory, not from a ``DOGOPS_ROOT_SECRET`` an older shell's
    ``eval "$(dogops env)"`` kept (it would outlive a new stack's secret)."""
    os.environ.pop("DOGOPS_ROOT_SECRET", None)


def up(args) -> None:
    _own_secret()
    started = time.monotonic()
    layout = Layout()
    _preflight(layout)
    argv = [sys.executable, "-m", "services.stack.supervisor", "--state-dir", str(layout.root)]
    argv += ["--data", str(args.data.absolute())] if args.data else []
    argv += ["--retrain"] if args.retrain else []
    argv += ["--fresh"] if args.fresh else []
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.state.unlink(missing_ok=True)
    if args.foreground:
        os.execv(sys.executable, argv)
    with open(layout.logs / "supervisor.log", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    print(f"starting the native stack (supervisor pid {proc.pid}; logs in {layout.logs})", flush=True)
    try:
        _wait_ready(layout, proc, started, args.timeout)
    except KeyboardInterrupt:
        print("interrupted: stopping the stack")
        _stop_supervisor({"supervisor": proc.pid, **(layout.read_state() or {})}, 30)
        raise SystemExit(130) from None
    print(f"cold start: ready in {time.monotonic() - started:.1f} s")
    print(f"demo page: {settings.gateway_url()}/")
    print('point boto3 and the AWS CLI at it: eval "$(dogops env)"; try: dogops invoke --url '
          f"{settings.gateway_url()}/samples/dog.jpg")


def down(args) -> None:
    layout = Layout()
    state = layout.read_state()
    if not state or not (pid_alive(state.get("supervisor")) or any(map(pid_alive, state.get("children", {}).values()))):
        print(f"no native stack is running (state: {layout.state})")
        return
    print(f"stopping the native stack (supervisor pid {state['supervisor']})", flush=True)
    started = time.monotonic()
    left = _stop_supervisor({"start_times": {}, **state}, args.timeout)  # an older supervisor's: nothing verified
    waited = time.monotonic() - started
    if left:
        raise SystemExit(f"still stopping after {waited:.1f} s: pids {', '.join(map(str, left))} are alive")
    print(f"stopped in {waited:.1f} s")


def status(args) -> dict:
    """Each service's pid and health, printed; returned as ``status --json`` prints it; exit 1 if any is unhealthy."""
    if args.enforce_ttl and not args.aws:
        raise SystemExit("--enforce-ttl deletes what has expired on AWS: it needs --aws (and a confirmation, or --yes)")
    if args.aws:
        return aws_status(args)
    layout = Layout()
    state = _running_supervisor(layout)
    if state:
        print(f"native stack: supervisor pid {state['supervisor']}, phase {state['phase']}"
              + (f", error: {state['error']}" if state.get("error") else ""))
    else:
        print("no native stack running here; checking the ports (a compose stack publishes the same)")
    pids = state["children"] if state else {}
    restarts = state.get("restarts", {}) if state else {}
    services = []
    for name, url in service_urls().items():
        good = healthy(url)
        services.append({"name": name, "pid": pids.get(name), "url": url, "healthy": good,
                         "restarts": restarts.get(name, 0)})
        note = f"  (restarted {restarts[name]}x)" if restarts.get(name) else ""
        print(f"  {name:<9} pid {pids.get(name, '-')!s:<8} {url:<44} {'healthy' if good else 'UNHEALTHY'}{note}")
    ok = all(service["healthy"] for service in services)
    mismatches = lambda_mismatches()
    for found in mismatches:
        print(f"  lambda {found['function']}: configured for {found['runtime']}; the stack has no {found['runtime']} "
              f"with the Lambda runtime client, so {found['runs_on']} runs it")
    native = {"supervisor": state["supervisor"], "phase": state["phase"], "error": state.get("error")} if state else None
    document = {"native_stack": native, "services": services, "healthy": ok,
                "demo_page": f"{settings.gateway_url()}/", "lambda_runtime_mismatches": mismatches}
    if not ok:
        raise ExitWith(1, document)
    print(f"demo page: {document['demo_page']}")
    return document


def lambda_mismatches() -> list[dict]:
    """The gateway's functions that ran on another Python than their configured runtime ([] when it cannot say)."""
    import urllib.request

    try:
        with urllib.request.urlopen(settings.gateway_url() + "/_dogops/lambda/mismatches", timeout=2) as response:
            return json.load(response)["mismatches"]
    except (OSError, ValueError, KeyError):
        return []


def aws_status(args) -> dict:
    """What runs for the project on AWS, or on the local stack where every endpoint resolves to it, and its cost."""
    from dogops.promote.status import status as promote_status

    return promote_status(args.config, args.enforce_ttl, yes=args.yes)


def env_lines() -> list[str]:
    """``export`` lines that point boto3, the AWS CLI and the SageMaker Python SDK (its configuration file,
    ``sdk_config``) at the local stack (either mode)."""
    gateway = settings.gateway_url()
    values = {**settings.emulator_env(), "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": gateway,
              "AWS_ENDPOINT_URL_LAMBDA": gateway, sdk_config.ENV_VARIABLE: str(settings.sdk_config_path()),
              "DOGOPS_BUCKET": settings.BUCKET,
              "DOGOPS_ENDPOINT_NAME": settings.ENDPOINT_NAME, "DOGOPS_FUNCTION_NAME": settings.FUNCTION_NAME,
              "DOGOPS_SAMPLES_URL": f"{gateway}/samples"}
    return [f"export {key}={shlex.quote(value)}" for key, value in values.items()]


def write_compose_env(folder: Path) -> None:
    """Put the stack's secret in ``folder/.env`` (mode 0600), where ``docker compose`` reads ``DOGOPS_ROOT_SECRET``,
    when ``folder`` holds the compose file; other lines of the file are kept."""
    if not (folder / "compose.yaml").exists():
        return
    path = folder / ".env"
    wanted = f"DOGOPS_ROOT_SECRET={settings.root_secret()}"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if wanted in lines:
        return
    kept = [line for line in lines if not line.startswith("DOGOPS_ROOT_SECRET=")]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join([*kept, wanted]) + "\n")


def env(args) -> None:
    _own_secret()
    write_compose_env(Path.cwd())
    sdk_config.write_sdk_config()
    print("\n".join(env_lines()))


def invoke_function(payload: dict, function: str) -> dict:
    """Invoke the function through boto3 and return its API-Gateway-proxy answer; RuntimeError on a failure.

    The endpoint is the environment's (``AWS_ENDPOINT_URL_LAMBDA`` or ``AWS_ENDPOINT_URL``), else the local gateway
    with the emulator's credentials.
    """
    import boto3
    from botocore.config import Config

    logging.getLogger("botocore").setLevel(logging.WARNING)  # not which credentials and endpoint it found
    config = Config(read_timeout=120, retries={"mode": "standard", "max_attempts": 2})
    if os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or os.environ.get("AWS_ENDPOINT_URL"):
        client = boto3.client("lambda", config=config)
    else:
        client = boto3.client("lambda", endpoint_url=settings.gateway_url(), region_name=settings.REGION,
                              aws_access_key_id=settings.ACCESS_KEY, aws_secret_access_key=settings.root_secret(),
                              config=config)
    response = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    body = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise RuntimeError(f"the function failed ({response['FunctionError']}): {body.get('errorType')}: "
                           f"{body.get('errorMessage')}")
    answer = json.loads(body["body"]) if isinstance(body.get("body"), str) else body.get("body", {})
    if body.get("statusCode") != 200:
        raise RuntimeError(f"the function answered {body.get('statusCode')}: {answer.get('message', answer)}")
    return answer


def invoke(args) -> None:
    from .predict import print_predictions

    if args.url:
        payload = {"url": args.url}
    else:
        payload = {"image": base64.b64encode(args.file.read_bytes()).decode()}
    answer = invoke_function(payload, args.function)
    print(f"{args.function} -> endpoint {answer.get('endpoint', '?')}:")
    print_predictions(answer["predictions"])


def add_commands(commands) -> None:
    """Register the stack's subcommands on ``dogops``'s subparsers."""
    start = commands.add_parser("up", help="start the local stack natively: emulator, training, endpoint, Lambda, "
                                "demo page (no Docker)")
    start.add_argument("--data", type=Path, help="data in the dogImages layout (default: generated)")
    start.add_argument("--retrain", action="store_true", help="train even if the model on disk is current")
    start.add_argument("--fresh", action="store_true", help="start with an empty emulator: forget the buckets, "
                       "models, endpoints, functions and roles kept from earlier runs")
    start.add_argument("--foreground", action="store_true", help="run the supervisor here until Ctrl-C")
    start.add_argument("--timeout", type=float, default=UP_TIMEOUT, help="seconds to wait for the stack")
    start.set_defaults(func=up)

    stop = commands.add_parser("down", help="stop the native stack")
    stop.add_argument("--timeout", type=float, default=60, help="seconds before its processes are killed")
    stop.set_defaults(func=down)

    check = commands.add_parser("status", help="each service's pid and health (exit 1 if any is unhealthy); "
                                "--aws: what runs for the project on AWS and what it costs per hour")
    check.add_argument("--aws", action="store_true", help="list the project's tagged resources and stage stacks "
                       "with expiry and cost per hour (on the local stack where boto3's endpoints resolve to it)")
    check.add_argument("--enforce-ttl", action="store_true", help="with --aws: delete what is past its expires-at "
                       "tag (the stage's stack, or the endpoint alone)")
    check.add_argument("--yes", action="store_true", help="with --aws --enforce-ttl: delete without asking")
    check.add_argument("--config", type=Path, default=Path("promote.yaml"), help="the promote stages (for --aws)")
    json_flag(check)
    check.set_defaults(func=status)
    commands.add_parser("env", help='export lines for the running stack: eval "$(dogops env)" (with the stack\'s '
                        "own secret; beside compose.yaml it also writes it to .env for docker compose)").set_defaults(
        func=env)

    call = commands.add_parser("invoke", help="call the Lambda function (boto3) and print the top-5 breeds")
    what = call.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", help="an http(s) image URL for the endpoint to fetch")
    what.add_argument("--file", type=Path, help="a local image, sent base64-encoded")
    call.add_argument("--function", default=settings.FUNCTION_NAME, help=f"default {settings.FUNCTION_NAME}")
    call.set_defaults(func=invoke)
