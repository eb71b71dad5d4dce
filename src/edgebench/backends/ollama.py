"""Ollama over its documented REST API (docs/api.md of ollama/ollama).

Every request is raw (`raw: true`): the harness has already applied the prompt policy, so Ollama must not wrap the
text in its own template. Durations in Ollama's answers are nanoseconds and are stored as sent.
Ollama has no way to ignore the end-of-sequence token (`num_predict` is an upper bound), so a run may stop early;
its `done_reason` and `eval_count` are recorded on every run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Generator, Iterator, Optional

import requests
import urllib3

from .. import EdgebenchError
from .base import Backend, Completion, GenerationSettings, ModelRef, Token
from .connections import ConnectionCounter

DEFAULT_PORT = "11434"
# How long Ollama keeps the model loaded between requests while a model's runs go on.
HOLD_KEEP_ALIVE = "30m"
SERVER_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                 "eval_count", "eval_duration")
# Ollama up to 0.3x aborts a generation whose runner sent this many events in a row with the same whitespace-trimmed
# text (llm/server.go: `tokenRepeat > 30`), and answers 200 with a stream that simply stops: no `done`, no `error`
# (ollama/ollama PR 18374 turned it into an error). Whitespace-only tokens all count as the same text.
OLLAMA_REPEAT_ABORT = 31


def parse_url(raw: Optional[str]) -> tuple[str, Optional[tuple[str, str]]]:
    """An Ollama address as Ollama's own OLLAMA_HOST parser reads it, and the user info it carried (if any).

    No scheme means http on port 11434 (`localhost:11434`, `127.0.0.1`); `http://host` means port 80 and
    `https://host` port 443; an empty host is 127.0.0.1. The returned URL never carries user info.
    """
    text = (raw or "").strip().strip("\"'").strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, default_port = "http", text, DEFAULT_PORT
    else:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise EdgebenchError(f"the Ollama address {redact_url(text)!r} must be http:// or https://")
        default_port = "443" if scheme == "https" else "80"
    hostport, slash, path = rest.partition("/")
    credentials = None
    if "@" in hostport:
        userinfo, _, hostport = hostport.rpartition("@")
        user, _, password = userinfo.partition(":")
        credentials = (urllib.parse.unquote(user), urllib.parse.unquote(password))
    host, port = _split_host_port(hostport)
    port = port or default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgebenchError(f"the Ollama address {redact_url(text)!r} has an invalid port {port!r}")
    host = host or "127.0.0.1"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    path = ("/" + path.rstrip("/")) if slash and path.strip("/") else ""
    return f"{scheme}://{host}:{port}{path}", credentials


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        return host, after[1:] if after.startswith(":") else ""
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport, ""  # a bare name, or a bare IPv6 address


def redact_url(text: str) -> str:
    """Any URL's user info removed (`http://alice:s3cret@host` -> `http://host`), for messages and records."""
    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@", r"\1", text)


def default_url() -> str:
    return parse_url(os.environ.get("OLLAMA_HOST", ""))[0]


def _one_line(text: str, limit: int = 200) -> str:
    """An error body as one short line: an HTML error page's tags and line breaks removed."""
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _error_text(resp: requests.Response) -> str:
    """Ollama's `{"error": ...}` body, or the text of an answer that is not JSON (an HTML page of a proxy)."""
    try:
        body = resp.json()
        if isinstance(body, dict) and body.get("error") is not None:
            return _one_line(str(body["error"]))
    except ValueError:
        pass
    return _one_line(resp.text) or "(empty body)"


