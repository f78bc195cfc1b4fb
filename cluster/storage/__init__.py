"""A shard's durable log: the journal (framed, CRC-checked segments), snapshots, and replay."""
