"""A local HTTP server that speaks Ollama's documented wire format (docs/api.md), with controlled delays.

Used by the tests in place of Ollama, which cannot be installed on the test machines. It streams NDJSON chunks
the way Ollama does: one chunk per token, then a final `done: true` chunk with `done_reason` and nanosecond durations.
Like Ollama, it sends the headers of a stream with its first token, and `/api/ps` shows the context the model was
loaded with (the load's `num_ctx`).

It also speaks Ollama's OpenAI-compatible endpoints (`GET /v1/models`, streaming `POST /v1/completions` as
server-sent events, `data: [DONE]` at the end, the `usage` chunk when `stream_options.include_usage` asks for it),
with the same delays and faults.

Several streams are served at once (one thread per connection), each on its own deadlines from its own request's
arrival, so that a client running N requests at once must measure the script's delays for every one of them;
`peak_in_flight` says how many generations the server was running at the same moment.

Faults, for the fault-injection tests: a pause before the headers (Ollama reloading a model), chunks split across
TCP writes, the final chunk in the same write as the last token, a last line without its newline, and the failures
of `Script.fault`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import struct
import tempfile
import time
from dataclasses import dataclass, field
import socketserver
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer


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
    headers_pause_s: float = 0.0         # the first generation waits this long before its headers (a model reload)
    split_writes: bool = False           # every chunk goes out in three TCP writes, cut inside the JSON
    final_with_last_token: bool = False  # the last token and the final chunk in one write
    no_trailing_newline: bool = False    # the final line without its newline
    token_text: str | None = None        # every token's text (default " t0", " t1", ...)
    context_length: int | None = None    # what /api/ps reports (default: the num_ctx the model was loaded with)
    # One of: reset (RST before answering), drop (connection closed after `fault_at` tokens), no_done (the stream
    # ends cleanly after `fault_at` tokens), malformed, null (a `"response": null` chunk), error_chunk (an `error`
    # chunk after `fault_at` tokens), 500_json, 500_html.
    fault: str | None = None
    fault_at: int = 2
    close_after_each: bool = False       # close the connection after each generation (keep-alive lost)
    # Each connection served by a process of its own, as a server written in a language without a global interpreter
    # lock would serve it: N streams arriving together are then not read one after the other by the stand-in's own
    # Python, which would delay the later ones' deadlines (state such as the loaded context stays per connection).
    process_per_connection: bool = False
    # Answer /v1 as llama.cpp's llama-server does: `/props` with its build, `timings` (ms) in the last chunk.
    llama_server: bool = False


class ForkingHTTPServer(socketserver.ForkingMixIn, HTTPServer):
    daemon_threads = True
    block_on_close = False


def _serve(server) -> None:
    """The stand-in's process: SIGTERM ends it whatever handler the test process had installed when it forked (the
    harness's own turns SIGTERM into an exception, which the server's error handler would swallow)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    server.serve_forever()


