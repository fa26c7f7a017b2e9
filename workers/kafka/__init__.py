"""Kafka connections: settings (config.py, stdlib only), client construction (clients.py),
and one-line explanations of connection failures (errors.py)."""
