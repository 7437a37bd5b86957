"""The foundation: frozen types, settings, baseline maths, untrusted text and redaction, the store.

Everything else stands on it; it imports nothing above it.
"""