def _ca_bundle() -> Optional[str]:
    """The CA bundle the user named, read once: REQUESTS_CA_BUNDLE, then SSL_CERT_FILE, then CURL_CA_BUNDLE."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name, "").strip()
        if value:
            if not os.path.exists(value):
                raise EdgebenchError(f"{name} names {value}, which does not exist")
            return value
    return None


class StreamStats:
    """What a streamed answer delivered so far: the words of an error about a stream that went wrong."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.chunks = 0
        self.bytes = 0
        self.last_line = b""
        self.last_newline = True
        self.texts: list[str] = []

    def describe(self) -> str:
        ending = "with" if self.last_newline else "without"
        last = _one_line(self.last_line.decode("utf-8", "replace"), 120)
        return (f"{self.chunks} chunks, {self.bytes} bytes in {time.perf_counter() - self.t0:.1f} s; the last line "
                f"({len(self.last_line)} bytes, {ending} a newline) was {last!r}")

    def repeated_tail(self) -> bool:
        tail = [t.strip() for t in self.texts[-OLLAMA_REPEAT_ABORT:]]
        return len(tail) == OLLAMA_REPEAT_ABORT and len(set(tail)) == 1


class OllamaClient:
    """The HTTP calls, with errors a user can act on.

    Requests outside timing (version, show, ps, load, unload, pull) are retried on a dropped connection; a timed
    generation never is: its clock has started, and a second attempt would time the first one's failure too.
    """

    def __init__(self, url: Optional[str] = None, timeout_s: float = 300.0, retries: int = 3,
                 backoff_s: float = 0.5):
        if not timeout_s or timeout_s <= 0:
            raise EdgebenchError(f"the Ollama read timeout must be positive, not {timeout_s}")
        self.url, credentials = parse_url(url or os.environ.get("OLLAMA_HOST", ""))
        self.timeout = (5.0, float(timeout_s))  # (connect, read)
        self.retries = max(1, int(retries))
        self.backoff_s = backoff_s
        self.session = requests.Session()
        # No per-request lookups of proxy variables and ~/.netrc: they add milliseconds to every timed request.
        # What those lookups would have found is read once here instead: credentials and a private CA bundle.
        self.session.trust_env = False
        self.session.verify = _ca_bundle() or True
        self.session.auth = credentials or self._netrc_auth()
        self.connections = ConnectionCounter()
        self.connections.install(self.session)
        token = os.environ.get("OLLAMA_API_KEY", "").strip()
        if token and self.session.auth is None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _netrc_auth(self) -> Optional[tuple[str, str]]:
        try:
            return requests.utils.get_netrc_auth(self.url)
        except Exception:  # an unreadable netrc is no reason to stop; the server will say if it wants credentials
            return None

    def connections_opened(self) -> int:
        """How many TCP connections this client has opened so far."""
        return self.connections.count

    def _request(self, method: str, path: str, stream: bool = False, retry: bool = True,
                 **kwargs) -> requests.Response:
        attempts = self.retries if retry else 1
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                return self.session.request(method, self.url + path, stream=stream, timeout=self.timeout, **kwargs)
            except requests.Timeout:
                raise EdgebenchError(f"Ollama at {self.url} did not answer {path} within {self.timeout[1]:.0f} s "
                                     f"(raise the read timeout with --ollama-timeout)") from None
            except requests.exceptions.SSLError as exc:
                reason = _one_line(redact_url(str(exc.args[0])) if exc.args else "", 120)
                raise EdgebenchError(f"TLS with Ollama at {self.url} failed ({reason}); a private CA goes in "
                                     f"REQUESTS_CA_BUNDLE or SSL_CERT_FILE") from None
            except requests.ConnectionError as exc:
                last = exc
                if attempt + 1 < attempts:
                    time.sleep(self.backoff_s * 2 ** attempt)
            except requests.RequestException as exc:
                raise EdgebenchError(f"cannot send {path} to Ollama at {self.url}: {type(exc).__name__}") from None
        if not retry:
            raise EdgebenchError(f"the connection to Ollama at {self.url} failed before it answered {path} "
                                 f"({type(last).__name__}); a timed request is not retried") from None
        raise EdgebenchError(
            f"cannot reach Ollama at {self.url} ({type(last).__name__}); start it with `ollama serve` "
            f"or point --ollama-url / OLLAMA_HOST at a running server") from None

    def _check(self, resp: requests.Response, model: Optional[str] = None) -> None:
        if resp.status_code == 404 and model is not None:
            raise EdgebenchError(f"Ollama has no model {model!r}; pull it with `ollama pull {model}` "
                                 f"(or `edgebench pull {model}`)")
        if resp.status_code in (401, 403):
            raise EdgebenchError(f"Ollama at {self.url} refused the request ({resp.status_code}): "
                                 f"{_error_text(resp)}; credentials go in ~/.netrc or OLLAMA_API_KEY, not the URL")
        if resp.status_code >= 400:
            raise EdgebenchError(f"Ollama answered {resp.status_code} on {resp.request.path_url}: "
                                 f"{_error_text(resp)}")

    def _json(self, resp: requests.Response, what: str) -> dict:
        try:
            body = resp.json()
        except ValueError:
            raise EdgebenchError(f"Ollama's answer to {what} is not JSON: {_one_line(resp.text, 120)!r}") from None
        if not isinstance(body, dict):
            raise EdgebenchError(f"Ollama's answer to {what} is not a JSON object")
        return body

    def version(self) -> str:
        resp = self._request("GET", "/api/version")
        self._check(resp)
        return str(self._json(resp, "/api/version").get("version", "unknown"))

    def show(self, model: str) -> dict:
        resp = self._request("POST", "/api/show", json={"model": model})
        self._check(resp, model)
        return self._json(resp, "/api/show")

    def ps(self) -> list[dict]:
        resp = self._request("GET", "/api/ps")
        self._check(resp)
        return self._json(resp, "/api/ps").get("models") or []

    def load(self, model: str, keep_alive: str = HOLD_KEEP_ALIVE, options: Optional[dict] = None) -> None:
        """An empty prompt only loads the model (documented). Loading with the runs' options (num_ctx above all)
        makes Ollama load it as the runs need it; without them it loads its default context and the first run
        reloads the model."""
        body = {"model": model, "keep_alive": keep_alive, "stream": False}
        if options:
            body["options"] = options
        resp = self._request("POST", "/api/generate", json=body)
        self._check(resp, model)

    def unload(self, model: str) -> None:
        resp = self._request("POST", "/api/generate", json={"model": model, "keep_alive": 0, "stream": False})
        self._check(resp, model)

    def _raw_pieces(self, resp: requests.Response) -> Iterator[bytes]:
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

    def ndjson(self, resp: requests.Response, stats: StreamStats, what: str) -> Iterator[dict]:
        """The NDJSON objects of a streamed answer as each line completes; a last line without its newline counts.

        Read from the raw bytes, not `iter_lines`, to know exactly what arrived when a stream goes wrong.
        """
        pending = b""
        try:
            for piece in self._raw_pieces(resp):
                stats.bytes += len(piece)
                lines = (pending + piece).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line.strip():
                        yield self._parse_line(line, stats, what, newline=True)
            if pending.strip():
                yield self._parse_line(pending, stats, what, newline=False)
        except (urllib3.exceptions.ReadTimeoutError, socket.timeout):
            raise EdgebenchError(f"Ollama at {self.url} stopped sending during {what} for {self.timeout[1]:.0f} s "
                                 f"({stats.describe()}); raise the read timeout with --ollama-timeout") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise EdgebenchError(f"the connection to Ollama at {self.url} dropped during {what} "
                                 f"({type(exc).__name__}; {stats.describe()})") from None

    def _parse_line(self, line: bytes, stats: StreamStats, what: str, newline: bool) -> dict:
        stats.chunks += 1
        stats.last_line, stats.last_newline = line, newline
        try:
            obj = json.loads(line)
        except ValueError:
            raise EdgebenchError(f"Ollama sent a line that is not JSON during {what} ({stats.describe()})") from None
        if not isinstance(obj, dict):
            raise EdgebenchError(f"Ollama sent a JSON line that is not an object during {what} ({stats.describe()})")
        if obj.get("error") is not None:
            raise EdgebenchError(f"Ollama error during {what}: {_one_line(str(obj['error']))}")
        return obj

    def generate_stream(self, body: dict, stats: Optional[StreamStats] = None) -> Iterator[dict]:
        """POST /api/generate with stream=true and yield the NDJSON chunks as they arrive. Never retried."""
        stats = stats or StreamStats()
        resp = self._request("POST", "/api/generate", stream=True, retry=False, json=body)
        try:
            self._check(resp, body.get("model"))
            yield from self.ndjson(resp, stats, "generation")
        finally:
            resp.close()

    def pull(self, model: str, progress: bool = True) -> None:
        """POST /api/pull with a progress bar over the layers' bytes."""
        from tqdm import tqdm

        resp = self._request("POST", "/api/pull", stream=True, json={"model": model, "stream": True})
        if resp.status_code >= 400:
            raise EdgebenchError(f"Ollama could not pull {model!r}: {_error_text(resp)} (check the model's name "
                                 f"and tag)")
        bars: dict[str, tqdm] = {}
        try:
            for msg in self.ndjson(resp, StreamStats(), f"the pull of {model}"):
                digest, total = msg.get("digest"), msg.get("total")
                if digest and total and progress:
                    bar = bars.get(digest)
                    if bar is None:
                        bar = bars[digest] = tqdm(total=total, unit="B", unit_scale=True,
                                                  desc=f"{model} {str(digest)[7:19]}", leave=False)
                    bar.n = msg.get("completed") or 0  # `completed` can be absent early
                    bar.refresh()
                if msg.get("status") == "success":
                    return
        finally:
            for bar in bars.values():
                bar.close()
            resp.close()
        raise EdgebenchError(f"pulling {model}: the stream ended without `success`")


