"""The table of runs: what each run records (`record`), reading run directories (`collect`),
and `stroke-runs` (`cli`), which prints them side by side."""

from stroke.runs.collect import RunRecord, collect_runs, swept_keys
from stroke.runs.record import STATUS_FILE, read_status, write_status

__all__ = ["STATUS_FILE", "RunRecord", "collect_runs", "read_status", "swept_keys", "write_status"]
