"""Telemetry of pymem calls: Prometheus metrics and their instrumentation."""