class FakeOllama:
    def __init__(self, script: Script | None = None, pull_layers: dict | None = None):
        self.script = script or Script()
        self.loaded_ctx: int | None = None  # the context the model was loaded with (the server process's state)
        self.generations = 0
        self.reloads = 0
        self.pull_layers = pull_layers  # callable(model) -> None, run at the end of a pull
        self._log = tempfile.NamedTemporaryFile(prefix="fake-ollama-", suffix=".jsonl", delete=False).name
        # Shared with the server's process: generations running now, and the most that ever ran at once.
        self._in_flight = multiprocessing.get_context("fork").Value("i", 0)
        self._peak = multiprocessing.get_context("fork").Value("i", 0)
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
                elif self.path == "/props" and outer.script.llama_server:
                    self._json(200, {"build_info": "b7100-0123abcd", "default_generation_settings": {"n_ctx": 4096}})
                elif self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 1764547200,
                                                                 "owned_by": "library"} for m in outer.script.models]})
                elif self.path == "/api/ps":
                    ctx = outer.script.context_length or outer.loaded_ctx
                    self._json(200, {"models": [{"name": m, "model": m, "size": 100, "size_vram": 0,
                                                 **({"context_length": ctx} if ctx else {})}
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
                if self.path == "/v1/completions":
                    return self._v1_completions(model, body)
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
                ctx = (body.get("options") or {}).get("num_ctx")
                if not body.get("prompt"):  # load or unload (keep_alive 0)
                    if body.get("keep_alive") != 0:
                        outer.loaded_ctx = ctx or 4096  # Ollama's default context when no num_ctx is sent
                    return self._json(200, {"model": model, "response": "", "done": True,
                                            "done_reason": "unload" if body.get("keep_alive") == 0 else "load"})
                if outer.script.drop_first_connections > 0:
                    outer.script.drop_first_connections -= 1
                    self.close_connection = True
                    self.connection.close()
                    return
                if outer.script.fault == "reset":  # RST instead of an answer
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                if outer.script.fault == "500_json":
                    return self._json(500, {"error": "llama runner process has terminated: exit status 2"})
                if outer.script.fault == "500_html":
                    page = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<h1>Bad Gateway</h1>\n" \
                           b"<p>upstream went away</p>\n</body>\n</html>\n"
                    self.send_response(500)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if ctx and outer.loaded_ctx and ctx != outer.loaded_ctx:
                    outer.reloads += 1  # Ollama reloads the model for another context
                outer.loaded_ctx = ctx or outer.loaded_ctx
                with outer._counting():
                    self._generate(model, body)

            def setup(self):
                super().setup()
                # As Go's net package does for every TCP connection (Ollama): no Nagle delay on small writes.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _stream(self, content_type: str = "application/x-ndjson") -> None:
                """The headers, kept to go out in the same write as the first chunk (as Go's buffered writer does)."""
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self._headers_buffer.append(b"\r\n")
                self._head = b"".join(self._headers_buffer)
                self._headers_buffer = []

            def _chunk(self, obj: dict | bytes, newline: bool = True) -> None:
                data = obj if isinstance(obj, bytes) else (json.dumps(obj) + ("\n" if newline else "")).encode()
                frame = getattr(self, "_head", b"") + f"{len(data):x}\r\n".encode() + data + b"\r\n"
                self._head = b""
                if outer.script.split_writes:  # cut inside the chunk header and inside the JSON
                    for piece in (frame[:2], frame[2:len(frame) // 2], frame[len(frame) // 2:]):
                        self.wfile.write(piece)
                        self.wfile.flush()
                        time.sleep(0.002)
                    return
                self.wfile.write(frame)
                self.wfile.flush()

            def _end(self) -> None:
                self.wfile.write(getattr(self, "_head", b"") + b"0\r\n\r\n")
                self._head = b""
                self.wfile.flush()

            def _generate(self, model: str, body: dict) -> None:
                s = outer.script
                limit = body.get("options", {}).get("num_predict", 128)
                n = min(limit, 1 + len(s.itl_s))
                reason = "length"
                if s.stop_after is not None and s.stop_after < n:
                    n, reason = s.stop_after, "stop"
                pause = s.headers_pause_s if outer.generations == 0 else 0.0
                outer.generations += 1
                # Deadlines from the request's arrival, so the server's own work does not stretch its delays. Like
                # Ollama, the headers go out with the first token.
                due = self._arrived + pause
                final = {"model": model, "created_at": "2026-11-27T00:00:01Z", "response": "", "done": True,
                         "done_reason": reason, **s.server_fields}
                if final.get("eval_count") is None:
                    final["eval_count"] = n
                final_line = (json.dumps(final) + ("" if s.no_trailing_newline else "\n")).encode()
                for i in range(n):
                    due += s.ttft_s if i == 0 else s.itl_s[i - 1]
                    time.sleep(max(0.0, due - time.perf_counter()))
                    if i == 0:
                        self._stream()
                    if s.fault is not None and i == s.fault_at:
                        if s.fault == "drop":
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if s.fault == "no_done":
                            return self._end()
                        if s.fault == "error_chunk":
                            self._chunk({"error": "an error was encountered while running the model: CUDA error"})
                            return self._end()
                        if s.fault == "malformed":
                            self._chunk(b'{"model": "' + model.encode() + b'", "response": " t", "do\n')
                            return self._end()
                        if s.fault == "null":
                            self._chunk({"model": model, "response": None, "done": False})
                            return self._end()
                    token = {"model": model, "created_at": "2026-11-27T00:00:00Z",
                             "response": s.token_text if s.token_text is not None else f" t{i}", "done": False}
                    if i == n - 1 and s.final_with_last_token:  # one write, one HTTP chunk: token, then final
                        self._chunk((json.dumps(token) + "\n").encode() + final_line)
                        return self._end()
                    self._chunk(token)
                if n == 0:
                    self._stream()
                if s.fault == "no_done":
                    return self._end()
                self._chunk(final_line)
                self._end()
                if s.close_after_each:  # without saying so: the client finds out when it reuses the connection
                    self.close_connection = True

            def _v1_completions(self, model: str, body: dict) -> None:
                """Ollama's /v1/completions: OpenAI errors, then one server-sent event per token."""
                s = outer.script
                if model not in s.models:
                    return self._json(404, {"error": {"message": f'model "{model}" not found, try pulling it first',
                                                      "type": "api_error", "param": None, "code": None}})
                if s.fault == "500_json":
                    return self._json(500, {"error": {"message": "llama runner process has terminated",
                                                      "type": "api_error", "param": None, "code": None}})
                with outer._counting():
                    self._v1_stream(model, body)

            def _v1_stream(self, model: str, body: dict) -> None:
                s = outer.script
                n = min(body.get("max_tokens") or 16, 1 + len(s.itl_s))
                reason = "length"
                if s.stop_after is not None and s.stop_after < n:
                    n, reason = s.stop_after, "stop"
                due = self._arrived
                for i in range(n):
                    due += s.ttft_s if i == 0 else s.itl_s[i - 1]
                    time.sleep(max(0.0, due - time.perf_counter()))
                    if i == 0:
                        self._stream("text/event-stream")
                    if s.fault == "drop" and i == s.fault_at:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if s.fault == "no_done" and i == s.fault_at:
                        return self._end()
                    text = s.token_text if s.token_text is not None else f" t{i}"
                    self._event({"id": "cmpl-1", "object": "text_completion", "created": 1764547200, "model": model,
                                 "choices": [{"text": text, "index": 0, "finish_reason": None}]})
                if n == 0:
                    self._stream("text/event-stream")
                last = {"id": "cmpl-1", "object": "text_completion", "created": 1764547200, "model": model,
                        "choices": [{"text": "", "index": 0, "finish_reason": reason}]}
                if s.llama_server:
                    last["timings"] = {"prompt_n": 7, "prompt_ms": 12.5, "predicted_n": n, "predicted_ms": 40.25,
                                       "predicted_per_second": n / 0.04025}
                self._event(last)
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._event({"id": "cmpl-1", "object": "text_completion", "created": 1764547200, "model": model,
                                 "choices": [], "usage": {"prompt_tokens": s.server_fields["prompt_eval_count"],
                                                          "completion_tokens": n, "total_tokens": n + 7}})
                if s.fault == "no_done":
                    return self._end()
                self._chunk(b"data: [DONE]\n\n")
                self._end()

            def _event(self, obj: dict) -> None:
                self._chunk(("data: " + json.dumps(obj) + "\n\n").encode())

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

        server_class = ForkingHTTPServer if self.script.process_per_connection else ThreadingHTTPServer
        self.server = server_class(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a client that hangs up is not news
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # The server runs in its own process, as Ollama does: sharing the client's interpreter (and its GIL)
        # would add the server's Python work to the latencies the client measures.
        self.process = multiprocessing.get_context("fork").Process(target=_serve, args=(self.server,), daemon=True)

    @property
    def peak_in_flight(self) -> int:
        """The most generations the server ran at the same moment."""
        return self._peak.value

    def _counting(self):
        outer = self

        class InFlight:
            def __enter__(self):
                with outer._in_flight.get_lock():
                    outer._in_flight.value += 1
                    outer._peak.value = max(outer._peak.value, outer._in_flight.value)

            def __exit__(self, *exc):
                with outer._in_flight.get_lock():
                    outer._in_flight.value -= 1

        return InFlight()

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
        self.process.join(5)
        if self.process.is_alive():  # never wait forever on a stand-in
            self.process.kill()
            self.process.join()
        os.unlink(self._log)
