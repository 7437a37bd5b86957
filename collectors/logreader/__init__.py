"""The shared log reader: a file tail that survives rotation, the journal, and line formats."""
