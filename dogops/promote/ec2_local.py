"""The EC2 training instance on the local stack: its user data run as a host process against the emulator.

What the rehearsal replaces, and nothing else: the AWS endpoint (``AWS_ENDPOINT_URL``), the instance metadata
service (:class:`Imds`, a loopback stand-in that insists on IMDSv2 tokens, serves the instance role's temporary
credentials, assumed on the emulator, so the script runs with the role's permissions only, and can post the spot
``instance-action`` notice), the Docker command (or ``train`` on the host in place of the container, marked so in
the job log), the instance's folder, ``shutdown`` (a no-op: the caller terminates the instance) and ``systemd-run``
(the max-runtime cap: a stand-in records ``--on-boot``; when that time since the script's start (the instance's
boot) has passed, the "instance" powers off: every process of the script is killed, as power-off would, and the
caller terminates the instance).
"""

import json
import os
import secrets
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Imds:
    """IMDSv2 on ``127.0.0.1``: ``PUT /latest/api/token``, then GETs with the token (401 without one)."""

    def __init__(self, instance_id: str = "i-0123456789abcdef0", role: str | None = None, credentials=None):
        self.instance_id, self.role, self.credentials = instance_id, role, credentials
        self.notice: str | None = None
        self.tokens: set[str] = set()
        self.requests: list[str] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                    return self._send(400, "")
                token = secrets.token_hex(16)
                imds.tokens.add(token)
                self._send(200, token)

            def do_GET(self):
                imds.requests.append(self.path)
                if self.headers.get("X-aws-ec2-metadata-token") not in imds.tokens:
                    return self._send(401, "")
                found = imds.answer(self.path.removeprefix("/latest/").rstrip("/"))
                self._send(404, "Not Found") if found is None else self._send(200, found)

            def _send(self, status: int, body: str):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> str | None:
        if path == "meta-data/instance-id":
            return self.instance_id
        if path == "meta-data/spot/instance-action":
            return self.notice
        if self.role and path == "meta-data/iam/security-credentials":
            return self.role
        if self.role and path == f"meta-data/iam/security-credentials/{self.role}":
            return json.dumps(self.credentials())
        return None

    def interrupt(self, seconds: int = 120) -> None:
        """Post the two-minute notice, as EC2 does before reclaiming a spot instance."""
        at = (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.notice = json.dumps({"action": "terminate", "time": at})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def role_credentials(session, role_arn: str, name: str):
    """A callable returning IMDS-shaped temporary credentials of ``role_arn`` (AssumeRole on the emulator)."""

    def fetch() -> dict:
        creds = session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=name)["Credentials"]
        return {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": creds["AccessKeyId"],
                "SecretAccessKey": creds["SecretAccessKey"], "Token": creds["SessionToken"],
                "Expiration": creds["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "LastUpdated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

    return fetch


def instance_env(endpoint: str, imds: Imds, root: Path, docker: str | None = None,
                 train_on_host: str | None = None, sync_s: int = 60) -> dict:
    """The rehearsal's environment: no credentials of the caller (the instance's come from IMDS), the overrides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SM_", "SAGEMAKER_", "DOGOPS_", "TRAINING_JOB"))}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url + "/",
               AWS_SHARED_CREDENTIALS_FILE=str(root / "no-credentials"), AWS_CONFIG_FILE=str(root / "no-config"),
               DOGOPS_IMDS_URL=imds.url, DOGOPS_EC2_ROOT=str(root), DOGOPS_SHUTDOWN="true", DOGOPS_SYNC_S=str(sync_s),
               DOGOPS_SYSTEMD_RUN=str(root / "systemd-run"))
    if docker:
        env["DOGOPS_DOCKER"] = docker
    if train_on_host:
        env["DOGOPS_TRAIN_ON_HOST"] = train_on_host
    return env


SYSTEMD_RUN = """#!/bin/bash
# the rehearsal's systemd-run: records --on-boot=<N>s for the runner, which powers the "instance" off then
for a in "$@"; do case $a in --on-boot=*) n=${a#--on-boot=}; echo "${n%s}" >"$(dirname "$0")/poweroff-after";; esac; done
"""


def run_user_data(user_data: str, env: dict, imds: Imds, interrupt_at: str | None = None,
                  timeout: float = 900) -> tuple[int, bool, bool]:
    """Run the script as the instance would; with ``interrupt_at``, post the spot notice once the job log shows
    that text; at its max-runtime cap, power off. ``(exit code, notice posted, powered off by the cap)``."""
    root = Path(env["DOGOPS_EC2_ROOT"])
    root.mkdir(parents=True, exist_ok=True)
    script, cap = root / "user-data.sh", root / "poweroff-after"
    script.write_text(user_data)
    (root / "systemd-run").write_text(SYSTEMD_RUN)
    (root / "systemd-run").chmod(0o755)
    booted = time.monotonic()
    proc = subprocess.Popen(["bash", str(script)], env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if cap.exists() and cap.read_text().strip() and time.monotonic() - booted >= float(cap.read_text()):
            os.killpg(proc.pid, 9)  # power-off: nothing of the script runs on
            proc.wait()
            return proc.returncode, imds.notice is not None, True
        if interrupt_at and imds.notice is None and (root / "job.log").exists() and \
                interrupt_at in (root / "job.log").read_text(errors="replace"):
            imds.interrupt()
        if time.monotonic() > deadline:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise TimeoutError(f"the user data ran over {timeout} s; see {root / 'job.log'}")
        time.sleep(0.2)
    return proc.returncode, imds.notice is not None, False
