"""Static reports of runs and sweeps: `cnnlab report`."""

from cnnlab.report.html import write_report

__all__ = ["write_report"]
