"""A webhook receiver for the sink tests: HTTPS, verifies tracevault's signature with Python's own
hmac module (an implementation independent of the server's), and records what it accepted.

usage: webhook_receiver.py PORT CERT KEY SECRET_FILE OUT_FILE
Every request is appended to OUT_FILE as a JSON line {"status", "verified", "body"}. The first
request is answered 503 (to exercise the sender's retry); later ones 200 when the signature is
valid and the timestamp within 300 s, else 401.
"""
import hashlib
import hmac
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, cert, key, secret_file, out = sys.argv[1:6]
secret = open(secret_file, "rb").read().strip()
state = {"n": 0}


class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        ts = self.headers.get("x-tracevault-timestamp", "")
        sig = self.headers.get("x-tracevault-signature", "")
        want = "v1=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = ts.isdigit() and abs(time.time() - int(ts)) <= 300
        verified = hmac.compare_digest(sig, want) and fresh
        state["n"] += 1
        status = 503 if state["n"] == 1 else (200 if verified else 401)
        with open(out, "a") as f:
            f.write(json.dumps({"status": status, "verified": verified,
                                "body": body.decode("utf-8", "replace")}) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", int(port)), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
