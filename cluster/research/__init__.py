"""Tools for researchers: seeded order flows (`flow`), journals replayed into numpy arrays
(`arrays`), market data recorded as Parquet (`recorder`) and queried with DuckDB (`queries`)."""
