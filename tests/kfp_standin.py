"""A STAND-IN for a Kubeflow Pipelines API server (no cluster can run here).

It implements only the v2beta1 endpoints kfp.Client calls to submit a run —
healthz, experiments (list, create), runs and recurring runs (create) — with KFP's request and
error shapes, bearer-token checks, a multi-user namespace check, an optional
login gateway in front (as Dex/oauth2-proxy: unauthenticated calls are
redirected to a login page) and one validation the real server does
(run-time parameters must be declared by the pipeline spec). It records what
was posted so tests can check it. It does not run pipelines.
"""
from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional
from urllib.parse import parse_qs, urlparse


class KfpStandIn:
    def __init__(self, token: Optional[str] = None, namespaces: Optional[List[str]] = None,
                 login_gateway: bool = False):
        self.token = token
        self.namespaces = namespaces      # multi-user: the token's profiles
        self.login_gateway = login_gateway
        self.experiments: List[dict] = []
        self.runs: List[dict] = []
        self.recurring_runs: List[dict] = []
        self.requests: List[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet test output
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if standin.token is None:
                    return True
                header = self.headers.get("Authorization")
                if header is None and standin.login_gateway:
                    self.send_response(302)
                    self.send_header("Location", "/dex/auth?client_id=kubeflow-oidc-authservice")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return False
                if header is None:
                    self._reply(401, {"error": "Unauthenticated", "code": 16,
                                      "message": "Request header error: there is no user identity header."})
                    return False
                if header != f"Bearer {standin.token}":
                    self._reply(403, {"error": "PermissionDenied", "code": 7,
                                      "message": "Failed to authorize with API: token rejected"})
                    return False
                return True

            def do_GET(self):
                url = urlparse(self.path)
                standin.requests.append(f"GET {url.path}")
                if not self._authorised():
                    return
                if url.path == "/apis/v2beta1/healthz":
                    self._reply(200, {"multi_user": False})
                elif url.path == "/apis/v2beta1/experiments":
                    wanted = json.loads(parse_qs(url.query).get("filter", ["{}"])[0])
                    names = [p.get("stringValue", p.get("string_value"))
                             for p in wanted.get("predicates", []) if p.get("key") == "display_name"]
                    found = [e for e in standin.experiments if not names or e["display_name"] in names]
                    self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
                else:
                    self._reply(404, {"error": "Not Found", "code": 5, "message": url.path})

            def do_POST(self):
                url = urlparse(self.path)
                standin.requests.append(f"POST {url.path}")
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                namespace = body.get("namespace")   # experiments carry it; runs follow theirs
                if (url.path == "/apis/v2beta1/experiments" and standin.namespaces is not None
                        and namespace not in standin.namespaces):
                    self._reply(403, {"error": "PermissionDenied", "code": 7, "message":
                                      f"Failed to authorize with API: user is not allowed "
                                      f"to access namespace {namespace!r}"})
                    return
                if url.path == "/apis/v2beta1/experiments":
                    experiment = {**body, "experiment_id": str(uuid.uuid4())}
                    standin.experiments.append(experiment)
                    self._reply(200, experiment)
                elif url.path == "/apis/v2beta1/runs":
                    spec = body.get("pipeline_spec", {}).get("pipeline_spec", body.get("pipeline_spec", {}))
                    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
                    given = body.get("runtime_config", {}).get("parameters", {})
                    unknown = sorted(set(given) - set(declared))
                    if unknown:
                        self._reply(400, {"error": "InvalidArgument", "code": 3, "message":
                                          f"Failed to create a run: input parameter(s) {unknown} "
                                          "are not declared by the pipeline spec"})
                        return
                    run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
                    standin.runs.append(run)
                    self._reply(200, run)
                elif url.path == "/apis/v2beta1/recurringruns":
                    # The API server parses cron with seconds first (six fields).
                    cron = body.get("trigger", {}).get("cron_schedule", {}).get("cron", "")
                    known = {e["experiment_id"] for e in standin.experiments}
                    if len(cron.split()) != 6 or body.get("experiment_id") not in known:
                        self._reply(400, {"error": "InvalidArgument", "code": 3, "message":
                                          f"Failed to create a recurring run: invalid cron {cron!r} "
                                          "or unknown experiment"})
                        return
                    recurring = {**body, "recurring_run_id": str(uuid.uuid4()), "status": "ENABLED"}
                    standin.recurring_runs.append(recurring)
                    self._reply(200, recurring)
                else:
                    self._reply(404, {"error": "Not Found", "code": 5, "message": url.path})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "KfpStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
