//! Every error text a client can see, with its wire code, in one place.
//!
//! The texts are Redis 7's, byte for byte: clients match on them.

use crate::resp::Reply;

pub const SYNTAX: &str = "ERR syntax error";
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const INCR_NAN_OR_INF: &str = "ERR increment would produce NaN or Infinity";
pub const HASH_NOT_INTEGER: &str = "ERR hash value is not an integer";
pub const HASH_NOT_FLOAT: &str = "ERR hash value is not a float";
pub const NO_SUCH_KEY: &str = "ERR no such key";
pub const INDEX_OUT_OF_RANGE: &str = "ERR index out of range";
pub const INVALID_EXPIRE: &str = "ERR invalid expire time in '%s' command";
pub const DB_INDEX_OUT_OF_RANGE: &str = "ERR DB index is out of range";
pub const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
pub const OFFSET_OUT_OF_RANGE: &str = "ERR offset is out of range";
pub const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
pub const TIMEOUT_NOT_FLOAT: &str = "ERR timeout is not a float or out of range";
pub const TIMEOUT_NEGATIVE: &str = "ERR timeout is negative";
pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
pub const AUTH_NOT_CONFIGURED: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
pub const NOPROTO: &str = "NOPROTO unsupported protocol version";
pub const SAME_OBJECT: &str = "ERR source and destination objects are the same";
pub const NX_XX_GT_LT: &str = "ERR NX and XX, GT or LT options at the same time are not compatible";
pub const GT_LT_NX: &str = "ERR GT, LT, and/or NX options at the same time are not compatible";
pub const INVALID_CLIENT_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";
pub const NO_SUCH_CLIENT: &str = "ERR No such client";
pub const COUNT_NEGATIVE: &str = "ERR value is out of range, must be positive";
pub const NUMKEYS_ZERO: &str = "ERR numkeys should be greater than 0";
pub const NUMKEYS_TOO_BIG: &str = "ERR Number of keys can't be greater than number of args";
pub const LIMIT_NEGATIVE: &str = "ERR LIMIT can't be negative";
pub const COUNT_ZERO: &str = "ERR count should be greater than 0";
pub const INVALID_CURSOR: &str = "ERR invalid cursor";
pub const RANK_ZERO: &str = "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list";
pub const MAXLEN_NEGATIVE: &str = "ERR MAXLEN can't be negative";
pub const RANDFIELD_RANGE: &str = "ERR value is out of range";

/// `ERR unknown command '<name>', with args beginning with: '<a>' '<b>' `
pub fn unknown_command(name: &[u8], args: &[bytes::Bytes]) -> Reply {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        truncate(name, 128)
    );
    for arg in args {
        if text.len() > 128 {
            break;
        }
        text.push_str(&format!("'{}' ", truncate(arg, 128)));
    }
    Reply::ErrorOwned(text)
}

/// `ERR unknown subcommand '<sub>'. Try <CMD> HELP.`
pub fn unknown_subcommand(cmd: &str, sub: &[u8]) -> Reply {
    Reply::ErrorOwned(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        truncate(sub, 128),
        cmd.to_ascii_uppercase()
    ))
}

/// `ERR wrong number of arguments for '<name>' command`
pub fn wrong_arity(name: &str) -> Reply {
    Reply::ErrorOwned(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

/// `ERR invalid expire time in '<name>' command`
pub fn invalid_expire(name: &str) -> Reply {
    Reply::ErrorOwned(INVALID_EXPIRE.replace("%s", &name.to_ascii_lowercase()))
}

fn truncate(text: &[u8], max: usize) -> String {
    let shown = &text[..text.len().min(max)];
    String::from_utf8_lossy(shown).into_owned()
}
