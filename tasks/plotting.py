"""matplotlib for every report: the headless backend, and figures saved atomically.

Shared by the evaluate stage and the domains' report sections, so the backend is chosen
in one place and no report ever holds a half-written PNG.
"""

from __future__ import annotations

import io
from pathlib import Path

from tasks import store


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
