//! The wire protocol: pipelining, inline commands, RESP3, bad input.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use redis::{Commands, Value, cmd};

fn raw_conn(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until the peer closes or `want` bytes arrived.
fn read_some(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Reads until the data received ends with `suffix` (or the peer stops).
fn read_until(s: &mut TcpStream, suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(suffix) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn peer_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0))
}

#[test]
fn pipelined_replies_come_back_in_order() {
    let server = common::mayfly();
    let mut c = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("p:{i}")).arg(i).ignore();
    }
    for i in 0..500 {
        pipe.cmd("GET").arg(format!("p:{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(values, (0..500).collect::<Vec<_>>());
}

#[test]
fn pipelines_across_shards_keep_order_for_every_observer() {
    // A writer pipelines SET a i; SET b i for keys on two shards. Whoever
    // then sees b = i must see a >= i, on a connection of either core.
    let server = common::mayfly();
    let (a, b) = common::keys_on_two_shards("order");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observers: Vec<_> = (0..4)
        .map(|_| {
            let client = server.client();
            let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                let mut checks = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || checks < 10 {
                    let seen_b: Option<i64> = c.get(&b).unwrap();
                    let seen_a: Option<i64> = c.get(&a).unwrap();
                    assert!(seen_a >= seen_b, "saw b = {seen_b:?} before a = {seen_a:?}");
                    checks += 1;
                }
            })
        })
        .collect();
    let mut c = server.conn();
    for i in 0..2000 {
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(&a).arg(i).ignore();
        pipe.cmd("SET").arg(&b).arg(i).ignore();
        pipe.cmd("GET").arg(&a);
        let got: (i64,) = pipe.query(&mut c).unwrap();
        assert_eq!(got.0, i);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for o in observers {
        o.join().unwrap();
    }
    // Errors, a SELECT and a transaction inside one pipeline still answer
    // in order, each against the right database.
    let cmds: Vec<Vec<&str>> = vec![
        vec!["SET", &a, "x"],
        vec!["INCR", &a],
        vec!["SELECT", "1"],
        vec!["GET", &a],
        vec!["SET", &b, "in-db-1"],
        vec!["MULTI"],
        vec!["GET", &b],
        vec!["EXEC"],
        vec!["SELECT", "0"],
        vec!["GET", &b],
    ];
    let mut request = Vec::new();
    for args in &cmds {
        request.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    let reply = common::raw_exchange(server.port, &request, b"$4\r\n1999\r\n");
    assert_eq!(
        reply,
        "+OK\r\n-ERR value is not an integer or out of range\r\n+OK\r\n$-1\r\n+OK\r\n+OK\r\n\
         +QUEUED\r\n*1\r\n$7\r\nin-db-1\r\n+OK\r\n$4\r\n1999\r\n"
    );
}

#[test]
fn inline_commands_work() {
    let server = common::mayfly();
    let mut s = raw_conn(server.port);
    s.write_all(b"SET inline \"a b\"\r\nGET inline\r\nPING\r\n").unwrap();
    let out = read_some(&mut s, 5 + 9 + 7);
    assert_eq!(out, b"+OK\r\n$3\r\na b\r\n+PONG\r\n");
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let server = common::mayfly();
    let mut good = server.conn();
    let _: () = good.set("still", "here").unwrap();
    let cases: &[(&[u8], &[u8])] = &[
        (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$536870913\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (
            b"*99999999999\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"SET \"unbalanced\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (input, want) in cases {
        let mut s = raw_conn(server.port);
        s.write_all(input).unwrap();
        let out = read_some(&mut s, want.len());
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
        assert!(
            peer_closed(&mut s),
            "connection should close after {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let mut s = raw_conn(server.port);
    s.write_all(&vec![b'a'; 70 * 1024]).unwrap();
    let out = read_some(&mut s, 10);
    assert!(String::from_utf8_lossy(&out).starts_with("-ERR Protocol error: too big inline request"));
    let v: String = good.get("still").unwrap();
    assert_eq!(v, "here");
}

#[test]
fn a_protocol_error_after_a_long_pipeline_comes_after_every_reply() {
    // More commands than one batch (64), on both shards, then bad input.
    let server = common::mayfly();
    let mut s = raw_conn(server.port);
    let mut input = Vec::new();
    for i in 0..150 {
        input.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n$6\r\nk:{i:04}\r\n$1\r\nv\r\n").as_bytes());
        input.extend_from_slice(format!("*2\r\n$4\r\nINCR\r\n$6\r\nn:{:04}\r\n", i % 7).as_bytes());
    }
    input.extend_from_slice(b"*1\r\n$-5\r\n");
    s.write_all(&input).unwrap();
    let mut want = String::new();
    for i in 0..150 {
        want.push_str(&format!("+OK\r\n:{}\r\n", i / 7 + 1));
    }
    want.push_str("-ERR Protocol error: invalid bulk length\r\n");
    let out = read_some(&mut s, want.len());
    assert_eq!(String::from_utf8_lossy(&out), want);
    assert!(peer_closed(&mut s));
}

#[test]
fn unknown_commands_and_arity_errors_use_redis_text() {
    let server = common::mayfly();
    let mut c = server.conn();
    let err = cmd("NOSUCH").arg("a").arg("b").query::<()>(&mut c).unwrap_err();
    assert_eq!(
        err.to_string(),
        "An error was signalled by the server - ResponseError: unknown command 'NOSUCH', with args beginning with: 'a' 'b' "
    );
    let err = cmd("GET").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("wrong number of arguments for 'get' command"));
    let v: String = cmd("PING").query(&mut c).unwrap();
    assert_eq!(v, "PONG");
}

#[test]
fn resp3_hello_switches_reply_types() {
    let server = common::mayfly();
    let mut c = server.conn3();
    let _: () = c.hset("h", "f", "v").unwrap();
    let v: Value = cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert!(matches!(v, Value::Map(_)), "got {v:?}");
    let v: Value = cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
    let mut s = raw_conn(server.port);
    s.write_all(b"HELLO 3\r\nGET missing\r\nHELLO 4\r\n").unwrap();
    let out = String::from_utf8_lossy(&read_until(&mut s, b"version\r\n")).into_owned();
    assert!(out.starts_with("%7\r\n"), "{out}");
    assert!(out.contains("_\r\n"), "{out}");
    assert!(out.ends_with("-NOPROTO unsupported protocol version\r\n"), "{out}");
}

#[test]
fn large_values_arrive_in_pieces() {
    let server = common::mayfly();
    let mut s = raw_conn(server.port);
    let value = vec![b'x'; 3 * 1024 * 1024];
    let mut req = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    for chunk in req.chunks(100_000) {
        s.write_all(chunk).unwrap();
    }
    assert_eq!(read_some(&mut s, 5), b"+OK\r\n");
    let mut c = server.conn();
    let n: usize = c.strlen("big").unwrap();
    assert_eq!(n, value.len());
}

/// Every connection of a core receives into one shared set of buffers: many
/// connections sending large pipelines at once must each get their own
/// bytes back intact, whether or not the buffers ran out on the way.
#[test]
fn many_connections_sending_at_once_keep_their_bytes() {
    let server = common::mayfly_with(1, &[]);
    let value_of = |conn: usize, i: usize| -> Vec<u8> {
        (0..40_000)
            .map(|j| b'a' + ((conn * 7 + i * 3 + j) % 26) as u8)
            .collect()
    };
    let port = server.port;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let conns: Vec<usize> = (w * 60..(w + 1) * 60).collect();
                let mut streams: Vec<TcpStream> = conns.iter().map(|_| raw_conn(port)).collect();
                for (&conn, s) in conns.iter().zip(streams.iter_mut()) {
                    let mut req = Vec::new();
                    for i in 0..2 {
                        let key = format!("k:{conn}:{i}");
                        let value = value_of(conn, i);
                        req.extend_from_slice(
                            format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n", key.len(), value.len()).as_bytes(),
                        );
                        req.extend_from_slice(&value);
                        req.extend_from_slice(b"\r\n");
                    }
                    s.write_all(&req).unwrap();
                }
                for s in streams.iter_mut() {
                    assert_eq!(read_some(s, 10), b"+OK\r\n+OK\r\n");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut c = server.conn();
    for conn in 0..240 {
        for i in 0..2 {
            let got: Vec<u8> = c.get(format!("k:{conn}:{i}")).unwrap();
            assert!(got == value_of(conn, i), "value {conn}:{i} differs");
        }
    }
}

/// A client that sends without reading its replies is held back by TCP once
/// the server stops taking its bytes: the server must not keep receiving
/// into its own memory without bound.
#[test]
fn a_client_that_never_reads_is_held_back() {
    let server = common::mayfly_with(1, &[]);
    let mut c = server.conn();
    let _: () = c.set("big", vec![b'v'; 100_000]).unwrap();
    let mut s = raw_conn(server.port);
    s.set_nonblocking(true).unwrap();
    let chunk = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(4096);
    // About 6 MB fit in the two sockets' kernel buffers on this kind of
    // machine; a server that kept reading took 67 MB here.
    let limit = 32usize << 20;
    let mut written = 0usize;
    let mut stalls = 0;
    while written < limit {
        match s.write(&chunk) {
            Ok(n) => {
                written += n;
                stalls = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Give the server time to drain, in case it is only slow.
                stalls += 1;
                if stalls == 20 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    assert!(
        written < limit,
        "the server took {written} bytes from a client that reads nothing"
    );
    drop(s);
    let pong: String = cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}
