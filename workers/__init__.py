"""kaizen-stream: team-wide ingestion and replay of coding-agent history.

This package's import must stay light: the hook path imports it on every agent
hook call, so nothing here may import faust, aiokafka, fastavro or rich.
"""

__version__ = "0.1.0"
