"""Notifiers (console, Discord, Home Assistant), outbox delivery and the daily recap."""
