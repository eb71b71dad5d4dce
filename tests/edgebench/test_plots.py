"""Figures: one colour per backend name in every figure and in the testbed comparison."""

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from edgebench import plots


@pytest.fixture
def figures(monkeypatch):
    """Each figure's matplotlib Figure instead of a file."""
    made = {}
    monkeypatch.setattr(plots, "save", lambda fig, png: made.__setitem__(str(png), fig))
    return made


def legend_colours(fig) -> dict:
    """Legend label -> RGB of its handle, over every axis and figure legend."""
    out = {}
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    for legend in filter(None, legends):
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if hasattr(handle, "get_markerfacecolor"):  # a line (with markers)
                colour = handle.get_color()
            else:  # a patch or a marker collection: its face, or its edge for an unfilled marker
                faces = np.asarray(handle.get_facecolor()).reshape(-1, 4)
                colour = faces[0] if len(faces) and faces[0][3] > 0 else np.asarray(handle.get_edgecolor()).reshape(
                    -1, 4)[0]
            out[text.get_text()] = mcolors.to_rgb(colour)
    return out


def frames(backends):
    scaling, summary, runs = [], [], []
    for i, model in enumerate(["small", "big"]):
        for j, backend in enumerate(backends):
            tok = 100.0 / (i + 1) * (j + 1)
            common = {"testbed": "t", "backend": backend, "model": model, "synthetic": False,
                      "parameter_count": 10 ** (8 + i)}
            scaling.append({**common, "decode_tok_s_mean": tok, "decode_tok_s_ci95_lo": tok - 1,
                            "decode_tok_s_ci95_hi": tok + 1, "baseline": backends[0], "speedup": j + 1.0,
                            "speedup_ci95_lo": j + 0.9, "speedup_ci95_hi": j + 1.1})
            summary.append({**common, "prompt_id": "all", "gpu_mem_peak_mb": 1000.0 * (i + 1),
                            "host_rss_peak_mb": 10.0, "gpu_energy_j_per_token_mean": 0.1 * (j + 1)})
            for run in range(3):
                runs.append({**common, "prompt_id": "p", "is_warmup": False, "ttft_ms": 5.0 + run,
                             "itl_ms": [1.0 + j, 1.2 + j, 1.1 + j]})
    return pd.DataFrame(scaling), pd.DataFrame(summary), pd.DataFrame(runs)


def test_every_figure_gives_a_backend_the_same_colour(figures):
    palette = {name: mcolors.to_rgb(c) for name, c in plots.backend_palette().items()}
    # Two configs with different backends and orders: the colours must not follow the order of appearance.
    for backends in (["llamacpp", "edgellm"], ["edgellm", "ollama", "llamacpp"]):
        scaling, summary, runs = frames(backends)
        plots.throughput_vs_size(scaling, "tp.png", "t")
        plots.speedup(scaling, "sp.png", "t")
        plots.latency_distribution(runs, "lat.png", "t")
        plots.ttft(runs, "ttft.png", "t")
        plots.memory_vs_size(summary, "mem.png", "t")
        plots.energy_per_token(summary, "energy.png", "t")
        plots.throughput_by_testbed([scaling, scaling.assign(testbed="u")], "cmp.png")
        for name, fig in figures.items():
            colours = legend_colours(fig)
            shown = [b for b in backends if b in colours]
            expected = backends[1:] if name == "sp.png" else backends  # no bar for the baseline over itself
            assert shown == expected, (name, colours)
            for backend in shown:
                assert colours[backend] == pytest.approx(palette[backend], abs=1e-6), (name, backend)
        figures.clear()


def test_a_backend_outside_the_registry_gets_a_colour_of_its_own():
    palette = plots.backend_palette(["zz-engine"])
    assert len(set(palette.values())) == len(palette) and "zz-engine" in palette
