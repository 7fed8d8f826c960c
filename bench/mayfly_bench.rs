//! mayfly-bench: a closed-loop RESP load generator with HdrHistogram
//! latencies, for Mayfly and Redis alike.
//!
//! Every connection (`--threads` x `--clients` of them) has an OS thread of
//! its own, so no connection waits behind another: it writes `--pipeline`
//! requests, then reads their replies. A request's latency runs from the
//! write of its batch to the arrival of its reply.
//!
//! With `--rate-limiting N` (memtier's option: requests per second per
//! connection) the load is open-loop instead: each connection sends its
//! batches on a fixed schedule, whatever the server's speed, and a
//! request's latency runs from the time it was due, so a server that falls
//! behind is charged for the wait (no coordinated omission).
//!
//! Workloads:
//! * `getset`: SET and GET in `--ratio` (memtier's default 1:10).
//! * `cacheops`: EVALSHA of two scripts shaped like django-cacheops's, 9:1.
//!   The first reads a cache key and on a miss writes it with a TTL and
//!   SADDs it into `conj:` sets built from ARGV; the second reads a `conj:`
//!   set and deletes the keys it names. Neither declares those keys.
//! * `script-declared`: EVALSHA of a script that touches only KEYS[1].
//! * `multi`: MULTI, two SETs and a GET on different keys, EXEC.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Workload {
    Getset,
    Cacheops,
    ScriptDeclared,
    Multi,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum KeyPattern {
    /// Uniform random.
    R,
    /// Gaussian around the middle of the key range.
    G,
    /// Sequential.
    S,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "mayfly-bench", about = "RESP load generator with HdrHistogram latencies")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(short, long, default_value_t = 6379)]
    port: u16,
    /// Threads.
    #[arg(short, long, default_value_t = 2)]
    threads: usize,
    /// Connections per thread.
    #[arg(short, long, default_value_t = 25)]
    clients: usize,
    /// Requests in flight per connection.
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// Seconds to run (ignored when --requests is given).
    #[arg(long, default_value_t = 10)]
    test_time: u64,
    /// Total requests to send instead of a time limit.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    #[arg(long, default_value_t = 0)]
    key_minimum: u64,
    #[arg(long, default_value_t = 100_000)]
    key_maximum: u64,
    #[arg(long, value_enum, default_value = "r")]
    key_pattern: KeyPattern,
    #[arg(long, default_value = "key:")]
    key_prefix: String,
    /// Value size in bytes.
    #[arg(short = 'd', long, default_value_t = 32)]
    data_size: usize,
    /// SET:GET ratio for getset.
    #[arg(long, default_value = "1:10")]
    ratio: String,
    #[arg(short, long, value_enum, default_value = "getset")]
    workload: Workload,
    /// Write the latency percentile distribution (HdrHistogram .hgrm text).
    #[arg(long)]
    hdr_out: Option<String>,
    /// Requests per second per connection, sent on a schedule (open loop);
    /// 0 sends the next batch as soon as the last one is answered.
    #[arg(long, default_value_t = 0)]
    rate_limiting: u64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Print the shard of this key on a two-shard Mayfly, then exit (lets
    /// scripts pick keys on chosen shards).
    #[arg(long)]
    shard_of: Option<String>,
}

const CACHE_THING: &str = "--!df flags=allow-undeclared-keys
local key = KEYS[1]
local hit = redis.call('get', key)
if hit then return hit end
redis.call('setex', key, tonumber(ARGV[2]), ARGV[1])
for i = 3, #ARGV do
  local conj = 'conj:' .. ARGV[i]
  redis.call('sadd', conj, key)
  redis.call('expire', conj, tonumber(ARGV[2]) * 2)
end
return false";

const INVALIDATE: &str = "--!df flags=allow-undeclared-keys
local conj = 'conj:' .. ARGV[1]
local keys = redis.call('smembers', conj)
for _, k in ipairs(keys) do redis.call('del', k) end
redis.call('del', conj)
return #keys";

const DECLARED: &str = "local v = redis.call('get', KEYS[1])
if not v then redis.call('set', KEYS[1], ARGV[1]) end
return v";

/// Per-command statistics of one thread.
struct Stats {
    names: Vec<&'static str>,
    hist: Vec<Histogram<u64>>,
    errors: u64,
    first_error: Option<String>,
}

impl Stats {
    fn new(names: &[&'static str]) -> Stats {
        Stats {
            names: names.to_vec(),
            hist: names
                .iter()
                .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"))
                .collect(),
            errors: 0,
            first_error: None,
        }
    }
}

/// A tiny deterministic generator per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct KeyGen {
    min: u64,
    span: u64,
    pattern: KeyPattern,
    seq: u64,
}

