"""The drift runtime: the drift_check step (step.py), its statistics (stats.py) and the
Evidently report (report.py)."""
