"""Any server that speaks the OpenAI-compatible completions API: llama.cpp's llama-server, vLLM, SGLang, LM Studio,
llama-cpp-python's server, Ollama at /v1.

Requests go to streaming `/v1/completions` with the prompt as the harness rendered it (no chat endpoint: the server
must not apply a template of its own). The usage counts and any timings the server sends (llama-server's `timings`)
are kept as sent beside the harness's clock, never instead of it.

Ending at the end-of-sequence token cannot be switched off the same way everywhere: llama-server, vLLM and SGLang
take `ignore_eos`; llama-cpp-python's server ignores fields it does not know and takes `min_tokens` (it bans the
end-of-sequence token until then); any other server is refused, since a field it silently ignores would leave runs
that stop early while the record says they could not. A run asked to ignore it that still stops fails.

The API key, where a server wants one, comes from the environment variable the config names; its value is never
written or printed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Generator, Iterator, Literal, Optional

import requests
import urllib3

from .. import EdgebenchError
from .base import Backend, Completion, GenerationSettings, ModelRef, Token
from .connections import ConnectionCounter
from .ollama import _ca_bundle, _one_line, redact_url

ServerKind = Literal["auto", "llama-server", "vllm", "sglang", "llama-cpp-python", "ollama", "other"]
# How each kind of server is told to decode exactly max_tokens (None: it cannot be told).
IGNORE_EOS_FIELD = {"llama-server": "ignore_eos", "vllm": "ignore_eos", "sglang": "ignore_eos",
                    "llama-cpp-python": "min_tokens", "ollama": None, "other": None}
PROBE_TIMEOUT_S = 5.0


def base_url(raw: Optional[str]) -> str:
    """The server's root (`http://host:port`, any path prefix kept) from a URL given with or without `/v1`."""
    text = (raw or "").strip()
    if not text:
        raise EdgebenchError("the openai backend needs the server's url (backends.openai.url)")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise EdgebenchError(f"the OpenAI-compatible server's url {redact_url(text)!r} must be http:// or https:// "
                             f"and name a host")
    if "@" in rest.partition("/")[0]:
        raise EdgebenchError("the OpenAI-compatible server's url carries credentials; put the key in an environment "
                             "variable named by api_key_env")
    text = text.rstrip("/")
    return text[: -len("/v1")] if text.endswith("/v1") else text


def _error_text(resp: requests.Response) -> str:
    """The OpenAI error body (`{"error": {"message": ...}}`, `{"error": "..."}`, FastAPI's `{"detail": ...}`), or
    the body as one line."""
    try:
        body = resp.json()
    except ValueError:
        return _one_line(resp.text) or "(empty body)"
    if isinstance(body, dict):
        err = body.get("error", body.get("detail"))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return _one_line(str(err))
    return _one_line(json.dumps(body))


class StreamCut(EdgebenchError):
    """The server's stream ended before `data: [DONE]`."""


