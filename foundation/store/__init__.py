"""The SQLite store: its schema, how it is opened, backed up and salvaged, and the Store itself."""
