"""The system's Chromium for the page's browser test and the documentation's screenshots.

Playwright's own browser download cannot work offline; Debian's `chromium` (installed by
`make test` when missing) is driven instead, headless and with nothing that reaches
outside this machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: headless, and no background traffic (updates, sync, QUIC)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """The system's Chromium: $STROKE_CHROMIUM, Debian's /usr/bin/chromium, or on the PATH."""
    candidates = [os.environ.get("STROKE_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def launch_chromium(playwright):
    """A headless Chromium browser through Playwright's sync API; SystemExit without one."""
    executable = find_chromium()
    if executable is None:
        raise SystemExit("no Chromium found (/usr/bin/chromium, $STROKE_CHROMIUM or on the PATH)")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
