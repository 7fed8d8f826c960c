//! Starts real servers for black-box tests over TCP.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A server process that is killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    /// Where the server's stderr goes (Mayfly only).
    log: Option<PathBuf>,
    /// The test stopped it (`terminate`), or saw it stop (`is_alive`).
    stopped: bool,
}

impl Drop for Server {
    /// A server that exited by itself during its test says so, with its
    /// stderr, in the failing test's output.
    fn drop(&mut self) {
        if let (false, Ok(Some(status))) = (self.stopped, self.child.try_wait()) {
            let log = self.log.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
            eprintln!(
                "the server on port {} exited during the test ({status}); its stderr:\n{}",
                self.port,
                log.unwrap_or_default()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.log {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Server {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }

    pub fn conn(&self) -> redis::Connection {
        self.client().get_connection().expect("connect")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A RESP3 connection.
    pub fn conn3(&self) -> redis::Connection {
        redis::Client::open(format!("{}?protocol=resp3", self.url()))
            .expect("client")
            .get_connection()
            .expect("connect")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.stopped = true;
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(sent.success());
        self.child.wait().expect("wait")
    }

    /// Whether the process is still running; a test that asks expects it
    /// may stop by itself.
    pub fn is_alive(&mut self) -> bool {
        let alive = matches!(self.child.try_wait(), Ok(None));
        self.stopped |= !alive;
        alive
    }
}

/// A port nothing listens on. Each call in this process gets a different
/// one: asking the kernel for an ephemeral port could hand two parallel
/// tests the same port, and one test's client could then reach the
/// other's server before its own had failed to bind. The range, 20000 to
/// 31999, lies below Linux's ephemeral ports.
pub fn free_port() -> u16 {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + (std::process::id().wrapping_mul(97).wrapping_add(n) % 12000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until the server accepts connections. False if it exited first
/// (for example because a parallel test took the same free port).
fn wait_ready(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server on port {port} did not start");
}

/// Starts a server on a free port, retrying when the port was taken.
/// `command` gets the port and the file for the server's stderr, if any.
fn start(mut command: impl FnMut(u16) -> (Command, Option<PathBuf>)) -> Server {
    for _ in 0..5 {
        let port = free_port();
        let (mut command, log) = command(port);
        let mut child = command.spawn().expect("spawn server");
        if wait_ready(port, &mut child) {
            return Server {
                child,
                port,
                log,
                stopped: false,
            };
        }
    }
    panic!("could not start a server on a free port");
}

/// Starts Mayfly with `threads` executors and extra flags.
pub fn mayfly_with(threads: usize, extra: &[&str]) -> Server {
    start(|port| {
        let log = std::env::temp_dir().join(format!("mayfly-test-{}-{port}.log", std::process::id()));
        let stderr = std::fs::File::create(&log).map_or(Stdio::null(), Stdio::from);
        let mut c = Command::new(env!("CARGO_BIN_EXE_mayfly"));
        c.arg(format!("--port={port}"))
            .arg(format!("--proactor_threads={threads}"))
            .arg("--loglevel=warning")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr);
        (c, Some(log))
    })
}

/// Starts Mayfly with two executors, so keys spread over two shards.
pub fn mayfly() -> Server {
    mayfly_with(2, &[])
}

/// Starts Debian's redis-server, if installed. In CI it must be.
pub fn redis_server() -> Option<Server> {
    if let Err(e) = Command::new("redis-server").arg("--version").output() {
        assert!(std::env::var_os("CI").is_none(), "redis-server is required in CI: {e}");
        eprintln!("redis-server not installed; skipping the comparison");
        return None;
    }
    Some(start(|port| {
        let mut c = Command::new("redis-server");
        c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        (c, None)
    }))
}

/// Runs a raw command and returns its reply value (or error) for comparison.
pub fn raw(conn: &mut redis::Connection, args: &[&[u8]]) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("utf8 name"));
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(conn)
}

/// Two keys that live on different shards of a two-shard server.
pub fn keys_on_two_shards(prefix: &str) -> (String, String) {
    let first = format!("{prefix}:0");
    let s0 = mayfly::shard::shard_of(first.as_bytes(), 2);
    for i in 1..1000 {
        let k = format!("{prefix}:{i}");
        if mayfly::shard::shard_of(k.as_bytes(), 2) != s0 {
            return (first, k);
        }
    }
    panic!("no key on the other shard");
}

/// Sends raw bytes on a fresh connection and reads until the reply ends
/// with `until` (or 5 s pass). For replies a client library would reshape.
pub fn raw_exchange(port: u16, request: &[u8], until: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(until) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
