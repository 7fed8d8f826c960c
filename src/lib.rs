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
//!   message whose answer comes back as a message. In a pipelined batch
//!   such messages all leave before the first answer is awaited;
//! * a multi-key command whose keys span shards runs as a small transaction
//!   (`shard::tx`): locks are taken on the shards in ascending order, so no
//!   client ever sees half of an MSET and no two transactions deadlock;
//! * a Lua script (`script`) runs on the core that owns its declared keys
//!   when they share a shard, with its keys locked when they do not, and
//!   on one core behind a global barrier (`shard::barrier`), with every
//!   other core's shard lent to it, when it may touch keys it never
//!   declared. A lending core keeps serving its connections meanwhile.
//!
//! Sockets and timers live on a per-core io_uring ring of Mayfly's own
//! (`server::net`); its driver is the only thing that makes the core sleep,
//! and other cores wake it through a doorbell (`shard::Doorbell`).
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
