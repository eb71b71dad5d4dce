"""Ollama over its documented REST API (docs/api.md of ollama/ollama).

Every request is raw (`raw: true`): the harness has already applied the prompt policy, so Ollama must not wrap the
text in its own template. Durations in Ollama's answers are nanoseconds and are stored as sent.
Ollama has no way to ignore the end-of-sequence token (`num_predict` is an upper bound), so a run may stop early;
its `done_reason` and `eval_count` are recorded on every run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Generator, Iterator, Optional

import requests

from .. import EdgebenchError
from .base import Backend, Completion, GenerationSettings, ModelRef, Token

DEFAULT_URL = "http://localhost:11434"
# How long Ollama keeps the model loaded between requests while a model's runs go on.
HOLD_KEEP_ALIVE = "30m"
SERVER_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                 "eval_count", "eval_duration")


def default_url() -> str:
    host = os.environ.get("OLLAMA_HOST", "").strip()
    if not host:
        return DEFAULT_URL
    if "://" not in host:
        host = "http://" + host
    if host.count(":") == 1:  # scheme only, no port
        host += ":11434"
    return host.rstrip("/")


def _error_text(resp: requests.Response) -> str:
    """Ollama's `{"error": ...}` body, or the raw text of an answer that is not JSON."""
    try:
        return str(resp.json().get("error", resp.text)).strip()
    except ValueError:
        return resp.text.strip()


class OllamaClient:
    """The HTTP calls, with retries on dropped connections and errors a user can act on."""

    def __init__(self, url: Optional[str] = None, timeout_s: float = 300.0, retries: int = 3,
                 backoff_s: float = 0.5):
        self.url = (url or default_url()).rstrip("/")
        self.timeout = (5.0, timeout_s)  # (connect, read)
        self.retries = retries
        self.backoff_s = backoff_s
        self.session = requests.Session()
        # No per-request lookups of proxy variables and ~/.netrc: they add milliseconds to every timed request.
        self.session.trust_env = False

    def _request(self, method: str, path: str, stream: bool = False, **kwargs) -> requests.Response:
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                resp = self.session.request(method, self.url + path, stream=stream, timeout=self.timeout, **kwargs)
            except requests.ConnectionError as exc:
                last = exc
                time.sleep(self.backoff_s * 2 ** attempt)
                continue
            except requests.Timeout:
                raise EdgebenchError(f"Ollama at {self.url} did not answer {path} within {self.timeout[1]:.0f} s") \
                    from None
            return resp
        raise EdgebenchError(
            f"cannot reach Ollama at {self.url} ({type(last).__name__}); start it with `ollama serve` "
            f"or point --ollama-url / OLLAMA_HOST at a running server") from None

    def _check(self, resp: requests.Response, model: Optional[str] = None) -> None:
        if resp.status_code == 404 and model is not None:
            raise EdgebenchError(f"Ollama has no model {model!r}; pull it with `ollama pull {model}` "
                                 f"(or `edgebench pull {model}`)")
        if resp.status_code >= 400:
            raise EdgebenchError(f"Ollama answered {resp.status_code} on {resp.request.path_url}: "
                                 f"{_error_text(resp)}")

    def version(self) -> str:
        resp = self._request("GET", "/api/version")
        self._check(resp)
        return resp.json().get("version", "unknown")

    def show(self, model: str) -> dict:
        resp = self._request("POST", "/api/show", json={"model": model})
        self._check(resp, model)
        return resp.json()

    def ps(self) -> list[dict]:
        resp = self._request("GET", "/api/ps")
        self._check(resp)
        return resp.json().get("models", [])

    def load(self, model: str, keep_alive: str = HOLD_KEEP_ALIVE) -> None:
        """An empty prompt only loads the model (documented)."""
        resp = self._request("POST", "/api/generate", json={"model": model, "keep_alive": keep_alive, "stream": False})
        self._check(resp, model)

    def unload(self, model: str) -> None:
        resp = self._request("POST", "/api/generate", json={"model": model, "keep_alive": 0, "stream": False})
        self._check(resp, model)

    def generate_stream(self, body: dict) -> Iterator[dict]:
        """POST /api/generate with stream=true and yield the NDJSON chunks as they arrive."""
        resp = self._request("POST", "/api/generate", stream=True, json=body)
        self._check(resp, body.get("model"))
        try:
            for line in resp.iter_lines():
                if not line:
                    continue
                chunk = json.loads(line)
                if "error" in chunk:
                    raise EdgebenchError(f"Ollama error during generation: {chunk['error']}")
                yield chunk
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if "timed out" in str(exc).lower():  # urllib3's read timeout surfaces as a ConnectionError here
                raise EdgebenchError(f"Ollama at {self.url} stopped sending tokens for {self.timeout[1]:.0f} s") \
                    from None
            raise EdgebenchError(f"the connection to Ollama at {self.url} dropped during generation: "
                                 f"{type(exc).__name__}") from None
        except requests.Timeout:
            raise EdgebenchError(f"Ollama at {self.url} stopped sending tokens for {self.timeout[1]:.0f} s") from None
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
            for line in resp.iter_lines():
                if not line:
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    raise EdgebenchError(f"pulling {model} failed: {msg['error']}")
                digest, total = msg.get("digest"), msg.get("total")
                if digest and total and progress:
                    bar = bars.get(digest)
                    if bar is None:
                        bar = bars[digest] = tqdm(total=total, unit="B", unit_scale=True,
                                                  desc=f"{model} {digest[7:19]}", leave=False)
                    bar.n = msg.get("completed", 0)  # `completed` can be absent early
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


