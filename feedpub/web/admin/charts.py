"""The dashboard's charts: inline SVG made by pygal, without its scripts (the page's CSP allows none).

Text and axes take `currentColor` and the backgrounds are transparent, so a chart reads on the page's
light and dark backgrounds alike; the series colours are mid-tones that hold on both. The SVG scales to
the width of its box (a phone's too). Titles, series names and the no-data text come in site.language.
"""

from __future__ import annotations

import re
from functools import lru_cache

import pygal
from markupsafe import Markup
from pygal.style import Style

# Blue, green, orange, red, grey: distinguishable on white and on near-black, and by most colour-blind eyes.
_COLOURS = ("#3b82f6", "#22a06b", "#e08a00", "#e5484d", "#8b93a1")
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_STYLE = Style(background="transparent", plot_background="transparent", foreground="currentColor",
               foreground_strong="currentColor", foreground_subtle="rgba(128,128,128,0.35)", opacity=".75",
               opacity_hover=".95", colors=_COLOURS, font_family="system-ui, sans-serif", label_font_size=13,
               major_label_font_size=13, legend_font_size=14, value_font_size=13, tooltip_font_size=13)


@lru_cache(maxsize=32)
def lines(title: str, no_data: str, labels: tuple[str, ...], series: tuple[tuple[str, tuple[int, ...]], ...], *,
          height: int = 320) -> Markup:
    """A line chart of several series over the same labels (e.g. subscribers per week); `no_data` is shown
    while there are none. pygal takes tens of milliseconds to draw one: the same figures are drawn once
    (bench/admin_bench.py)."""
    chart = pygal.Line(**_options(title, no_data, height), x_label_rotation=0, show_minor_x_labels=False,
                       x_labels_major_every=max(1, len(labels) // 6), dots_size=2.5, truncate_label=-1)
    chart.x_labels = list(labels)
    for name, values in series:
        chart.add(name, list(values))
    return _svg(chart)


@lru_cache(maxsize=32)
def bars(title: str, no_data: str, labels: tuple[str, ...], series: tuple[tuple[str, tuple[int, ...]], ...], *,
         height: int = 320) -> Markup:
    """Stacked bars (e.g. deliveries per minute by outcome); the same figures are drawn once."""
    chart = pygal.StackedBar(**_options(title, no_data, height), show_minor_x_labels=False,
                             x_labels_major_every=max(1, len(labels) // 6), truncate_label=-1)
    chart.x_labels = list(labels)
    for name, values in series:
        chart.add(name, list(values))
    return _svg(chart)


def _options(title: str, no_data: str, height: int) -> dict[str, object]:
    return {"title": title, "style": _STYLE, "js": [], "disable_xml_declaration": True, "width": 720,
            "height": height, "legend_at_bottom": True, "legend_at_bottom_columns": 4, "margin": 12,
            "margin_bottom": 28,
            "show_y_guides": True, "include_x_axis": True, "no_data_text": no_data, "print_values": False}


def _svg(chart: pygal.Graph) -> Markup:
    # pygal escapes the labels and titles it writes into the SVG: the markup is safe to inline. Even with
    # js=[] it writes its config in an inline <script>, which the page's CSP would refuse anyway: dropped.
    return Markup(_SCRIPT.sub("", chart.render(is_unicode=True)))
