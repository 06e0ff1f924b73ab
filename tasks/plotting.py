"""matplotlib for every report: the headless backend, figures saved atomically, and house styles.

Shared by the evaluate stage and the domains' report sections, so the backend is chosen
in one place and no report ever holds a half-written PNG. The helpers below keep the
plots honest to a reader (issue 19, point 4):

* :func:`curve_style`: the n-th of several curves that may coincide (a float model and
  its int8 copy score the same) gets its own line style, marker and width, and is
  drawn above the ones before it, so a curve never hides under another;
* :func:`wrap_title`: a title folded to the figure's width instead of cut at its edges;
* :func:`overflowing_text`: which texts of a figure fall outside its canvas (the plot
  test's check, usable on any figure).
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from tasks import store

LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display on the pipeline's machines)."""
    import matplotlib  # lazy: ~1 s to import; only the stages that draw need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    return plt


def png_bytes(fig, dpi: int = 110) -> bytes:
    """A figure as PNG bytes (closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def save_png(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a figure as PNG atomically and close it."""
    return store.atomic_write_bytes(path, png_bytes(fig, dpi))


def curve_style(i: int, n_points: int | None = None) -> dict:
    """``Axes.plot`` keywords of the ``i``-th (0-based) of several curves that may lie on top of each other.

    Curve 0 is a wide solid line at the bottom with large hollow markers; each later one is
    narrower, dashed or dotted in its own way, carries its own filled marker and is drawn above
    the ones before, so two identical curves read as a wide line with a narrower patterned one
    inside it. Markers sit every tenth
    of the curve's on-screen length, each curve's shifted by a little, so markers of coinciding
    curves do not cover each other either. Colours stay with the axes' colour cycle.

    Args:
        i: The curve's place in the drawing order.
        n_points: Points of the curve; with fewer than 12 every point gets a marker.

    Returns:
        ``linestyle``, ``marker``, ``markevery``, ``markersize``, ``linewidth``, ``alpha`` and ``zorder``
        (and the hollow marker's face and edge width for curve 0).
    """
    few = n_points is not None and n_points < 12
    style = {
        "linestyle": LINESTYLES[i % len(LINESTYLES)],
        "marker": MARKERS[i % len(MARKERS)],
        "markevery": None if few else (0.025 + 0.03 * (i % 3), 0.1),
        "markersize": 4.5,
        "linewidth": max(3.0 - 0.6 * i, 1.2),
        "alpha": 0.9 if i else 0.6,  # the wide bottom line lets the narrower ones show through
        "zorder": 2 + 0.1 * i,
    }
    if i == 0:  # a large hollow marker rings a later curve's filled one on the same point
        style.update(markersize=8, markerfacecolor="none", markeredgewidth=1.5)
    return style


def wrap_title(text: str, fig, fontsize: float | None = None, fraction: float = 0.95) -> str:
    """``text`` folded into lines that fit ``fraction`` of the figure's width at ``fontsize`` (points).

    The width in characters is estimated at 0.6 em a character, which over-estimates most
    fonts' average, so a folded line fits. Existing line breaks are kept.
    """
    import matplotlib  # lazy: see pyplot()

    size = fontsize or matplotlib.rcParams["axes.titlesize"]
    if isinstance(size, str):  # "large" and friends
        from matplotlib.font_manager import FontProperties  # lazy: as matplotlib above

        size = FontProperties(size=size).get_size_in_points()
    chars = max(12, int(fig.get_figwidth() * 72 * fraction / (0.6 * size)))
    return "\n".join(textwrap.fill(part, chars) for part in text.split("\n"))


def overflowing_text(fig, tol: float = 1.0) -> list[str]:
    """Texts of ``fig`` that stick out of its canvas, as ``"<where> '<text>' <bbox>"``; empty when all fit.

    Checks the titles, suptitle, axis labels, legends and annotations of every axes (colour
    bars included) one by one, and then the figure's tight bbox (which adds the tick labels
    that are drawn). Measured at the figure's own dpi after the last draw: call
    ``fig.canvas.draw()`` first so the layout engine has run.

    Args:
        fig: A matplotlib figure.
        tol: Pixels a text may cross the edge by (anti-aliasing).
    """
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox

    def outside(bbox) -> bool:
        return (bbox.x0 < canvas.x0 - tol or bbox.y0 < canvas.y0 - tol or bbox.x1 > canvas.x1 + tol
                or bbox.y1 > canvas.y1 + tol)

    def describe(where, artist, bbox) -> str:
        text = artist.get_text() if hasattr(artist, "get_text") else ""
        return f"{where} {text!r} [{bbox.x0:.0f}, {bbox.y0:.0f}, {bbox.x1:.0f}, {bbox.y1:.0f}]"

    candidates = []
    if fig._suptitle is not None:
        candidates.append(("suptitle", fig._suptitle))
    candidates += [("figure text", t) for t in fig.texts]
    candidates += [("figure legend", leg) for leg in fig.legends]
    for i, ax in enumerate(fig.axes):
        candidates += [(f"axes {i} title", t) for t in (ax.title, ax._left_title, ax._right_title)]
        candidates += [(f"axes {i} xlabel", ax.xaxis.label), (f"axes {i} ylabel", ax.yaxis.label)]
        candidates += [(f"axes {i} text", t) for t in ax.texts]
        if ax.get_legend() is not None:
            candidates.append((f"axes {i} legend", ax.get_legend()))
        for child in ax.child_axes:  # secondary axes (a time axis on top)
            candidates += [(f"axes {i} secondary xlabel", child.xaxis.label),
                           (f"axes {i} secondary ylabel", child.yaxis.label)]
    bad = []
    for where, artist in candidates:
        if not artist.get_visible() or (hasattr(artist, "get_text") and not artist.get_text()):
            continue
        bbox = artist.get_window_extent(renderer)
        if outside(bbox):
            bad.append(describe(where, artist, bbox))
    tight = fig.get_tightbbox(renderer)  # inches
    if tight is not None:
        scale = fig.dpi
        x0, y0, x1, y1 = tight.x0 * scale, tight.y0 * scale, tight.x1 * scale, tight.y1 * scale
        if x0 < -tol or y0 < -tol or x1 > canvas.width + tol or y1 > canvas.height + tol:
            bad.append(f"tight bbox [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")
    return bad
