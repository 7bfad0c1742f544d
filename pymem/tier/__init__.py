"""The Redis tier in front of PostgreSQL: the window cache, rate limits, the breaker."""
