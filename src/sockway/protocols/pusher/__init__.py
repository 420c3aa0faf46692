"""Pusher Channels protocol v7 (pusher spec): pure wire, channel and signature logic."""