def models_dir() -> Path:
    """Where Ollama keeps manifests and blobs: $OLLAMA_MODELS, the user's, or a Linux service install's."""
    env = os.environ.get("OLLAMA_MODELS")
    if env:
        return Path(env)
    for candidate in (Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")):
        if (candidate / "manifests").is_dir():
            return candidate
    return Path.home() / ".ollama" / "models"


def split_tag(tag: str) -> tuple[str, str, str]:
    """`qwen2.5:0.5b` -> (registry.ollama.ai, library/qwen2.5, 0.5b); `user/m` -> (.., user/m, latest)."""
    name, _, version = tag.partition(":")
    host = "registry.ollama.ai"
    parts = name.split("/")
    if len(parts) == 3:
        host, name = parts[0], "/".join(parts[1:])
    elif len(parts) == 1:
        name = "library/" + name
    return host, name, version or "latest"


def locate_blob(tag: str, root: Optional[Path] = None) -> tuple[Path, str]:
    """The GGUF file behind an Ollama tag and its sha256, read from the tag's manifest."""
    root = root or models_dir()
    host, name, version = split_tag(tag)
    manifest = root / "manifests" / host / name / version
    if not manifest.is_file():
        raise EdgebenchError(f"no Ollama manifest for {tag} at {manifest}; pull it with `ollama pull {tag}` "
                             f"or set OLLAMA_MODELS to Ollama's model directory")
    try:
        layers = json.loads(manifest.read_text())["layers"]
    except (ValueError, KeyError):
        raise EdgebenchError(f"the Ollama manifest {manifest} is not valid JSON with `layers`") from None
    for layer in layers:
        if layer.get("mediaType") == "application/vnd.ollama.image.model":
            digest = layer["digest"]
            blob = root / "blobs" / digest.replace(":", "-")
            if not blob.is_file():
                raise EdgebenchError(f"the manifest of {tag} names {blob}, which is missing")
            return blob, digest.split(":", 1)[1]
    raise EdgebenchError(f"the manifest of {tag} has no model layer")


# The server settings that change what a long context costs (flash attention, KV cache precision, parallel slots,
# which multiply the context a runner allocates). Ollama's API reports none of them: they are read from the server's
# own environment where this machine runs it and this user may read it, else recorded as "unknown".
SERVER_SETTINGS = {"OLLAMA_FLASH_ATTENTION": "ollama_flash_attention", "OLLAMA_KV_CACHE_TYPE": "ollama_kv_cache_type",
                   "OLLAMA_NUM_PARALLEL": "ollama_num_parallel"}
UNKNOWN = "unknown"
UNSET = "unset"  # the server's environment was read and does not set it: the server's default applies
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def server_process(url: str):
    """The process on this machine listening on the URL's port, or None: another machine, or not visible to this
    user (a service run as another user hides its sockets and environment)."""
    import psutil

    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if not (host in LOOPBACK or host.startswith("127.")) or parts.port is None:
        return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == parts.port and conn.pid:
                return psutil.Process(conn.pid)
    except psutil.Error:
        return None
    return None


def server_settings(process) -> dict:
    """OLLAMA_FLASH_ATTENTION, OLLAMA_KV_CACHE_TYPE and OLLAMA_NUM_PARALLEL as the server process has them."""
    import psutil

    try:
        env = process.environ() if process is not None else None
    except psutil.Error:
        env = None
    if env is None:
        return {column: UNKNOWN for column in SERVER_SETTINGS.values()}
    return {column: env.get(name, UNSET) for name, column in SERVER_SETTINGS.items()}


def runner_command(process, model_file: Optional[str] = None) -> str:
    """The command line of the runner that serves the model: the server's child process whose arguments name the
    model's GGUF (or, without it, the only child there is), as read; "unknown" where it cannot be read."""
    import psutil

    if process is None:
        return UNKNOWN
    try:
        commands = [c.cmdline() for c in process.children(recursive=True)]
    except psutil.Error:
        return UNKNOWN
    commands = [c for c in commands if c]
    if model_file:
        named = [c for c in commands if any(model_file in arg for arg in c)]
        commands = named or commands
    return " ".join(commands[0]) if len(commands) == 1 else UNKNOWN


def run_options(settings: GenerationSettings) -> dict:
    """The options of every timed request; the load request sends the same, so Ollama never reloads between."""
    return {"num_predict": settings.max_new_tokens, "temperature": settings.temperature, "seed": settings.seed,
            "num_ctx": settings.num_ctx}


class OllamaBackend(Backend):
    name = "ollama"
    # The model runs in the Ollama server's processes: the benchmark process's host RSS is not its memory.
    runs_in_process = False

    def __init__(self, url: Optional[str] = None, timeout_s: float = 300.0, retries: int = 3):
        self.client = OllamaClient(url, timeout_s=timeout_s, retries=retries)
        self.tag: Optional[str] = None
        self._details: dict = {}

    def load(self, model: ModelRef, settings: GenerationSettings) -> None:
        if not model.ollama_tag:
            raise EdgebenchError(f"the ollama backend needs an Ollama tag for model {model.name!r}")
        self.tag = model.ollama_tag
        self._version = self.client.version()
        shown = self.client.show(self.tag)
        self._details = shown.get("details") or {}
        # Without the GGUF at hand (a remote server), what the server says about the model fills the record.
        facts = shown.get("model_info") or {}
        for key, value in (("quantization", self._details.get("quantization_level")),
                           ("parameter_count", facts.get("general.parameter_count")),
                           ("architecture", facts.get("general.architecture"))):
            if model.info.get(key) is None and value is not None:
                model.info[key] = value
        self.client.load(self.tag, options=run_options(settings))
        self._server = self._server_facts(model)
        try:
            self._check_context(settings.num_ctx)
        except EdgebenchError:
            self.unload()  # loaded, but not as configured: it must not hold the GPU for the next engine
            raise

    def _server_facts(self, model: ModelRef) -> dict:
        """The server's settings and the runner serving the model, read once the model is loaded (the runner is a
        child process that exists only then)."""
        process = server_process(self.client.url)
        blob = model.info.get("gguf_sha256") or (str(model.gguf_path) if model.gguf_path else None)
        facts = server_settings(process)
        facts["ollama_runner"] = runner_command(process, blob)
        facts["ollama_settings_source"] = (f"the environment of the server process (pid {process.pid})" if
                                           process is not None and facts["ollama_flash_attention"] != UNKNOWN
                                           else "unknown: the server's process is not readable from here")
        return facts

    def _loaded(self) -> list[dict]:
        return [m for m in self.client.ps() if self.tag in (m.get("name"), m.get("model"))]

    def _check_context(self, num_ctx: int) -> None:
        """The model must run with the configured context: another one changes memory use and speed."""
        loaded = self._loaded()
        found = loaded[0].get("context_length") if loaded else None
        if found is not None and int(found) != int(num_ctx):
            raise EdgebenchError(
                f"Ollama loaded {self.tag} with a context of {found} tokens, not the configured num_ctx {num_ctx} "
                f"(Ollama caps it at the model's training context; OLLAMA_CONTEXT_LENGTH and OLLAMA_NUM_PARALLEL "
                f"change it too); set the context to {found} or run Ollama so that it honours {num_ctx}")

    def generate(self, prompt: str, settings: GenerationSettings) -> Generator[Token, None, Completion]:
        if settings.ignore_eos:
            raise EdgebenchError("Ollama cannot ignore the end-of-sequence token (num_predict is only an upper "
                                 "bound); set ignore_eos: false for the ollama backend")
        body = {"model": self.tag, "prompt": prompt, "raw": True, "stream": True, "keep_alive": HOLD_KEEP_ALIVE,
                "options": run_options(settings)}
        final: dict = {}
        chunks = 0
        stats = StreamStats()
        opened = self.client.connections_opened()
        # The stream is read to its end (no break on `done`): a fully read response hands its connection back to
        # the pool, and the next run does not pay for a new TCP connection inside its TTFT.
        for chunk in self.client.generate_stream(body, stats):
            text = chunk.get("response", "")
            if text is None or not isinstance(text, str):
                raise EdgebenchError(f"Ollama sent a chunk whose `response` is {json.dumps(text)}, not text "
                                     f"({stats.describe()})")
            stats.texts.append(text)
            if chunk.get("done"):
                final = chunk
                # The last chunk normally carries no text; if it does, it still arrived now.
                if text:
                    chunks += 1
                    yield Token(text)
                continue
            chunks += 1
            yield Token(text)
        if not final:
            raise EdgebenchError(self._no_done_message(stats))
        engine = {f"engine_{k}": final.get(k) for k in SERVER_FIELDS}
        engine["engine_stream_chunks"] = chunks
        # A new TCP connection inside the timed window (the pooled one had gone) adds its set-up to this run's TTFT.
        engine["new_connection"] = self.client.connections_opened() > opened
        eval_count = final.get("eval_count")
        return Completion(prompt_tokens=final.get("prompt_eval_count"),
                          generated_tokens=int(eval_count if isinstance(eval_count, int) else chunks),
                          done_reason=str(final.get("done_reason") or "unknown"), engine=engine)

    @staticmethod
    def _no_done_message(stats: StreamStats) -> str:
        message = f"Ollama's stream ended without a final `done: true` chunk ({stats.describe()})"
        if stats.repeated_tail():
            message += (f"; its last {OLLAMA_REPEAT_ABORT} chunks carried the same text, which is how Ollama up to "
                        f"0.3x ends a generation it aborts for repeating a token (no `done`, no error): the model "
                        f"loops on this prompt; try --prompt-format chat, another prompt or fewer tokens")
        return message

    def unload(self) -> None:
        if self.tag:
            try:
                self.client.unload(self.tag)
            except EdgebenchError:
                pass  # the server went away: nothing is held any more
            self.tag = None

    def versions(self) -> dict:
        return {"engine_name": "ollama", "engine_version": getattr(self, "_version", None),
                **getattr(self, "_server", {})}

    def device(self) -> str:
        try:
            loaded = self._loaded()
        except EdgebenchError:
            return "unknown"
        if loaded and loaded[0].get("size_vram"):
            return "cuda"
        return "cpu" if loaded else "unknown"
