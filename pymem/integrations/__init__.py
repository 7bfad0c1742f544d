"""Integrations with agent frameworks and protocols, each an optional extra."""