impl KeyGen {
    fn next(&mut self, rng: &mut Rng) -> u64 {
        match self.pattern {
            KeyPattern::R => self.min + rng.next() % self.span,
            KeyPattern::S => {
                self.seq = (self.seq + 1) % self.span;
                self.min + self.seq
            }
            KeyPattern::G => {
                // Box-Muller; sd = span / 6, clamped to the range.
                let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let x = (self.span as f64 / 2.0 + z * self.span as f64 / 6.0).clamp(0.0, (self.span - 1) as f64);
                self.min + x as u64
            }
        }
    }
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Length of the complete reply at the start of `buf`, if any, and whether
/// it is (or, for MULTI/EXEC, contains) an error.
fn reply_len(buf: &[u8]) -> Option<(usize, bool)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = &buf[1..line_end];
    let after = line_end + 2;
    match buf.first()? {
        b'+' | b':' | b'_' | b',' | b'#' => Some((after, false)),
        b'-' => Some((after, true)),
        b'$' => {
            let n: i64 = std::str::from_utf8(head).ok()?.parse().ok()?;
            if n < 0 {
                return Some((after, false));
            }
            let end = after + n as usize + 2;
            (buf.len() >= end).then_some((end, false))
        }
        b'*' | b'%' | b'~' => {
            let mut n: i64 = std::str::from_utf8(head).ok()?.parse().ok()?;
            if buf[0] == b'%' {
                n *= 2;
            }
            let mut pos = after;
            let mut err = false;
            for _ in 0..n.max(0) {
                let (len, e) = reply_len(&buf[pos..])?;
                pos += len;
                err |= e;
            }
            Some((pos, err))
        }
        _ => Some((after, true)),
    }
}

/// Loads `body` with SCRIPT LOAD and returns its SHA1.
fn load_script(stream: &mut TcpStream, body: &str) -> Result<String, String> {
    let mut req = Vec::new();
    encode(&mut req, &[b"SCRIPT", b"LOAD", body.as_bytes()]);
    stream.write_all(&req).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((len, err)) = reply_len(&buf) {
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if err {
                return Err(text.trim().to_string());
            }
            return Ok(text.lines().nth(1).unwrap_or("").to_string());
        }
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Shared {
    args: Args,
    shas: Vec<String>,
    stop: AtomicBool,
    done: AtomicU64,
    budget: Option<u64>,
    failure: Mutex<Option<String>>,
}

fn command_names(w: Workload) -> &'static [&'static str] {
    match w {
        Workload::Getset => &["SET", "GET"],
        Workload::Cacheops => &["cache_thing", "invalidate"],
        Workload::ScriptDeclared => &["EVALSHA"],
        Workload::Multi => &["MULTI/EXEC"],
    }
}

/// Builds one request; returns the index of its command name.
fn build_request(
    shared: &Shared,
    rng: &mut Rng,
    keys: &mut KeyGen,
    value: &[u8],
    ratio: (u64, u64),
    out: &mut Vec<u8>,
) -> usize {
    let a = &shared.args;
    let key = |n: u64| format!("{}{}", a.key_prefix, n);
    match a.workload {
        Workload::Getset => {
            let k = key(keys.next(rng));
            if rng.next() % (ratio.0 + ratio.1) < ratio.0 {
                encode(out, &[b"SET", k.as_bytes(), value]);
                0
            } else {
                encode(out, &[b"GET", k.as_bytes()]);
                1
            }
        }
        Workload::Cacheops => {
            let id = keys.next(rng);
            if rng.next() % 10 < 9 {
                let k = format!("q:{id}");
                let c1 = format!("t:id={}", id % 1000);
                let c2 = format!("t:cat={}", id % 37);
                encode(
                    out,
                    &[
                        b"EVALSHA",
                        shared.shas[0].as_bytes(),
                        b"1",
                        k.as_bytes(),
                        value,
                        b"600",
                        c1.as_bytes(),
                        c2.as_bytes(),
                    ],
                );
                0
            } else {
                let c = format!("t:id={}", id % 1000);
                encode(out, &[b"EVALSHA", shared.shas[1].as_bytes(), b"0", c.as_bytes()]);
                1
            }
        }
        Workload::ScriptDeclared => {
            let k = key(keys.next(rng));
            encode(out, &[b"EVALSHA", shared.shas[0].as_bytes(), b"1", k.as_bytes(), value]);
            0
        }
        Workload::Multi => {
            let (k1, k2, k3) = (key(keys.next(rng)), key(keys.next(rng)), key(keys.next(rng)));
            encode(out, &[b"MULTI"]);
            encode(out, &[b"SET", k1.as_bytes(), value]);
            encode(out, &[b"SET", k2.as_bytes(), value]);
            encode(out, &[b"GET", k3.as_bytes()]);
            encode(out, &[b"EXEC"]);
            0
        }
    }
}

