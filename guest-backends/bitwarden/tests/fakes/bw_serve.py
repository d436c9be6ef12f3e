#!/usr/bin/env python3
"""A fake of the Bitwarden CLI's Vault Management API (`bw serve`), for the bitwarden guest's
tests. Written from the CLI's source (bitwarden/clients `apps/cli`: `serve.command.ts`,
`oss-serve-configurator.ts`, `commands/get.command.ts`, `models/response.ts`) and the Vault
Management API reference:

- answers are `{"success": true, "data": ...}`; every failure is HTTP 400 with
  `{"success": false, "message": ...}` (`Not found.`, `Vault is locked.`, `More than one
  result was found. ...`, `No TOTP available for this login.`);
- a request with an `Origin` header, or with a `Host` other than localhost/127.0.0.1/[::1] on
  the served port, is refused with a bare 403 (the CLI's origin protection);
- `/list/object/*` and `/object/*` answer `Vault is locked.` while the vault is locked;
  `POST /lock` and `POST /unlock {"password": ...}` change that;
- `GET /object/item/{id}` takes an id, or a name: an exact (case-insensitive) name wins,
  otherwise a substring search that must match exactly one item.

Listens on 127.0.0.1 only and exits by itself after --lifetime seconds.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def totp(seed: str, now: float) -> str:
    """RFC 6238 TOTP (SHA-1, 30 s, 6 digits), as bw computes for an `otpauth`-less seed."""
    key = base64.b32decode(seed.upper() + "=" * (-len(seed) % 8))
    counter = struct.pack(">Q", int(now // 30))
    digest = hmac.new(key, counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


class State:
    def __init__(self, items, password, locked):
        self.lock = threading.Lock()
        self.items = items
        self.password = password
        self.locked = locked


def make_handler(state: State, port: int):
    allowed_hosts = {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep test output quiet
            pass

        def reply(self, status, payload=None):
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def ok(self, data=None):
            payload = {"success": True}
            if data is not None:
                payload["data"] = data
            self.reply(200, payload)

        def fail(self, message):
            self.reply(400, {"success": False, "message": message})

        def body_json(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else {}

        def guarded(self):
            """The CLI's origin protection, then the route."""
            if (self.headers.get("Host") or "").lower() not in allowed_hosts:
                self.reply(403)
                return False
            if self.headers.get("Origin") is not None:
                self.reply(403)
                return False
            return True

        def locked(self):
            if state.locked:
                self.fail("Vault is locked.")
                return True
            return False

        def find(self, ident):
            ident = ident.lower()
            if GUID.match(ident):
                return [i for i in state.items if i["id"] == ident]
            exact = [i for i in state.items if i["name"].lower() == ident]
            if exact:
                return exact[:1]
            return [i for i in state.items if ident in i["name"].lower()]

        def one(self, ident):
            found = self.find(ident)
            if not found:
                self.fail("Not found.")
                return None
            if len(found) > 1:
                msg = "More than one result was found. Try getting a specific object by `id` instead. " \
                      "The following objects were found:"
                for i in found:
                    msg += "\n" + i["id"]
                self.reply(400, {"success": False, "message": msg, "data": [i["id"] for i in found]})
                return None
            return found[0]

        def do_GET(self):
            if not self.guarded():
                return
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.split("/") if p]
            with state.lock:
                if parts == ["status"]:
                    self.ok({
                        "object": "template",
                        "template": {
                            "serverUrl": "https://vault.bitwarden.com",
                            "lastSync": "2024-05-01T12:00:00.000Z",
                            "userEmail": "ops@example.com",
                            "userId": "5a1f6c2e-7d2b-4e8f-9a3c-0b1d2e3f4a5b",
                            "status": "locked" if state.locked else "unlocked",
                        },
                    })
                elif parts == ["list", "object", "items"]:
                    if self.locked():
                        return
                    search = (parse_qs(url.query).get("search") or [""])[0].lower()
                    items = [
                        i for i in state.items
                        if not search
                        or search in i["name"].lower()
                        or search in ((i.get("login") or {}).get("username") or "").lower()
                        or search == i["id"]
                    ]
                    self.ok({"object": "list", "data": items})
                elif len(parts) == 3 and parts[:2] == ["object", "item"]:
                    if self.locked():
                        return
                    item = self.one(parts[2])
                    if item is not None:
                        self.ok(item)
                elif len(parts) == 3 and parts[:2] == ["object", "totp"]:
                    if self.locked():
                        return
                    item = self.one(parts[2])
                    if item is None:
                        return
                    seed = (item.get("login") or {}).get("totp")
                    if item.get("type") != 1 or not seed:
                        self.fail("No TOTP available for this login.")
                        return
                    self.ok({"object": "string", "data": totp(seed, time.time())})
                else:
                    self.fail("Unknown object.")

        def do_POST(self):
            if not self.guarded():
                return
            parts = [p for p in urlsplit(self.path).path.split("/") if p]
            body = self.body_json()
            with state.lock:
                if parts == ["lock"]:
                    state.locked = True
                    self.ok({"noColor": False, "object": "message", "title": "Your vault is locked.", "message": None})
                elif parts == ["unlock"]:
                    if body.get("password") != state.password:
                        self.fail("Invalid master password.")
                        return
                    state.locked = False
                    self.ok({"noColor": False, "object": "message", "title": "Your vault is now unlocked!",
                             "message": None, "raw": "fake-session-key"})
                elif parts == ["object", "item"]:
                    if self.locked():
                        return
                    item = dict(body)
                    item["id"] = str(uuid.uuid4())
                    item["object"] = "item"
                    state.items.append(item)
                    self.ok(item)
                else:
                    self.fail("Unknown object.")

        def do_PUT(self):
            if not self.guarded():
                return
            parts = [p for p in urlsplit(self.path).path.split("/") if p]
            body = self.body_json()
            with state.lock:
                if len(parts) == 3 and parts[:2] == ["object", "item"]:
                    if self.locked():
                        return
                    ident = parts[2].lower()
                    for n, item in enumerate(state.items):
                        if item["id"] == ident:
                            edited = dict(body)
                            edited["id"] = ident
                            edited["object"] = "item"
                            state.items[n] = edited
                            self.ok(edited)
                            return
                    self.fail("Not found.")
                else:
                    self.fail("Unknown object.")

        def do_DELETE(self):
            if not self.guarded():
                return
            parts = [p for p in urlsplit(self.path).path.split("/") if p]
            with state.lock:
                if len(parts) == 3 and parts[:2] == ["object", "item"]:
                    if self.locked():
                        return
                    ident = parts[2].lower()
                    before = len(state.items)
                    state.items = [i for i in state.items if i["id"] != ident]
                    if len(state.items) == before:
                        self.fail("Not found.")
                    else:
                        self.ok()
                else:
                    self.fail("Unknown object.")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--items", required=True, help="JSON file: the vault's items")
    ap.add_argument("--password", default="correct horse battery staple")
    ap.add_argument("--locked", action="store_true")
    ap.add_argument("--lifetime", type=float, default=300.0)
    args = ap.parse_args()
    with open(args.items, encoding="utf-8") as f:
        items = json.load(f)
    state = State(items, args.password, args.locked)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state, args.port))
    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
