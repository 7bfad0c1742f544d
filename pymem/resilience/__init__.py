"""Riding out failures: retries within a deadline, and circuit breakers."""

from .breaker import CircuitBreaker, State
from .retry import Failure, RetryPolicy, classify, deadline

__all__ = ["CircuitBreaker", "Failure", "RetryPolicy", "State", "classify", "deadline"]
