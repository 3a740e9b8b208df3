"""Reporting: summary tables with intervals, report.md / report.html, precision, floors, reading runs back."""
