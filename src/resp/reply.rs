//! The typed value a command answers with, independent of protocol version.

use bytes::Bytes;

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A simple string such as `+OK`.
    Status(&'static str),
    /// A simple string built at run time.
    StatusOwned(String),
    /// An error whose text starts with its code (`ERR ...`, `WRONGTYPE ...`).
    Error(&'static str),
    ErrorOwned(String),
    Int(i64),
    Bulk(Bytes),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// A missing aggregate: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    Array(Vec<Reply>),
    /// A map: flattened to an array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set: an array in RESP2.
    Set(Vec<Reply>),
    /// A double: a bulk string in RESP2.
    Double(f64),
    /// A boolean: the integer 1 or 0 in RESP2.
    Bool(bool),
    /// Verbatim text (`=txt:` in RESP3), a bulk string in RESP2.
    Verbatim(String),
}

impl Reply {
    pub const OK: Reply = Reply::Status("OK");

    pub fn bulk(data: &[u8]) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(data))
    }

    pub fn bulk_str(text: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_) | Reply::ErrorOwned(_))
    }

    /// The error text of an error reply.
    pub fn error_text(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            Reply::ErrorOwned(e) => Some(e),
            _ => None,
        }
    }
}

impl From<i64> for Reply {
    fn from(n: i64) -> Self {
        Reply::Int(n)
    }
}

impl From<Option<Bytes>> for Reply {
    fn from(v: Option<Bytes>) -> Self {
        v.map_or(Reply::Nil, Reply::Bulk)
    }
}