class OpenAIClient:
    """The HTTP calls, each failure one line. Requests outside timing are retried on a dropped connection; a timed
    generation never is (its clock has started)."""

    def __init__(self, url: str, timeout_s: float = 300.0, api_key_env: Optional[str] = None, retries: int = 3):
        if not timeout_s or timeout_s <= 0:
            raise EdgebenchError(f"the server's read timeout must be positive, not {timeout_s}")
        self.url = base_url(url)
        self.shown_url = redact_url(self.url)
        self.timeout = (5.0, float(timeout_s))
        self.retries = max(1, int(retries))
        self.connections = ConnectionCounter()
        self.session = requests.Session()
        # No per-request lookups of proxy variables and ~/.netrc inside the timed window; a private CA is read once.
        self.session.trust_env = False
        self.session.verify = _ca_bundle() or True
        self.connections.install(self.session)
        if api_key_env:
            key = os.environ.get(api_key_env, "").strip()
            if not key:
                raise EdgebenchError(f"the environment variable {api_key_env} (api_key_env) is not set or empty")
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, stream: bool = False, retry: bool = True,
                timeout: Optional[tuple[float, float]] = None, **kwargs) -> requests.Response:
        attempts = self.retries if retry else 1
        last: Optional[Exception] = None
        for attempt in range(attempts):
            try:
                return self.session.request(method, self.url + path, stream=stream, timeout=timeout or self.timeout,
                                            **kwargs)
            except requests.Timeout:
                raise EdgebenchError(f"the server at {self.shown_url} did not answer {path} within "
                                     f"{(timeout or self.timeout)[1]:.0f} s (raise timeout_s)") from None
            except requests.exceptions.SSLError:
                raise EdgebenchError(f"TLS with the server at {self.shown_url} failed; a private CA goes in "
                                     f"REQUESTS_CA_BUNDLE or SSL_CERT_FILE") from None
            except requests.ConnectionError as exc:
                last = exc
                if attempt + 1 < attempts:
                    time.sleep(0.5 * 2 ** attempt)
            except requests.RequestException as exc:
                raise EdgebenchError(f"cannot send {path} to the server at {self.shown_url}: "
                                     f"{type(exc).__name__}") from None
        if not retry:
            raise EdgebenchError(f"the connection to the server at {self.shown_url} failed before it answered {path} "
                                 f"({type(last).__name__}); a timed request is not retried")
        raise EdgebenchError(f"cannot reach an OpenAI-compatible server at {self.shown_url} ({type(last).__name__}); "
                             f"start it or point backends.openai.url at a running one")

    def check(self, resp: requests.Response) -> None:
        if resp.status_code in (401, 403):
            raise EdgebenchError(f"the server at {self.shown_url} refused the request ({resp.status_code}): "
                                 f"{_error_text(resp)}; name the variable holding its key in api_key_env")
        if resp.status_code >= 400:
            raise EdgebenchError(f"the server at {self.shown_url} answered {resp.status_code} on "
                                 f"{resp.request.path_url}: {_error_text(resp)}")

    def get_json(self, path: str) -> dict:
        resp = self.request("GET", path)
        self.check(resp)
        try:
            body = resp.json()
        except ValueError:
            raise EdgebenchError(f"the server's answer to {path} is not JSON: {_one_line(resp.text, 120)!r}") from None
        if not isinstance(body, dict):
            raise EdgebenchError(f"the server's answer to {path} is not a JSON object")
        return body

    def probe(self, path: str) -> Optional[dict]:
        """A server-specific endpoint's JSON object, or None where the server has no such endpoint."""
        try:
            resp = self.request("GET", path, retry=False, timeout=(PROBE_TIMEOUT_S, PROBE_TIMEOUT_S))
        except EdgebenchError:
            return None
        try:
            body = resp.json() if resp.status_code == 200 else None
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def model_ids(self) -> list[str]:
        data = self.get_json("/v1/models").get("data")
        if not isinstance(data, list):
            raise EdgebenchError(f"the server at {self.shown_url} answered /v1/models without a `data` list")
        return [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id") is not None]

    def _pieces(self, resp: requests.Response) -> Iterator[bytes]:
        """The body's bytes as they arrive: one HTTP chunk at a time, or whatever one read returns."""
        raw = resp.raw
        if getattr(raw, "chunked", False) and raw.supports_chunked_reads():
            yield from raw.read_chunked(None, decode_content=True)
            return
        while True:
            piece = raw.read1(65536, decode_content=True)
            if not piece:
                return
            yield piece

    def events(self, resp: requests.Response) -> Iterator[str]:
        """The `data:` payloads of a server-sent-events stream, each as soon as its line is complete."""
        pending = b""
        try:
            for piece in self._pieces(resp):
                lines = (pending + piece).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    line = line.rstrip(b"\r")
                    if line.startswith(b"data:"):
                        yield line[5:].strip().decode("utf-8", "replace")
            if pending.strip().startswith(b"data:"):
                yield pending.strip()[5:].strip().decode("utf-8", "replace")
        except (urllib3.exceptions.ReadTimeoutError, socket.timeout):
            raise EdgebenchError(f"the server at {self.shown_url} sent nothing for {self.timeout[1]:.0f} s during "
                                 f"a generation (raise timeout_s)") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StreamCut(f"the connection to the server at {self.shown_url} dropped during a generation "
                            f"({type(exc).__name__})") from None

    def completions_stream(self, body: dict) -> Iterator[dict]:
        """POST /v1/completions (stream) and yield its JSON chunks up to `[DONE]`; fails if the stream ends before
        it. Never retried. The body is read to its end after `[DONE]`: a response read whole hands its connection
        back to the pool, and the next run does not pay for a new TCP connection inside its TTFT."""
        resp = self.request("POST", "/v1/completions", stream=True, retry=False, json=body)
        try:
            self.check(resp)
            chunks = 0
            done = False
            for data in self.events(resp):
                if done or data == "[DONE]":
                    done = True
                    continue
                try:
                    obj = json.loads(data)
                except ValueError:
                    raise EdgebenchError(f"the server sent an event that is not JSON after {chunks} chunks: "
                                         f"{_one_line(data, 120)!r}") from None
                if not isinstance(obj, dict):
                    raise EdgebenchError(f"the server sent an event that is not a JSON object after {chunks} chunks")
                if obj.get("error") is not None:
                    err = obj["error"]
                    raise EdgebenchError(f"the server reported an error during the generation: "
                                         f"{_one_line(str(err.get('message', err) if isinstance(err, dict) else err))}")
                chunks += 1
                yield obj
            if done:
                return
            raise StreamCut(f"the server at {self.shown_url} ended the stream after {chunks} chunks without "
                            f"`data: [DONE]`")
        finally:
            resp.close()


def server_kind(props: Optional[dict], version: Optional[dict], openapi: Optional[dict],
                sglang_info: Optional[dict] = None, ollama_version: Optional[dict] = None) -> str:
    """Which server answers, from the endpoints only it has: llama-server's /props, SGLang's /get_server_info,
    vLLM's /version, Ollama's /api/version, llama-cpp-python's API title; anything else is `other`."""
    if props and ("default_generation_settings" in props or "build_info" in props):
        return "llama-server"
    if sglang_info:
        return "sglang"
    if version and "version" in version:
        return "vllm"
    if ollama_version and "version" in ollama_version:
        return "ollama"
    title = str(((openapi or {}).get("info") or {}).get("title", ""))
    if "llama.cpp Python" in title:
        return "llama-cpp-python"
    return "other"


def _int_or_none(value) -> Optional[int]:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, url: Optional[str] = None, model: Optional[str] = None, api_key_env: Optional[str] = None,
                 server: ServerKind = "auto", timeout_s: float = 300.0, retries: int = 3):
        self.client = OpenAIClient(url or "", timeout_s=timeout_s, api_key_env=api_key_env, retries=retries)
        self.served_name = model
        self.server = server
        self.model: Optional[str] = None
        self.provenance: dict = {}
        self._kind = "other" if server == "auto" else server  # found at load() when auto

    def load(self, model: ModelRef, settings: GenerationSettings) -> None:
        """Check that the server serves the model and read what it says about itself; the server loads the model."""
        name = self.served_name or model.ollama_tag or model.name
        served = self.client.model_ids()
        if name not in served:
            raise EdgebenchError(f"the server at {self.client.shown_url} serves no model {name!r} (it serves: "
                                 f"{', '.join(served) or 'none'}); set backends.openai.model to one of them")
        self.model = name
        probes = {path: self.client.probe(path)
                  for path in ("/props", "/get_server_info", "/version", "/api/version", "/openapi.json")}
        props, openapi = probes["/props"], probes["/openapi.json"]
        found = server_kind(props, probes["/version"], openapi, probes["/get_server_info"], probes["/api/version"])
        kind = found if self.server == "auto" else self.server
        info = (openapi or {}).get("info") or {}
        # A FastAPI app's own version says nothing about an unknown server: only a known kind's is kept.
        version = ((probes["/version"] or {}).get("version") or (probes["/api/version"] or {}).get("version")
                   or (props or {}).get("build_info") or (info.get("version") if found != "other" else None))
        self.provenance = {"server": kind, "version": version, "build": (props or {}).get("build_info"),
                           "title": info.get("title")}
        self._kind = kind

    def request_body(self, prompt: str, settings: GenerationSettings) -> dict:
        body = {"model": self.model, "prompt": prompt, "max_tokens": settings.max_new_tokens,
                "temperature": settings.temperature, "seed": settings.seed, "stream": True,
                "stream_options": {"include_usage": True}, "presence_penalty": 0.0, "frequency_penalty": 0.0}
        if self._kind == "llama-cpp-python":
            body["repeat_penalty"] = 1.0  # its server's default is 1.1, which changes even greedy decoding
        if settings.ignore_eos:
            field = IGNORE_EOS_FIELD.get(self._kind)
            if field is None:
                raise EdgebenchError(f"the server at {self.client.shown_url} ({self._kind}) has no known way to ignore "
                                     f"the end-of-sequence token; set ignore_eos: false for the openai backend, or "
                                     f"name the server (server: llama-server, vllm, sglang or llama-cpp-python)")
            body[field] = True if field == "ignore_eos" else settings.max_new_tokens
        return body

    def generate(self, prompt: str, settings: GenerationSettings) -> Generator[Token, None, Completion]:
        body = self.request_body(prompt, settings)
        opened = self.client.connections.count
        chunks = 0
        finish = None
        usage: Optional[dict] = None
        timings: Optional[dict] = None
        for obj in self.client.completions_stream(body):
            usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else usage
            timings = obj.get("timings") if isinstance(obj.get("timings"), dict) else timings
            for choice in obj.get("choices") or []:
                text = choice.get("text")
                if text is not None and not isinstance(text, str):
                    raise EdgebenchError(f"the server sent a choice whose text is {json.dumps(text)}, not text")
                if text:
                    chunks += 1
                    yield Token(text)
                finish = choice.get("finish_reason") or finish
        if finish is None:
            raise StreamCut(f"the server's stream ended with [DONE] but no finish_reason after {chunks} chunks")
        if settings.ignore_eos and finish == "stop":
            raise EdgebenchError(f"the server stopped at the end-of-sequence token after {chunks} chunks although "
                                 f"asked to ignore it ({self._kind}); it does not honour "
                                 f"{IGNORE_EOS_FIELD.get(self._kind)}")
        usage, timings = usage or {}, timings or {}
        prompt_count = _int_or_none(usage.get("prompt_tokens"))
        if prompt_count is None:
            prompt_count = _int_or_none(timings.get("prompt_n"))
        gen_count = _int_or_none(usage.get("completion_tokens"))
        if gen_count is None:
            gen_count = _int_or_none(timings.get("predicted_n"))
        engine = {
            # As sent: the counts of `usage` (else llama-server's `timings`), its durations from ms to ns.
            "engine_prompt_eval_count": prompt_count,
            "engine_eval_count": gen_count,
            "engine_prompt_eval_duration": (int(timings["prompt_ms"] * 1e6)
                                            if isinstance(timings.get("prompt_ms"), (int, float)) else None),
            "engine_eval_duration": (int(timings["predicted_ms"] * 1e6)
                                     if isinstance(timings.get("predicted_ms"), (int, float)) else None),
            "engine_stream_chunks": chunks,
            "new_connection": self.client.connections.count > opened,
            "engine_usage": usage or None,
            "engine_timings": timings or None,
        }
        return Completion(prompt_tokens=prompt_count, generated_tokens=gen_count if gen_count is not None else chunks,
                          done_reason={"stop": "stop", "length": "length"}.get(finish, str(finish)), engine=engine)

    def versions(self) -> dict:
        p = self.provenance
        build = {k: v for k, v in (("url", self.client.shown_url), ("model", self.model), ("build", p.get("build")),
                                   ("title", p.get("title"))) if v is not None}
        return {"engine_name": f"openai:{p.get('server', 'unknown')}", "engine_version": p.get("version"),
                "engine_build": json.dumps(build, sort_keys=True, ensure_ascii=False)}

    def device(self) -> str:
        return "unknown"  # the server's; it does not say where it runs the model
