//! Request decoding: check, then parse.
//!
//! A command is only taken out of the buffer once all of its bytes have
//! arrived; until then the buffer is left untouched and `Ok(None)` says so.
//! Incomplete input is a normal state. Malformed input is a `DecodeError`
//! carrying Redis's exact protocol error text; the caller replies with it and
//! closes that one connection.

use bytes::{Buf, Bytes, BytesMut};

/// Longest inline request or header line accepted without a newline.
const MAX_INLINE: usize = 64 * 1024;

/// Size limits, as Redis configures them.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `proto-max-bulk-len`: the largest bulk string.
    pub max_bulk_len: usize,
    /// The largest multibulk element count.
    pub max_multibulk_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: i32::MAX as usize,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

/// A decoded request: its arguments (possibly empty, which the caller skips).
pub type Decoded = Vec<Bytes>;

/// Takes one complete command off the front of `buf`, if there is one.
pub fn decode_command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Decoded>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'*' {
        decode_multibulk(buf, limits)
    } else {
        decode_inline(buf)
    }
}

/// The name and first argument of the multibulk command at the front of
/// `buf`, when both have arrived whole; None for anything else. A hint
/// only (see `cmd::prefetch_arrived`): nothing else is checked, and the
/// buffer is left alone.
pub fn peek_name_and_first(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    const E: &str = "";
    if buf.first() != Some(&b'*') {
        return None;
    }
    let (count, mut pos) = header(buf, 0, E, E).ok()??;
    if count < 2 {
        return None;
    }
    let mut bulk = || {
        if buf.get(pos) != Some(&b'$') {
            return None;
        }
        let (len, data) = header(buf, pos, E, E).ok()??;
        let end = data.checked_add(usize::try_from(len).ok()?)?;
        pos = end + 2;
        buf.get(data..end)
    };
    Some((bulk()?, bulk()?))
}

/// Finds `\r\n` at or after `from`; returns the index of `\r`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let nl = memchr(b'\n', &buf[from..])? + from;
    if nl > from && buf[nl - 1] == b'\r' {
        Some(nl - 1)
    } else {
        // A bare '\n' ends the line too; treat the line as ending there.
        Some(nl)
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn parse_len(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let (neg, digits) = match digits[0] {
        b'-' => (true, &digits[1..]),
        _ => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as i64)?;
    }
    Some(if neg { -n } else { n })
}

/// Reads a header line `<prefix><number>\r\n` starting at `at`.
/// Returns the number and the offset just past the line.
fn header(
    buf: &[u8],
    at: usize,
    too_long: &'static str,
    invalid: &'static str,
) -> Result<Option<(i64, usize)>, DecodeError> {
    match find_crlf(buf, at) {
        None => {
            if buf.len() - at > MAX_INLINE {
                Err(DecodeError(too_long))
            } else {
                Ok(None)
            }
        }
        Some(end) => {
            if end - at > MAX_INLINE {
                return Err(DecodeError(too_long));
            }
            let n = parse_len(&buf[at + 1..end]).ok_or(DecodeError(invalid))?;
            let next = if buf[end] == b'\r' { end + 2 } else { end + 1 };
            Ok(Some((n, next)))
        }
    }
}

