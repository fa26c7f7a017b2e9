"""Draining the hook spool into Kafka (`kaizen-stream ship`), and the batch producer.

Not on the hook's import path: this package uses aiokafka and fastavro.
"""
