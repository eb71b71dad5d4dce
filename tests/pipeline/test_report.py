"""The report's front page names the testbed the runs were made on, never "auto"."""

from pathlib import Path

import jinja2

from edgebench.config import resolve_testbed

ROOT = Path(__file__).resolve().parents[2]


class Snakemake:
    def __init__(self, config):
        self.config = config


def front_page(config) -> str:
    # As Snakemake renders it (trim_blocks), so that the RST's bold markup still ends before a space.
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string((ROOT / "report" / "workflow.rst").read_text()).render(snakemake=Snakemake(config))


def settings(**extra):
    return {"warmup": 1, "runs": 5, "max_new_tokens": 32, "temperature": 0.0, "prompt_format": "chat", **extra}


def test_front_page_names_the_resolved_testbed(monkeypatch):
    import edgebench.provenance

    monkeypatch.setattr(edgebench.provenance, "testbed_name", lambda: "cpu-2c")
    config = settings(testbed="auto")
    resolve_testbed(config)  # what workflow/rules/common.smk does before the report is rendered
    page = front_page(config)
    assert "the testbed **cpu-2c** (named" in page and "auto" not in page


def test_front_page_names_every_testbed_of_a_multi_testbed_run():
    page = front_page(settings(testbed="x", testbeds={"h100": {}, "h200": {}}))
    assert "the testbeds\n**h100, h200** (named" in page


def test_front_page_describes_the_sweeps_the_config_has_and_only_those():
    plain = front_page(settings(testbed="x"))
    assert "Edge deployment" not in plain and "Concurrency sweep" not in plain
    page = front_page(settings(testbed="x", contexts=[512, 4096], concurrency=[1, 4]))
    assert "exactly 512, 4096 tokens" in page and "Edge deployment (category *Edge deployment*)" in page
    assert "Concurrency sweep (category *Concurrency*): 1, 4 closed-loop clients" in page
