"""SQLite store: worklist, reading sessions, reader-study reads, audit log."""
