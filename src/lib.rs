//! Mayfly: a Redis-compatible, thread-per-core in-memory data store.
//!
//! # Architecture in a page
//!
//! Mayfly runs one glommio executor per core (`server`). Executor *i* owns
//! shard *i* of every database's keyspace (`shard`, `db`) and serves the
//! connections that the kernel hands to its SO_REUSEPORT listener. There is
//! no lock around keyspace data and nothing of it is shared between cores.
//!
//! A connection decodes requests (`resp`), looks each command up in one
//! table of metadata (`cmd`), and runs it:
//!
//! * a single-key command runs on the shard that owns its key: inline when
//!   that is the connection's own core, otherwise shipped to the owner as a
//!   message whose answer comes back as a message;
//! * a multi-key command whose keys span shards runs as a small transaction
//!   (`shard::tx`): locks are taken on the shards in ascending order, so no
//!   client ever sees half of an MSET and no two transactions deadlock.
//!
//! Client-visible error texts live in `error`; flags and defaults in
//! `config`.

pub mod clock;
pub mod cmd;
pub mod config;
pub mod db;
pub mod error;
pub mod logging;
pub mod resp;
pub mod script;
pub mod server;
pub mod shard;

/// The Redis version Mayfly reports: three parts, as clients expect.
pub const REDIS_VERSION: &str = "7.2.0";
