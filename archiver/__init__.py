"""gws-archiver: archive Genesys Web Services SMS sessions into SQLite and stream their events."""

from archiver.archive import Archive as Archive

__version__ = "0.1.0"
