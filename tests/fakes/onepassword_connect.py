#!/usr/bin/env python3
"""A fake 1Password Connect server, written from the Connect API reference (OpenAPI 1.5.7).

What it serves, with the reference's shapes:
  GET    /health                                 {"name", "version", "dependencies": [...]}
  GET    /heartbeat                              "."
  GET    /v1/vaults[?filter=name eq "X"]         [Vault]
  GET    /v1/vaults/{vaultUuid}                  Vault
  GET    /v1/vaults/{vaultUuid}/items[?filter=title eq "X"]   [Item]  (summaries: no fields)
  GET    /v1/vaults/{vaultUuid}/items/{itemUuid}              FullItem (fields, sections)
  PATCH  /v1/vaults/{vaultUuid}/items/{itemUuid}              RFC 6902 add/remove/replace
Errors are the reference's ErrorResponse `{"status": N, "message": "..."}`:
  401 "Invalid token signature" (missing or unknown bearer token),
  403 "vault {id} is not in scope" (a token scoped to other vaults),
  404 "vault {id} not found" / "item {id} not found", 400 for a bad filter or patch.

Tokens: `--token` sees every vault; `--scoped-token` (optional) sees only the vaults whose
ids are listed with `--scope`. Data comes from `--seed` (default: onepassword_connect_seed.json
beside this file).

Test-only control, no auth: `POST /__fake/fail {"status": 503, "count": 1}` makes the next
`count` /v1 requests answer that status with an ErrorResponse; `GET /__fake/requests` lists
the requests seen (method, path, whether an Authorization header was present).

Listens on 127.0.0.1 only; prints `LISTENING <port>` once ready; exits by itself after
`--max-seconds` (default 600) so a crashed test can never leave it running.
"""

import argparse
import copy
import json
import os
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ID_RE = re.compile(r"^[\da-z]{26}$")
FILTER_RE = re.compile(r'^\s*(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$')


def parse_filter(raw, attribute):
    """The value of a SCIM `attribute eq "value"` filter, or None if it is not one."""
    m = FILTER_RE.match(raw)
    if not m or m.group(1) != attribute:
        return None
    return re.sub(r"\\(.)", r"\1", m.group(2))


class State:
    def __init__(self, seed, token, scoped_token, scope):
        self.lock = threading.Lock()
        self.vaults = seed["vaults"]
        self.items = seed["items"]
        self.tokens = {token: None}
        if scoped_token:
            self.tokens[scoped_token] = set(scope)
        self.fail_status = None
        self.fail_count = 0
        self.requests = []

    def vault_summary(self, v):
        count = sum(1 for i in self.items if i["vault"]["id"] == v["id"])
        return dict(v, items=count)


def item_summary(item):
    return {k: v for k, v in item.items() if k not in ("fields", "sections", "files")}


