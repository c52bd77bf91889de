//! Corpus → token shards: `wenhui data prepare`.
