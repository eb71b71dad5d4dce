"""Ollama addresses as Ollama reads OLLAMA_HOST, credentials never stored or printed, a private CA honoured."""

import pytest

from edgebench import EdgebenchError
from edgebench.backends.ollama import OllamaClient, default_url, parse_url, redact_url
from edgebench.cli import main


@pytest.mark.parametrize("raw, url", [
    ("", "http://127.0.0.1:11434"),
    ("127.0.0.1:11434", "http://127.0.0.1:11434"),
    ("localhost:11434", "http://localhost:11434"),
    ("gpu-host", "http://gpu-host:11434"),
    ("0.0.0.0", "http://0.0.0.0:11434"),
    ("http://gpu-host", "http://gpu-host:80"),
    ("https://gpu-host", "https://gpu-host:443"),
    ("https://gpu-host:8443/", "https://gpu-host:8443"),
    ("https://proxy.example/ollama/", "https://proxy.example:443/ollama"),
    ("'http://gpu-host:11434'", "http://gpu-host:11434"),
    ("[::1]:11434", "http://[::1]:11434"),
    ("::1", "http://[::1]:11434"),
])
def test_addresses_are_read_as_ollama_reads_ollama_host(raw, url):
    assert parse_url(raw)[0] == url


def test_ollama_host_https_means_port_443(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "https://gpu-host")
    assert default_url() == "https://gpu-host:443"
    assert OllamaClient().url == "https://gpu-host:443"


@pytest.mark.parametrize("raw", ["ftp://host", "http://host:99999", "http://host:port"])
def test_a_bad_address_is_one_line(raw):
    with pytest.raises(EdgebenchError, match="Ollama address"):
        parse_url(raw)


def test_user_info_becomes_credentials_and_leaves_the_url():
    client = OllamaClient("http://alice:s3cret@gpu-host:11434")
    assert client.url == "http://gpu-host:11434"
    assert client.session.auth == ("alice", "s3cret")
    assert redact_url("see http://alice:s3cret@gpu-host:11434/api and https://bob@x") == \
        "see http://gpu-host:11434/api and https://x"


def test_a_password_in_the_url_is_never_printed(capsys, tmp_path):
    code = main(["bench", "--backend", "ollama", "--model", "smollm:135m", "--ollama-url",
                 "http://alice:s3cret@127.0.0.1:9", "--runs", "1", "--warmup", "0", "--no-progress", "--testbed", "t",
                 "-o", str(tmp_path / "r.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and "s3cret" not in err and "alice" not in err and "http://127.0.0.1:9" in err


def test_credentials_come_from_a_netrc_file(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine gpu-host login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = OllamaClient("http://gpu-host:11434")
    assert client.session.auth == ("alice", "s3cret") and client.session.trust_env is False


def test_an_api_key_from_the_environment_is_a_bearer_token(monkeypatch):
    monkeypatch.setenv("OLLAMA_API_KEY", "k-123")
    monkeypatch.setenv("NETRC", "/nonexistent")
    assert OllamaClient("http://gpu-host").session.headers["Authorization"] == "Bearer k-123"


@pytest.mark.parametrize("var", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_a_private_ca_bundle_is_honoured_without_trust_env(var, tmp_path, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv(var, str(bundle))
    client = OllamaClient("https://gpu-host")
    assert client.session.verify == str(bundle) and client.session.trust_env is False
    monkeypatch.setenv(var, str(tmp_path / "missing.pem"))
    with pytest.raises(EdgebenchError, match=f"{var} names .*missing.pem, which does not exist"):
        OllamaClient("https://gpu-host")
