"""`genzoo serve [RUN_ROOT]`: a local web app over the shipped models and run folders (draw a digit, watch every
model work on it). Without RUN_ROOT it opens on the shipped zoo alone.

FastAPI and uvicorn are an optional extra (`pip install "genzoo[serve]"`); they are imported only here,
when the server starts, so the rest of genzoo never needs them. The API is in `app.py` (OpenAPI at /docs),
what it accepts from outside in `inputs.py`, the heavy jobs in `jobs.py`, the page in `static/`.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

DEFAULT_ROOT = "genzoo-demo"  # where `genzoo demo` writes its runs


class ServeError(RuntimeError):
    """The server cannot start: its optional dependencies are missing, or it has no model to serve."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(root: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8000, threads: int = 0) -> None:
    """Start the web app over the shipped models and the runs under `root` and serve until Ctrl-C.

    Args:
        root: a folder of run folders (e.g. `DEFAULT_ROOT`, the demo's); None: the shipped models alone.
        host: the address to bind; loopback unless told otherwise (another address prints a warning:
            anyone who can reach it can use the models and read the runs' reports).
        port: the TCP port (0: a free one, printed).
        threads: torch's CPU threads for the models (0: half the cores, at most 4), so that heavy jobs leave
            room for the server and the machine.
    """
    try:
        import uvicorn
    except ImportError:
        raise ServeError('genzoo serve needs FastAPI and uvicorn: pip install "genzoo[serve]"') from None
    import torch

    from .app import create_app

    torch.set_num_threads(threads or max(1, min(4, (os.cpu_count() or 2) // 2)))
    app = create_app(root)
    if not is_loopback(host):
        print(f"genzoo serve: warning: bound to {host}, not loopback: anyone who can reach this address can use "
              "the models and read the reports of the runs; use --host 127.0.0.1 to keep it on this machine",
              file=sys.stderr)
    where = "the shipped zoo (read-only)" if root is None else \
        f"the shipped zoo (read-only) and the runs under {Path(root).resolve()}"
    print(f"genzoo serve: {where}; open http://{host}:{port}/ (API docs at /docs); Ctrl-C stops", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