fn decode_multibulk(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Decoded>, DecodeError> {
    let Some((count, mut pos)) = header(
        buf,
        0,
        "Protocol error: too big mbulk count string",
        "Protocol error: invalid multibulk length",
    )?
    else {
        return Ok(None);
    };
    if count > limits.max_multibulk_len as i64 {
        return Err(DecodeError("Protocol error: invalid multibulk length"));
    }
    if count <= 0 {
        let _ = buf.split_to(pos);
        return Ok(Some(Vec::new()));
    }
    let count = count as usize;
    // First pass: check that every element is complete, remembering spans
    // (on the stack for the usual few arguments).
    let mut few = [(0usize, 0usize); FEW_ARGS];
    let mut many: Vec<(usize, usize)> = Vec::new();
    if count > FEW_ARGS {
        many.reserve(count.min(1024));
    }
    let mut seen = 0;
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(DecodeError(expected_dollar(buf[pos])));
        }
        let Some((len, data)) = header(
            buf,
            pos,
            "Protocol error: too big bulk count string",
            "Protocol error: invalid bulk length",
        )?
        else {
            return Ok(None);
        };
        if len < 0 || len as u64 > limits.max_bulk_len as u64 {
            return Err(DecodeError("Protocol error: invalid bulk length"));
        }
        let len = len as usize;
        if buf.len() < data + len + 2 {
            // Reserve room for the whole bulk so that large values arrive
            // without repeated reallocation.
            let want = data + len + 2;
            if buf.capacity() < want {
                buf.reserve(want - buf.len());
            }
            return Ok(None);
        }
        if count > FEW_ARGS {
            many.push((data, len));
        } else {
            few[seen] = (data, len);
            seen += 1;
        }
        pos = data + len + 2;
    }
    // Second pass: cut the command out and slice its arguments; the frame
    // itself becomes the last one (one reference count fewer to change).
    let spans = if count > FEW_ARGS { &many[..] } else { &few[..count] };
    let mut frame = buf.split_to(pos).freeze();
    let mut args = Vec::with_capacity(count);
    let (&(last_start, last_len), rest) = spans.split_last().expect("count > 0");
    args.extend(rest.iter().map(|&(start, len)| frame.slice(start..start + len)));
    frame.truncate(last_start + last_len);
    frame.advance(last_start);
    args.push(frame);
    Ok(Some(args))
}

/// Commands with up to this many arguments are decoded without a heap
/// allocation besides their argument vector.
const FEW_ARGS: usize = 8;

fn expected_dollar(got: u8) -> &'static str {
    // Redis names the offending byte; the 256 messages are built once.
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<&'static str>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0u8..=255)
            .map(|c| {
                let s = format!("Protocol error: expected '$', got '{}'", c as char);
                &*Box::leak(s.into_boxed_str())
            })
            .collect()
    });
    table[got as usize]
}

fn decode_inline(buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > MAX_INLINE {
            return Err(DecodeError("Protocol error: too big inline request"));
        }
        return Ok(None);
    };
    if nl > MAX_INLINE {
        return Err(DecodeError("Protocol error: too big inline request"));
    }
    let line = buf.split_to(nl + 1);
    let mut text = &line[..nl];
    if text.last() == Some(&b'\r') {
        text = &text[..text.len() - 1];
    }
    split_args(text)
        .map(Some)
        .ok_or(DecodeError("Protocol error: unbalanced quotes in request"))
}