class OllamaBackend(Backend):
    name = "ollama"

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
        self._details = shown.get("details", {})
        # Without the GGUF at hand (a remote server), what the server says about the model fills the record.
        facts = shown.get("model_info", {})
        for key, value in (("quantization", self._details.get("quantization_level")),
                           ("parameter_count", facts.get("general.parameter_count")),
                           ("architecture", facts.get("general.architecture"))):
            if model.info.get(key) is None and value is not None:
                model.info[key] = value
        self.client.load(self.tag)

    def generate(self, prompt: str, settings: GenerationSettings) -> Generator[Token, None, Completion]:
        if settings.ignore_eos:
            raise EdgebenchError("Ollama cannot ignore the end-of-sequence token (num_predict is only an upper "
                                 "bound); set ignore_eos: false for the ollama backend")
        body = {
            "model": self.tag, "prompt": prompt, "raw": True, "stream": True, "keep_alive": HOLD_KEEP_ALIVE,
            "options": {"num_predict": settings.max_new_tokens, "temperature": settings.temperature,
                        "seed": settings.seed, "num_ctx": settings.num_ctx},
        }
        final: dict = {}
        chunks = 0
        # The stream is read to its end (no break on `done`): a fully read response hands its connection back to
        # the pool, and the next run does not pay for a new TCP connection inside its TTFT.
        for chunk in self.client.generate_stream(body):
            if chunk.get("done"):
                final = chunk
                # The last chunk normally carries no text; if it does, it still arrived now.
                if chunk.get("response"):
                    chunks += 1
                    yield Token(chunk["response"])
                continue
            chunks += 1
            yield Token(chunk.get("response", ""))
        if not final:
            raise EdgebenchError("Ollama's stream ended without a final `done: true` chunk")
        engine = {f"engine_{k}": final.get(k) for k in SERVER_FIELDS}
        engine["engine_stream_chunks"] = chunks
        return Completion(prompt_tokens=final.get("prompt_eval_count"),
                          generated_tokens=int(final.get("eval_count", chunks)),
                          done_reason=final.get("done_reason", "unknown"), engine=engine)

    def unload(self) -> None:
        if self.tag:
            try:
                self.client.unload(self.tag)
            except EdgebenchError:
                pass  # the server went away: nothing is held any more
            self.tag = None

    def versions(self) -> dict:
        return {"engine_name": "ollama", "engine_version": getattr(self, "_version", None)}

    def device(self) -> str:
        try:
            loaded = [m for m in self.client.ps() if m.get("name") == self.tag or m.get("model") == self.tag]
        except EdgebenchError:
            return "unknown"
        if loaded and loaded[0].get("size_vram"):
            return "cuda"
        return "cpu" if loaded else "unknown"
