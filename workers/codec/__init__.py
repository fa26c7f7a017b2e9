"""Wire formats of kaizen-stream messages.

- `single_object`: one Avro single-object-encoded record (C3 01, fingerprint, body).
- `batch`: many single-object events of one session in one Kafka message.
- `schema`: the schemas in `schemas/`, their fingerprints and the writer-schema registry.
- `event`: the Event type and its defaults.

The hook path does not import this package (fastavro is too heavy there); the
shipper encodes what the hook spooled.
"""

from workers.codec.errors import DecodeError

__all__ = ["DecodeError"]
