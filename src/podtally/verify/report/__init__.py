"""Render a :class:`~podtally.verify.result.VerifyResult`: pure functions from a result to a
string; nothing here computes statistics or prints.

- :mod:`~podtally.verify.report.text`: the human report (:func:`render_text`);
- :mod:`~podtally.verify.report.document`: the ``--json`` document (:func:`render_json`) and the
  ``--observations`` file: its first line, the run's settings (:func:`observations_header`), then
  a line per request (:func:`observation_line`), and how the run ended (:func:`observations_end`);
- :mod:`~podtally.verify.report.figures`: how both, and the HTML page, write a share, a latency,
  a status.

The HTML page is :mod:`podtally.verify.html`.
"""

from podtally.verify.report.document import (
    observation_line,
    observations_end,
    observations_header,
    render_json,
    to_document,
)
from podtally.verify.report.text import render_text

__all__ = [
    "observation_line",
    "observations_end",
    "observations_header",
    "render_json",
    "render_text",
    "to_document",
]
