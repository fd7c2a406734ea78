#!/usr/bin/env python3
"""A local OpenAI-compatible chat-completions server for tests (the only
stand-in allowed: no model endpoint is reachable here).

usage: fake_llm.py PORT REQUEST_LOG

Behaviour, chosen by the request's last user message:
  contains FAIL500  -> HTTP 500
  contains SLOW     -> sleeps 3 s before answering (client timeout tests)
  contains NOSTREAM -> ignores "stream": true and answers one plain JSON
                       chat completion (Content-Type application/json)
  contains EMPTY    -> the reply's content is "" (agents only, not the
                       planner): a JSON message with content "", or an SSE
                       stream with no delta before [DONE]
  contains DROPONCE -> the first streamed reply to this exact user message
                       stops after half its deltas and the connection is
                       cut (no [DONE], no last chunk); later ones are whole
  system prompt "You plan work" -> a JSON plan over the agents it lists
  otherwise         -> "Reply to: <first 40 chars>", streamed as SSE deltas
                       when "stream" is true
Every request body is appended as one JSON line to REQUEST_LOG.
"""
import json
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


DROPPED = set()
DROPPED_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n))
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps({"path": self.path, "auth": self.headers.get("Authorization"), "body": body}) + "\n")
        msgs = body.get("messages", [])
        user = next((m["content"] for m in reversed(msgs) if m["role"] == "user"), "")
        system = next((m["content"] for m in msgs if m["role"] == "system"), "")
        if "FAIL500" in user:
            return self.reply(500, "application/json", b'{"error":"boom"}')
        if "SLOW" in user:
            time.sleep(3)
        if system.startswith("You plan work"):
            agents = re.findall(r"^- ([^:]+):", system, re.M)
            text = json.dumps({"steps": [{"agent": a, "action": "LLM step for " + a} for a in agents]})
        elif "EMPTY" in user:
            text = ""
        else:
            text = "Reply to: " + user[:40]
        drop = False
        if "DROPONCE" in user:
            with DROPPED_LOCK:
                drop = user not in DROPPED
                DROPPED.add(user)
        if body.get("stream") and "NOSTREAM" not in user:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            words = text.split(" ") if text else []
            for i, w in enumerate(words):
                if drop and i == len(words) // 2:
                    self.close_connection = True
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                delta = w if i == 0 else " " + w
                ev = {"choices": [{"index": 0, "delta": {"content": delta}}]}
                self.chunk(("data: " + json.dumps(ev) + "\n\n").encode())
            self.chunk(b"data: [DONE]\n\n")
            self.chunk(b"")
            return
        out = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
        self.reply(200, "application/json", json.dumps(out).encode())

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def reply(self, code, ctype, data):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("listening", flush=True)
    srv.serve_forever()
