#!/usr/bin/env python3
"""A fake of Bitwarden Secrets Manager's identity and API servers, for the bitwarden guest's
tests. It serves Bitwarden's own published vectors (`tests/data/sm-vectors.json`, see the
README there) exactly as they are: it never encrypts anything, so the guest's decryption is
checked against the vendor's ciphertexts. Routes, as the SDK calls them:

- `POST /identity/connect/token` (form: grant_type=client_credentials, scope=api.secrets,
  client_id, client_secret) -> the vendor's login answer, or 400 `{"error":"invalid_client"}`;
- `GET /api/secrets/{id}`, `POST /api/secrets/get-by-ids {"ids": [...]}` (404 when any id is
  not accessible), `GET /api/organizations/{org}/secrets` -> the vendor's encrypted secrets;
  401 without the bearer token of a login since the last `POST /control/expire`;
- `GET /control/stats` -> `{"logins": n}` for the tests.

One extra secret, `TAMPERED_ID`, is a vendor secret with one bit of its value's MAC flipped;
with --tamper-payload the login answer's `encrypted_payload` MAC is flipped instead.

Listens on 127.0.0.1 only and exits by itself after --lifetime seconds.
"""

import argparse
import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

TAMPERED_ID = "00000000-0000-4000-8000-0000000000ff"


def flip_mac_bit(enc: str) -> str:
    head, mac = enc.rsplit("|", 1)
    raw = bytearray(base64.b64decode(mac))
    raw[0] ^= 0x01
    return f"{head}|{base64.b64encode(bytes(raw)).decode()}"


class State:
    def __init__(self, vectors, tamper_payload):
        self.lock = threading.Lock()
        self.v = vectors
        self.tamper_payload = tamper_payload
        self.logins = 0
        self.token_valid = False
        org = vectors["organization_id"]
        self.secrets = {}
        for s in vectors["secrets"]:
            self.secrets[s["id"]] = {
                "id": s["id"], "organizationId": org, "projectId": None,
                "key": s["key"], "value": s["value"], "note": s["note"],
                "creationDate": "2023-01-26T21:46:02.2182556Z",
                "revisionDate": "2023-01-26T21:46:02.2182557Z", "object": "secret",
            }
        first = vectors["secrets"][0]
        self.secrets[TAMPERED_ID] = dict(self.secrets[first["id"]], id=TAMPERED_ID, value=flip_mac_bit(first["value"]))


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
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

        def read_body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def authorized(self):
            expected = "Bearer " + state.v["identity_access_token"]
            if not state.token_valid or self.headers.get("Authorization") != expected:
                self.reply(401)
                return False
            return True

        def do_POST(self):
            path = urlsplit(self.path).path
            raw = self.read_body()
            with state.lock:
                if path == "/identity/connect/token":
                    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    good = (
                        form.get("grant_type") == "client_credentials"
                        and form.get("scope") == "api.secrets"
                        and form.get("client_id") == state.v["access_token_id"]
                        and form.get("client_secret") == state.v["client_secret"]
                    )
                    if not good:
                        self.reply(400, {"error": "invalid_client"})
                        return
                    state.logins += 1
                    state.token_valid = True
                    payload = state.v["encrypted_payload"]
                    if state.tamper_payload:
                        payload = flip_mac_bit(payload)
                    self.reply(200, {
                        "access_token": state.v["identity_access_token"], "expires_in": 3600,
                        "token_type": "Bearer", "scope": "api.secrets", "encrypted_payload": payload,
                    })
                elif path == "/api/secrets/get-by-ids":
                    if not self.authorized():
                        return
                    ids = [i.lower() for i in json.loads(raw or b"{}").get("ids", [])]
                    if not ids or any(i not in state.secrets for i in ids):
                        self.reply(404, {"message": "Resource not found.", "object": "error"})
                        return
                    self.reply(200, {"data": [state.secrets[i] for i in ids], "object": "list"})
                elif path == "/control/expire":
                    state.token_valid = False
                    self.reply(200, {})
                else:
                    self.reply(404, {"message": "Resource not found.", "object": "error"})

        def do_GET(self):
            parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
            with state.lock:
                if parts == ["control", "stats"]:
                    self.reply(200, {"logins": state.logins})
                    return
                if not self.authorized():
                    return
                if len(parts) == 3 and parts[:2] == ["api", "secrets"]:
                    secret = state.secrets.get(parts[2].lower())
                    if secret is None:
                        self.reply(404, {"message": "Resource not found.", "object": "error"})
                    else:
                        self.reply(200, secret)
                elif len(parts) == 4 and parts[:2] == ["api", "organizations"] and parts[3] == "secrets":
                    if parts[2] != state.v["organization_id"]:
                        self.reply(404, {"message": "Resource not found.", "object": "error"})
                        return
                    listed = [
                        {k: s[k] for k in ("id", "organizationId", "key", "creationDate", "revisionDate")}
                        for sid, s in state.secrets.items() if sid != TAMPERED_ID
                    ]
                    self.reply(200, {"secrets": listed, "projects": [], "object": "SecretsWithProjectsList"})
                else:
                    self.reply(404, {"message": "Resource not found.", "object": "error"})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--tamper-payload", action="store_true")
    ap.add_argument("--lifetime", type=float, default=300.0)
    args = ap.parse_args()
    with open(args.vectors, encoding="utf-8") as f:
        vectors = json.load(f)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State(vectors, args.tamper_payload)))
    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
