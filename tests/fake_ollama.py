"""A local HTTP server that speaks Ollama's documented wire format (docs/api.md), with controlled delays.

Used by the tests in place of Ollama, which cannot be installed on the test machines. It streams NDJSON chunks
the way Ollama does: one chunk per token, then a final `done: true` chunk with `done_reason` and nanosecond durations.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Script:
    """What the server does on /api/generate."""
    ttft_s: float = 0.05                 # delay before the first token
    itl_s: list[float] = field(default_factory=lambda: [0.01] * 15)  # delay before each following token
    stop_after: int | None = None        # emit EOS ("stop") after this many tokens
    server_fields: dict = field(default_factory=lambda: {
        "total_duration": 123456789, "load_duration": 1234567, "prompt_eval_count": 7,
        "prompt_eval_duration": 45678901, "eval_count": None, "eval_duration": 98765432})
    models: tuple[str, ...] = ("smollm:135m",)
    drop_first_connections: int = 0      # close this many generate connections before answering


class FakeOllama:
    def __init__(self, script: Script | None = None, pull_layers: dict | None = None):
        self.script = script or Script()
        self.pull_layers = pull_layers  # callable(model) -> None, run at the end of a pull
        self._log = tempfile.NamedTemporaryFile(prefix="fake-ollama-", suffix=".jsonl", delete=False).name
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _json(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> dict:
                n = int(self.headers.get("Content-Length", 0))
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self):
                outer._record(self.path, {})
                if self.path == "/api/version":
                    self._json(200, {"version": "0.12.6-fake"})
                elif self.path == "/api/ps":
                    self._json(200, {"models": [{"name": m, "model": m, "size": 100, "size_vram": 0}
                                                for m in outer.script.models]})
                else:
                    self._json(404, {"error": "not found"})

            def parse_request(self):
                # The request line has arrived: the server's delays count from here, header parsing included.
                self._arrived = time.perf_counter()
                return super().parse_request()

            def do_POST(self):
                body = self._body()
                outer._record(self.path, body)
                model = body.get("model")
                if self.path == "/api/pull":
                    return self._pull(model)
                if model not in outer.script.models:
                    return self._json(404, {"error": f"model '{model}' not found"})
                if self.path == "/api/show":
                    return self._json(200, {"details": {"family": "llama", "parameter_size": "134.52M",
                                                        "quantization_level": "Q4_1"},
                                            "model_info": {"general.architecture": "llama",
                                                           "general.parameter_count": 134515008,
                                                           "llama.block_count": 30}, "template": "{{ .Prompt }}"})
                if self.path != "/api/generate":
                    return self._json(404, {"error": "not found"})
                if not body.get("prompt"):  # load or unload (keep_alive 0)
                    return self._json(200, {"model": model, "response": "", "done": True,
                                            "done_reason": "unload" if body.get("keep_alive") == 0 else "load"})
                if outer.script.drop_first_connections > 0:
                    outer.script.drop_first_connections -= 1
                    self.close_connection = True
                    self.connection.close()
                    return
                self._generate(model, body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

            def _chunk(self, obj: dict) -> None:
                data = (json.dumps(obj) + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _generate(self, model: str, body: dict) -> None:
                s = outer.script
                limit = body.get("options", {}).get("num_predict", 128)
                n = min(limit, 1 + len(s.itl_s))
                reason = "length"
                if s.stop_after is not None and s.stop_after < n:
                    n, reason = s.stop_after, "stop"
                self._stream()
                # Deadlines from the request's arrival, so the server's own work does not stretch its delays.
                due = self._arrived
                for i in range(n):
                    due += s.ttft_s if i == 0 else s.itl_s[i - 1]
                    time.sleep(max(0.0, due - time.perf_counter()))
                    self._chunk({"model": model, "created_at": "2026-11-27T00:00:00Z", "response": f" t{i}",
                                 "done": False})
                final = {"model": model, "created_at": "2026-11-27T00:00:01Z", "response": "", "done": True,
                         "done_reason": reason, **s.server_fields}
                if final.get("eval_count") is None:
                    final["eval_count"] = n
                self._chunk(final)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _pull(self, model: str) -> None:
                if model == "missing:model":
                    return self._json(500, {"error": "pull model manifest: file does not exist"})
                self._stream()
                self._chunk({"status": "pulling manifest"})
                total = 1000
                for done in (None, 250, 1000):
                    msg = {"status": "pulling abc", "digest": "sha256:" + "ab" * 32, "total": total}
                    if done is not None:
                        msg["completed"] = done
                    self._chunk(msg)
                if outer.pull_layers:
                    outer.pull_layers(model)
                for status in ("verifying sha256 digest", "writing manifest", "success"):
                    self._chunk({"status": status})
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a client that hangs up is not news
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # The server runs in its own process, as Ollama does: sharing the client's interpreter (and its GIL)
        # would add the server's Python work to the latencies the client measures.
        self.process = multiprocessing.get_context("fork").Process(target=self.server.serve_forever, daemon=True)

    def _record(self, path: str, body: dict) -> None:
        with open(self._log, "a") as f:
            f.write(json.dumps([path, body]) + "\n")

    @property
    def requests(self) -> list[tuple[str, dict]]:
        with open(self._log) as f:
            return [tuple(json.loads(line)) for line in f]

    def __enter__(self) -> "FakeOllama":
        self.process.start()
        self.server.socket.close()  # the child serves; the parent keeps no listener
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.join()
        os.unlink(self._log)
