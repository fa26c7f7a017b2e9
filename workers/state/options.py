"""RocksDB options of a partition index.

Invariants: the database is always opened in raw mode (bytes keys and values, never
pickled); ``sync`` is off by default because the index is derived data: the hot log is
fsynced before every index commit, a lost index tail only lowers the watermark together
with the entries it covers (they are one WriteBatch), and the records from there on are
re-consumed and deduplicated, or the index is rebuilt from the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from rocksdict import BlockBasedOptions, DBCompressionType, Options, WriteOptions


@dataclass(frozen=True, slots=True)
class StoreOptions:
    sync: bool = False  # fsync the RocksDB WAL on every commit
    write_buffer_bytes: int = 16 << 20  # per memtable; a worker holds several partitions
    max_write_buffers: int = 3
    bloom_bits_per_key: int = 10  # point lookups of seen() for seq <= last_seq
    max_open_files: int = 256


DEFAULT_OPTIONS = StoreOptions()


def rocksdb_options(opts: StoreOptions) -> Options:
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    o.set_write_buffer_size(opts.write_buffer_bytes)
    o.set_max_write_buffer_number(opts.max_write_buffers)
    o.set_max_open_files(opts.max_open_files)
    o.set_compression_type(DBCompressionType.lz4())
    table = BlockBasedOptions()
    table.set_bloom_filter(opts.bloom_bits_per_key, False)
    o.set_block_based_table_factory(table)
    return o


def write_options(opts: StoreOptions) -> WriteOptions:
    w = WriteOptions()
    w.sync = opts.sync
    return w
