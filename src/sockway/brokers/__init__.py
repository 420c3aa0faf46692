"""Brokers: what the nodes of one gateway share (``base`` is the contract)."""
