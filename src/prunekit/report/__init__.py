"""Reports: tables (Markdown/HTML) and matplotlib plots built from run records."""

from prunekit.report.build import summary_tables, write_report
from prunekit.report.tables import Table, fmt

__all__ = ["Table", "fmt", "summary_tables", "write_report"]