/// Replies one request of this workload produces.
fn replies_per_request(w: Workload) -> usize {
    if w == Workload::Multi { 5 } else { 1 }
}

fn run_thread(shared: Arc<Shared>, seed: u64, worker: u64, workers: u64) -> Stats {
    let a = &shared.args;
    let mut stats = Stats::new(command_names(a.workload));
    let fail = |msg: String| {
        shared.failure.lock().expect("failure").get_or_insert(msg);
        shared.stop.store(true, Ordering::SeqCst);
    };
    let mut conns = Vec::new();
    {
        match TcpStream::connect((a.host.as_str(), a.port)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                conns.push((s, Vec::<u8>::new()));
            }
            Err(e) => {
                fail(format!("cannot connect to {}:{}: {e}", a.host, a.port));
                return stats;
            }
        }
    }
    let ratio = {
        let (s, g) = a.ratio.split_once(':').unwrap_or(("1", "10"));
        (s.parse().unwrap_or(1), g.parse().unwrap_or(10))
    };
    let mut rng = Rng(seed | 1);
    let mut keys = KeyGen {
        min: a.key_minimum,
        span: (a.key_maximum - a.key_minimum).max(1),
        pattern: a.key_pattern,
        // Sequential workers start evenly apart, so together they cover
        // the key range once.
        seq: ((a.key_maximum - a.key_minimum).max(1) / workers.max(1)) * worker,
    };
    let value = vec![b'x'; a.data_size];
    let per = replies_per_request(a.workload);
    let mut out = Vec::new();
    let mut kinds: Vec<Vec<usize>> = vec![Vec::new(); conns.len()];
    let mut chunk = vec![0u8; 64 * 1024];
    let schedule = Schedule::new(a.rate_limiting, a.pipeline, &mut rng);
    let mut batches = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        // Claim this round's requests when running to a budget.
        let round = (a.pipeline * conns.len()) as u64;
        if let Some(budget) = shared.budget {
            let before = shared.done.fetch_add(round, Ordering::SeqCst);
            if before >= budget {
                break;
            }
        }
        let started = match &schedule {
            Some(s) => s.wait_for(batches),
            None => Instant::now(),
        };
        batches += 1;
        for (i, (stream, _)) in conns.iter_mut().enumerate() {
            out.clear();
            kinds[i].clear();
            for _ in 0..a.pipeline {
                kinds[i].push(build_request(&shared, &mut rng, &mut keys, &value, ratio, &mut out));
            }
            if let Err(e) = stream.write_all(&out) {
                fail(format!("connection lost while writing: {e}"));
                return stats;
            }
        }
        for (i, (stream, buf)) in conns.iter_mut().enumerate() {
            let mut got = 0;
            let mut request_err = false;
            while got < a.pipeline * per {
                match reply_len(buf) {
                    Some((len, err)) => {
                        request_err |= err;
                        if err && stats.first_error.is_none() {
                            stats.first_error = Some(String::from_utf8_lossy(&buf[..len]).trim().to_string());
                        }
                        buf.drain(..len);
                        got += 1;
                        if got % per == 0 {
                            let kind = kinds[i][got / per - 1];
                            let us = started.elapsed().as_micros().max(1) as u64;
                            let _ = stats.hist[kind].record(us);
                            if request_err {
                                stats.errors += 1;
                            }
                            request_err = false;
                        }
                    }
                    None => match stream.read(&mut chunk) {
                        Ok(0) => {
                            fail("connection closed by the server".into());
                            return stats;
                        }
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) => {
                            fail(format!("connection lost or timed out while reading: {e}"));
                            return stats;
                        }
                    },
                }
            }
        }
        if shared.budget.is_none() {
            shared.done.fetch_add(round, Ordering::Relaxed);
        }
    }
    stats
}

/// When an open-loop connection's batches are due.
struct Schedule {
    start: Instant,
    every: Duration,
}

