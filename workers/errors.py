"""The project's exception tree: one base, one class per package.  Stdlib only.

``KaizenError`` is the base of every error the project raises on purpose, so a caller can
tell ours from a library's or a bug.  Each package's errors derive from one class of that
package, directly under ``KaizenError``:

* ``workers.hotlog``: :class:`HotLogError` (``CorruptFrame``, ``LogLocked``, ``LogClosed``,
  ``LogFailed``);
* ``workers.state``: :class:`StateError` (``BatchClosed``, ``FormatMismatch``);
* ``workers.replay``: :class:`ReplayError` (``ReplyTimeout``, ``InvalidRequest``, which is
  also a ``DecodeError``: a request body the replay agent dead-letters);
* ``workers.codec``: ``DecodeError`` (``codec/errors.py``);
* ``workers.broker``: ``BrokerError`` (``broker/embedded.py``; ``TopicsError`` under it);
* ``workers.shipper``: ``NotLanded`` (``shipper/shipper.py``);
* ``workers.analytics``: ``PricesFileError`` (``analytics/prices.py``);
* ``workers.cli``: ``CliError`` (``cli/errors.py``);
* ``workers.settings``: ``SettingsError``;
* ``workers.kafka``: ``SecurityError`` (``kafka/config.py``: a TLS/SASL setting that cannot
  work) and ``KafkaAccessError`` (``kafka/errors.py``: why Kafka refuses this client, one
  line; ``KafkaTransient`` when a retry may do).

A package with one error has that error as its class.  Errors keep the built-in base they
had (``ValueError``, ``RuntimeError``, ``TimeoutError``) beside it, so existing ``except``
clauses still catch them.
"""

from __future__ import annotations


class KaizenError(Exception):
    """The base of every error kaizen-stream raises on purpose."""


class HotLogError(KaizenError):
    """An error of the hot log (``workers.hotlog``)."""


class StateError(KaizenError):
    """An error of a partition's index (``workers.state``)."""


class ReplayError(KaizenError):
    """An error of replay requests and their clients (``workers.replay``)."""
