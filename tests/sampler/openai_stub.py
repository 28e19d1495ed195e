"""A tiny OpenAI-compatible chat server on loopback, for tests that need LiteLLM's real HTTP client path.

Like the Ollama and llama.cpp servers it ignores `n` (one choice per request, whatever was asked), and a model
named "hang" never answers (a hanging provider). Every request is recorded with its JSON body.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: StubServer

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append(body)
            count = len(self.server.requests)
        if body.get("model") == "hang":
            time.sleep(60)  # longer than any test waits: the client must give up first
            return
        text = f"answer {count} seed {body.get('seed')}"
        reply = {"id": f"stub-{count}", "object": "chat.completion", "created": int(time.time()),
                 "model": body.get("model"),
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": text}}],
                 "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def stub_server() -> Iterator[StubServer]:
    """A running `StubServer`; shut down on exit."""
    server = StubServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