impl Schedule {
    /// None for closed loop (`rate` 0). Connections start at random phases,
    /// so their requests do not arrive in lockstep.
    fn new(rate: u64, pipeline: usize, rng: &mut Rng) -> Option<Schedule> {
        if rate == 0 {
            return None;
        }
        let every = Duration::from_secs_f64(pipeline as f64 / rate as f64);
        // Sleeps end within a microsecond of their deadline, not the
        // default 50.
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer argument.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
        Some(Schedule {
            start: Instant::now() + every.mul_f64(rng.unit()),
            every,
        })
    }

    /// Sleeps until batch `n` is due and returns when that was.
    fn wait_for(&self, n: u64) -> Instant {
        let due = self.start + self.every.mul_f64(n as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        due
    }
}

fn write_hgrm(path: &str, h: &Histogram<u64>) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    writeln!(
        f,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for v in h.iter_quantiles(1) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>14}", "")
        };
        writeln!(
            f,
            "{:>12.3} {:>14.12} {:>10} {}",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            v.count_since_last_iteration(),
            inv
        )?;
    }
    writeln!(
        f,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]\n#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    )?;
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Some(key) = &args.shard_of {
        println!("{}", mayfly::shard::shard_of(key.as_bytes(), 2));
        return;
    }
    if args.key_maximum <= args.key_minimum || args.threads == 0 || args.clients == 0 || args.pipeline == 0 {
        eprintln!("mayfly-bench: need key_maximum > key_minimum and non-zero threads, clients, pipeline");
        std::process::exit(2);
    }
    let mut shas = Vec::new();
    let scripts: &[&str] = match args.workload {
        Workload::Cacheops => &[CACHE_THING, INVALIDATE],
        Workload::ScriptDeclared => &[DECLARED],
        _ => &[],
    };
    if !scripts.is_empty() {
        let mut s = match TcpStream::connect((args.host.as_str(), args.port)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("mayfly-bench: cannot connect to {}:{}: {e}", args.host, args.port);
                std::process::exit(1);
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        for body in scripts {
            match load_script(&mut s, body) {
                Ok(sha) => shas.push(sha),
                Err(e) => {
                    eprintln!("mayfly-bench: SCRIPT LOAD failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    let shared = Arc::new(Shared {
        budget: args.requests,
        args: args.clone(),
        shas,
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        failure: Mutex::new(None),
    });
    let started = Instant::now();
    let handles: Vec<_> = (0..args.threads * args.clients)
        .map(|t| {
            let shared = shared.clone();
            let workers = (args.threads * args.clients) as u64;
            std::thread::spawn(move || {
                run_thread(
                    shared,
                    0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678_9abc),
                    t as u64,
                    workers,
                )
            })
        })
        .collect();
    let mut last = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let elapsed = started.elapsed();
        if args.requests.is_none() && elapsed >= Duration::from_secs(args.test_time) {
            shared.stop.store(true, Ordering::SeqCst);
        }
        let done = shared.done.load(Ordering::Relaxed);
        if !args.quiet && elapsed.as_millis() / 1000 != last {
            last = elapsed.as_millis() / 1000;
            eprint!(
                "\r[{:>4}s] {:>12} requests, {:>10.0} ops/s   ",
                elapsed.as_secs(),
                done,
                done as f64 / elapsed.as_secs_f64()
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!();
    }
    let mut merged = Stats::new(command_names(args.workload));
    for h in handles {
        let s = h.join().expect("bench thread");
        for (m, t) in merged.hist.iter_mut().zip(&s.hist) {
            m.add(t).expect("same bounds");
        }
        merged.errors += s.errors;
        if merged.first_error.is_none() {
            merged.first_error = s.first_error;
        }
    }
    if let Some(f) = shared.failure.lock().expect("failure").take() {
        eprintln!("mayfly-bench: {f}");
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    println!(
        "{:<14} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "command", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, h) in merged.names.iter().zip(&merged.hist) {
        all.add(h).expect("same bounds");
        print_row(name, h, elapsed);
    }
    print_row("TOTAL", &all, elapsed);
    println!("errors: {}", merged.errors);
    if let Some(e) = &merged.first_error {
        println!("first error reply: {e}");
    }
    if let Some(path) = &args.hdr_out
        && let Err(e) = write_hgrm(path, &all)
    {
        eprintln!("mayfly-bench: cannot write {path}: {e}");
    }
    if shared.failure.lock().expect("failure").is_some() || all.is_empty() {
        std::process::exit(1);
    }
}

fn print_row(name: &str, h: &Histogram<u64>, secs: f64) {
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "{:<14} {:>12.0} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
        name,
        h.len() as f64 / secs,
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );
}
