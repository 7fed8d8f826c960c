//! The Redis serialization protocol, on its own.
//!
//! `decode` turns the bytes a client sends into command argument lists
//! (multibulk or inline form); `reply` is the typed value a command answers
//! with, and `encode` writes it for a RESP2 or RESP3 client. Nothing in this
//! module knows about commands, shards or the keyspace.

mod decode;
mod encode;
mod reply;

pub use decode::{DecodeError, Decoded, Limits, decode_command, peek_name_and_first};
pub use encode::{encode, format_double};
pub use reply::Reply;

/// The protocol version a connection speaks, chosen with HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}
