"""stroke's own fuzzing harness: bad inputs of every kind the commands accept, run through
the real commands, each outcome classified (issue 26; docs/reliability.md#the-fuzzing-harness).

    python -m tests.fuzz            # every case, two at a time (about 10 minutes on 2 cores)
    python -m tests.fuzz --fast     # the subset `make test` runs (tests/fuzz/test_fuzz.py)
    python -m tests.fuzz --kind csv --jobs 4 --keep /tmp/fuzz

A case writes one bad input beside good ones (a truncated PNG in a training folder, a
DICOM with contradictory tags, a CSV in UTF-16, a checkpoint of another program, an
out-of-range value of a declared key), runs one command on it in its own process, and gets
one verdict (`verdicts.py`): clear error, handled loudly, accepted, or one of the failures
the harness exists to find: traceback, unclear error, silent, hang.

The modules of tests/ (bad_inputs, dicom_factory, conftest) are imported by name, as
pytest imports them: run as `python -m tests.fuzz`, that folder is put on the path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
