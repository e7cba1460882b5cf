"""Sweeps: trials side by side on every device (`launcher`), resumable Optuna studies (`optuna`)."""

from stroke.sweep.devices import TrialSlot, assign_trial_slots

__all__ = ["TrialSlot", "assign_trial_slots"]
