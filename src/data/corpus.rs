//! Memory-mapped token shards (written by `prepare`).
