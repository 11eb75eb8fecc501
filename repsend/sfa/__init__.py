"""Sources of reps, contacts and deals: a Salesforce org or a Salesforce CSV export.

Both stream contacts rather than loading them, and both answer the same four questions (see
``base.Source``), so that the audience rules never know where the data came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repsend.settings import Settings
    from repsend.sfa.base import Source


def open_source(settings: Settings) -> Source:
    """The source the config names; heavy libraries load only for the one in use."""
    if settings.sfa.kind == "salesforce":
        from repsend.sfa.salesforce import SalesforceSource

        return SalesforceSource.from_settings(settings)
    from repsend.sfa.csv_export import CsvExportSource

    return CsvExportSource.from_settings(settings)
