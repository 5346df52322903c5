"""Old path of ``pydl.backend.cuda.runtime`` (moved in issue 21), kept as a re-export because
``pydl/cli.py`` on main imports ``ensure_available`` from here; update it to
``from .backend.cuda import ensure_available`` and delete this file."""

from .cuda.runtime import ensure_available  # noqa: F401