class Handler(BaseHTTPRequestHandler):
    server_version = "1Password-Connect-fake/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    @property
    def state(self):
        return self.server.state

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message):
        self.send_json(status, {"status": status, "message": message})

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def authorise(self):
        """The token's vault scope (None = all), or False after answering 401."""
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        if token is None or token not in self.state.tokens:
            self.error(401, "Invalid token signature")
            return False
        return self.state.tokens[token]

    def in_scope(self, scope, vault_id):
        return scope is None or vault_id in scope

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        body = self.read_body()
        st = self.state
        with st.lock:
            st.requests.append({"method": method, "path": self.path,
                                "authorization": "Authorization" in self.headers})
            if path == "/__fake/fail" and method == "POST":
                spec = json.loads(body or b"{}")
                st.fail_status = int(spec.get("status", 503))
                st.fail_count = int(spec.get("count", 1))
                return self.send_json(200, {"ok": True})
            if path == "/__fake/requests" and method == "GET":
                return self.send_json(200, st.requests)
            if path == "/heartbeat" and method == "GET":
                data = b"."
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return self.wfile.write(data)
            if path == "/health" and method == "GET":
                return self.send_json(200, {
                    "name": "1Password Connect API",
                    "version": "1.7.3",
                    "dependencies": [
                        {"service": "sync", "status": "ACTIVE"},
                        {"service": "sqlite", "status": "ACTIVE", "message": "Connected to./1password.sqlite"},
                    ],
                })
            if not path.startswith("/v1/"):
                return self.error(404, "not found")
            scope = self.authorise()
            if scope is False:
                return None
            if st.fail_count > 0:
                st.fail_count -= 1
                return self.error(st.fail_status, "Service unavailable: failed to sync with 1Password.com")
            parts = [urllib.parse.unquote(p) for p in path[len("/v1/"):].split("/")]
            return self.dispatch(method, parts, query, body, scope)

    def dispatch(self, method, parts, query, body, scope):
        st = self.state
        if parts[0] != "vaults":
            return self.error(404, "not found")
        if len(parts) == 1 and method == "GET":
            vaults = [v for v in st.vaults if self.in_scope(scope, v["id"])]
            if "filter" in query:
                name = parse_filter(query["filter"][0], "name")
                if name is None:
                    return self.error(400, "Invalid filter")
                vaults = [v for v in vaults if v["name"] == name]
            return self.send_json(200, [st.vault_summary(v) for v in vaults])
        vault_id = parts[1]
        vault = next((v for v in st.vaults if v["id"] == vault_id), None)
        if vault is None:
            return self.error(404, f"vault {vault_id} not found")
        if not self.in_scope(scope, vault_id):
            return self.error(403, f"vault {vault_id} is not in scope")
        if len(parts) == 2 and method == "GET":
            return self.send_json(200, st.vault_summary(vault))
        if len(parts) >= 3 and parts[2] != "items":
            return self.error(404, "not found")
        items = [i for i in st.items if i["vault"]["id"] == vault_id]
        if len(parts) == 3 and method == "GET":
            if "filter" in query:
                title = parse_filter(query["filter"][0], "title")
                if title is None:
                    return self.error(400, "Invalid filter")
                items = [i for i in items if i["title"] == title]
            return self.send_json(200, [item_summary(i) for i in items])
        if len(parts) != 4:
            return self.error(404, "not found")
        item_id = parts[3]
        item = next((i for i in items if i["id"] == item_id), None)
        if item is None:
            return self.error(404, f"item {item_id} not found")
        if method == "GET":
            return self.send_json(200, item)
        if method == "PATCH":
            try:
                ops = json.loads(body)
            except ValueError:
                return self.error(400, "Invalid JSON patch")
            updated = copy.deepcopy(item)
            problem = apply_patch(updated, ops)
            if problem:
                return self.error(400, problem)
            updated["version"] = item.get("version", 1) + 1
            item.clear()
            item.update(updated)
            return self.send_json(200, item)
        return self.error(405, "method not allowed")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")


def apply_patch(item, ops):
    """Applies the field operations the reference documents; returns an error text or None."""
    if not isinstance(ops, list):
        return "Invalid JSON patch"
    fields = item.setdefault("fields", [])
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        segs = path.strip("/").split("/")
        if segs[0] != "fields":
            return f"unsupported patch path {path}"
        if len(segs) == 1:
            if kind != "add" or not isinstance(op.get("value"), dict):
                return "Invalid JSON patch"
            new = dict(op["value"])
            new.setdefault("id", os.urandom(13).hex()[:26])
            new.setdefault("type", "STRING")
            fields.append(new)
            continue
        field = next((f for f in fields if f["id"] == segs[1]), None)
        if field is None:
            return f"The item doesn't have a {segs[1]} field."
        if len(segs) == 2:
            if kind == "remove":
                fields.remove(field)
            elif kind == "replace" and isinstance(op.get("value"), dict):
                field.clear()
                field.update(dict(op["value"], id=segs[1]))
            else:
                return "Invalid JSON patch"
        elif len(segs) == 3 and segs[2] in ("value", "label"):
            if kind in ("add", "replace"):
                field[segs[2]] = str(op.get("value", ""))
            elif kind == "remove":
                field.pop(segs[2], None)
            else:
                return "Invalid JSON patch"
        else:
            return f"unsupported patch path {path}"
    return None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", required=True)
    p.add_argument("--scoped-token")
    p.add_argument("--scope", action="append", default=[], help="vault id the scoped token sees")
    p.add_argument("--seed", default=os.path.join(here, "onepassword_connect_seed.json"))
    p.add_argument("--max-seconds", type=float, default=600)
    args = p.parse_args()
    with open(args.seed, encoding="utf-8") as f:
        seed = json.load(f)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(seed, args.token, args.scoped_token, args.scope)
    timer = threading.Timer(args.max_seconds, server.shutdown)
    timer.daemon = True
    timer.start()
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
