"""Running a command's wrapped `main` in the test process, as its console script would."""

from __future__ import annotations

import sys

from hydra.core.global_hydra import GlobalHydra


def run_main(main, *args: object, capsys=None) -> tuple[int, str, str]:
    """Run a command's wrapped `main` here as `stroke-x <args>` would: (status, stdout, stderr).

    Faster than `run_module` (no imports to pay for). Hydra reconfigures logging for a job:
    the root logger's handlers and level are put back afterwards.
    """
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    argv = sys.argv
    sys.argv = [f"stroke-{main.__module__.rsplit('.', 1)[-1]}", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        GlobalHydra.instance().clear()
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err