/// Splits an inline request the way redis-cli and Redis's `sdssplitargs` do:
/// whitespace separates, double quotes allow escapes, single quotes do not.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= line.len() {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' && is_hex(line[i + 2]) && is_hex(line[i + 3])
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    // The closing quote must be followed by a space or the end.
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    in_dq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= line.len() {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < line.len() && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    in_sq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= line.len() {
                    break;
                }
                match line[i] {
                    c if c.is_ascii_whitespace() => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        debug_assert!(!in_dq && !in_sq);
        args.push(Bytes::from(cur));
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_request(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn peek_finds_the_name_and_first_argument_of_a_whole_request_only() {
        let req = encode_request(&[b"GET", b"user:1"]);
        assert_eq!(peek_name_and_first(&req), Some((&b"GET"[..], &b"user:1"[..])));
        let set = encode_request(&[b"SET", b"k", b"v"]);
        assert_eq!(peek_name_and_first(&set), Some((&b"SET"[..], &b"k"[..])));
        // The first argument has not all arrived, at any cut.
        let cut = req.len() - 2;
        for end in 0..cut {
            assert_eq!(peek_name_and_first(&req[..end]), None, "cut at {end}");
        }
        for bad in [
            &b"PING\r\n"[..],
            b"*1\r\n$4\r\nPING\r\n",
            b"*2\r\n+GET\r\n",
            b"*2\r\n$-1\r\n",
            b"*x\r\n",
        ] {
            assert_eq!(peek_name_and_first(bad), None);
        }
    }

    /// A small deterministic generator, so that failures reproduce.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn round_trip_with_random_chunk_splits() {
        let mut rng = XorShift(0x9e3779b97f4a7c15);
        for _ in 0..300 {
            let ncmds = 1 + rng.below(6) as usize;
            let mut wanted: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut wire = Vec::new();
            for _ in 0..ncmds {
                let nargs = 1 + rng.below(5) as usize;
                let args: Vec<Vec<u8>> = (0..nargs)
                    .map(|_| (0..rng.below(40)).map(|_| rng.next() as u8).collect())
                    .collect();
                let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
                wire.extend(encode_request(&refs));
                wanted.push(args);
            }
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let step = 1 + rng.below(17) as usize;
                let end = (at + step).min(wire.len());
                buf.extend_from_slice(&wire[at..end]);
                at = end;
                while let Some(cmd) = decode_command(&mut buf, &Limits::default()).unwrap() {
                    got.push(cmd.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
                }
            }
            assert_eq!(got, wanted);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = XorShift(12345);
        let alphabet = b"*$\r\n0123456789-abc \"'\\x";
        for _ in 0..20000 {
            let len = rng.below(48) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(4) == 0 {
                        rng.next() as u8
                    } else {
                        alphabet[rng.below(alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..8 {
                match decode_command(&mut buf, &Limits::default()) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }

    #[test]
    fn incomplete_input_leaves_the_buffer_alone() {
        let partial = b"*2\r\n$3\r\nGET\r\n$3\r\nfo";
        let mut buf = BytesMut::from(&partial[..]);
        assert_eq!(decode_command(&mut buf, &Limits::default()), Ok(None));
        assert_eq!(&buf[..], &partial[..]);
        buf.extend_from_slice(b"o\r\n");
        let cmd = decode_command(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(cmd, vec![Bytes::from_static(b"GET"), Bytes::from_static(b"foo")]);
    }

    #[test]
    fn oversized_bulk_is_rejected_with_redis_text() {
        let mut buf = BytesMut::from(&b"*1\r\n$536870913\r\n"[..]);
        assert_eq!(
            decode_command(&mut buf, &Limits::default()),
            Err(DecodeError("Protocol error: invalid bulk length"))
        );
        let mut buf = BytesMut::from(&b"*1\r\n$-5\r\n"[..]);
        assert!(decode_command(&mut buf, &Limits::default()).is_err());
    }

    #[test]
    fn oversized_multibulk_count_is_rejected() {
        let mut buf = BytesMut::from(&b"*99999999999\r\n"[..]);
        assert_eq!(
            decode_command(&mut buf, &Limits::default()),
            Err(DecodeError("Protocol error: invalid multibulk length"))
        );
    }

    #[test]
    fn wrong_element_type_names_the_character() {
        let mut buf = BytesMut::from(&b"*1\r\n:5\r\n"[..]);
        assert_eq!(
            decode_command(&mut buf, &Limits::default()),
            Err(DecodeError("Protocol error: expected '$', got ':'"))
        );
        let mut buf = BytesMut::from(&b"*1\r\nx5\r\n"[..]);
        assert_eq!(
            decode_command(&mut buf, &Limits::default()),
            Err(DecodeError("Protocol error: expected '$', got 'x'"))
        );
    }

    #[test]
    fn inline_commands_split_like_redis() {
        let mut buf = BytesMut::from(&b"SET k \"a b\\n\" 'c d'\r\nPING\n"[..]);
        let cmd = decode_command(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(cmd, vec![&b"SET"[..], b"k", b"a b\n", b"c d"]);
        let cmd = decode_command(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(cmd, vec![&b"PING"[..]]);
        let mut buf = BytesMut::from(&b"SET \"k\r\n"[..]);
        assert_eq!(
            decode_command(&mut buf, &Limits::default()),
            Err(DecodeError("Protocol error: unbalanced quotes in request"))
        );
    }

    #[test]
    fn long_inline_without_newline_is_an_error() {
        let mut buf = BytesMut::from(&vec![b'a'; MAX_INLINE + 1][..]);
        assert_eq!(
            decode_command(&mut buf, &Limits::default()),
            Err(DecodeError("Protocol error: too big inline request"))
        );
    }
}
