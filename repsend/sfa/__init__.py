"""Sources of reps, contacts and deals: a Salesforce org or a Salesforce CSV export.

Both stream contacts rather than loading them, and both answer the same four questions (see
``base.Source``), so that the audience rules never know where the data came from.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

# polars' allocator (jemalloc) keeps freed pages for 10 s by default: a run reads chunk after chunk, so
# they would pile up in the peak memory. Half a second keeps the reuse and returns the rest; one arena
# instead of one per thread lets the reading thread reuse what the main thread freed. It must be set
# before polars loads (only csv_reader and contact_frames, inside this package, import it); a value the
# user set stays.
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1,dirty_decay_ms:500,muzzy_decay_ms:0")

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
