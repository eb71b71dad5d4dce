"""Which concurrency jobs a config asks for (workflow/rules/concurrency.smk): every number of clients for a server
backend, N = 1 for an in-process engine, nothing without a sweep."""

from __future__ import annotations

from .concurrency import is_server_backend


def levels(backend: str, concurrency: list[int]) -> list[int]:
    """The numbers of clients a backend runs: all of them behind a server, 1 in this process; none without a sweep."""
    if not concurrency:
        return []
    return list(concurrency) if is_server_backend(backend) else [1]


def point_files(results: str, testbed: str, backends: list[str], models: list[str],
                concurrency: list[int]) -> list[str]:
    return [f"{results}/{testbed}/concurrency/{backend}/{model}/c{n}.parquet"
            for backend in backends for model in models for n in levels(backend, concurrency)]


def outputs(results: str, testbeds: list[str], concurrency: list[int], figures: list[str]) -> list[str]:
    """What the sweep adds to `all`: each testbed's statistics, figures and table."""
    if not concurrency:
        return []
    out = []
    for testbed in testbeds:
        out.append(f"{results}/{testbed}/concurrency.parquet")
        out += [f"{results}/{testbed}/figures/{fig}.png" for fig in figures]
        out += [f"{results}/{testbed}/tables/concurrency.{ext}" for ext in ("csv", "tex")]
    return out
