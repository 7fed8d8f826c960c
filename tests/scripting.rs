//! Lua scripting: EVAL, EVALSHA, SCRIPT, flags, modes and atomicity.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Commands, Value, cmd};

fn sha1(text: &str) -> String {
    mayfly::script::store::sha1_hex(text.as_bytes())
}

/// Scripts whose replies must match Redis byte for byte: conversions,
/// errors, cjson, cmsgpack, bit and struct.
const SCRIPTS: &[(&str, &[&str])] = &[
    ("return redis.call('incr', KEYS[1])", &["1", "n"]),
    ("return redis.call('set', KEYS[1], 'abc')", &["1", "s"]),
    ("return redis.call('incr', KEYS[1])", &["1", "s"]),
    ("return redis.pcall('incr', KEYS[1])", &["1", "s"]),
    (
        "local ok, e = pcall(redis.call, 'incr', KEYS[1]); return e",
        &["1", "s"],
    ),
    (
        "local ok, e = pcall(redis.call, 'incr', KEYS[1]); return type(e)",
        &["1", "s"],
    ),
    ("local e = redis.pcall('incr', KEYS[1]); return e.err", &["1", "s"]),
    ("x = 1", &["0"]),
    ("return y", &["0"]),
    ("\n\nreturn redis.call('nosuch')", &["0"]),
    ("return redis.call('get')", &["0"]),
    ("return redis.call('get', {})", &["0"]),
    ("return redis.call('set', KEYS[1], true)", &["1", "k"]),
    ("return {1,2,3.7,'x',nil,4}", &["0"]),
    ("return {ok='fine'}", &["0"]),
    ("return {err='bad thing'}", &["0"]),
    ("return redis.error_reply('My Error')", &["0"]),
    ("return redis.status_reply('Fine')", &["0"]),
    ("return true", &["0"]),
    ("return false", &["0"]),
    ("return 3.99", &["0"]),
    ("return -3.99", &["0"]),
    ("return math.huge", &["0"]),
    (
        "return {tostring(1), tostring(3.0), tostring(1e15), tostring(0.1), tostring(10/3), tostring(2^53)}",
        &["0"],
    ),
    ("return {tostring(nil), tostring(-0), 'a' .. 1.5}", &["0"]),
    ("return redis.sha1hex('')", &["0"]),
    ("local x = 1\nerror('boom')", &["0"]),
    ("error({err='custom'})", &["0"]),
    ("return type(loadstring)", &["0"]),
    ("return os", &["0"]),
    ("return print", &["0"]),
    ("return loadfile", &["0"]),
    ("_G.x = 1", &["0"]),
    ("return rawget(_G, 'nosuch')", &["0"]),
    ("return #KEYS + #ARGV", &["2", "a", "b", "c"]),
    ("return {KEYS[1], ARGV[1]}", &["1", "key", "arg"]),
    ("return redis.call('set', KEYS[1], 2.5)", &["1", "f"]),
    ("return redis.call('set', KEYS[1], 100000000000000)", &["1", "f"]),
    ("return redis.call('get', KEYS[1])", &["1", "f"]),
    ("return redis.call('get', 'missing')", &["0"]),
    ("return type(redis.call('get', 'missing'))", &["0"]),
    ("return redis.call('ping')", &["0"]),
    ("return redis.call('eval', 'return 1', 0)", &["0"]),
    ("return redis.call('multi')", &["0"]),
    ("#!lua flags=no-writes\nreturn redis.call('set','x','1')", &["0"]),
    ("#!lua\nreturn redis.call('set','x','1')", &["0"]),
    ("#!lua flags=bogus\nreturn 1", &["0"]),
    ("redis.setresp(3); return redis.call('hgetall', 'nokey')", &["0"]),
    (
        "redis.call('hset', 'h', 'f', 'v'); redis.setresp(3); return type(redis.call('hgetall', 'h').map)",
        &["0"],
    ),
    ("redis.setresp(4)", &["0"]),
    ("return redis.log(redis.LOG_WARNING, 'from a test')", &["0"]),
    (
        "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}",
        &["0"],
    ),
    ("return redis.replicate_commands()", &["0"]),
    ("return cjson.encode({1,2,{a=1}})", &["0"]),
    ("return cjson.encode({})", &["0"]),
    ("return cjson.encode(cjson.decode('{\"a\":[1,2,null]}'))", &["0"]),
    ("return cjson.encode('x\"y/z\\n')", &["0"]),
    (
        "return {cjson.encode(1.5), cjson.encode(100000000000000), cjson.encode(0.1)}",
        &["0"],
    ),
    ("return cjson.decode('[1,2,{\"a\":1.5}]')[3].a", &["0"]),
    ("return tostring(cjson.decode('{\"id\":1}').id)", &["0"]),
    ("return tostring(cjson.null)", &["0"]),
    ("return cjson.decode('null') == cjson.null", &["0"]),
    ("return cjson.decode('[1,2')", &["0"]),
    ("return cjson.decode('')", &["0"]),
    ("return cjson.decode('{\"a\" 1}')", &["0"]),
    ("return #cjson.decode('[1,2,3,4,5,6,7,8,9,10,11]')", &["0"]),
    ("return cjson.decode('\"\\\\u00e9\\\\u20ac\"')", &["0"]),
    ("return cmsgpack.pack({1,2})", &["0"]),
    ("return cmsgpack.pack(1.5)", &["0"]),
    ("return cmsgpack.pack('abc', 300, -1, -200, 70000, true, false)", &["0"]),
    ("return cmsgpack.unpack(cmsgpack.pack({1,2,'x'}))", &["0"]),
    ("local t = cmsgpack.unpack(cmsgpack.pack({a=1})); return t.a", &["0"]),
    ("return {cmsgpack.unpack(cmsgpack.pack(1, 'two', 3))}", &["0"]),
    ("return bit.band(7, 3)", &["0"]),
    (
        "return {bit.bxor(5, 3), bit.lshift(1, 31), bit.tobit(4294967295), bit.bnot(0), bit.arshift(-256, 4)}",
        &["0"],
    ),
    (
        "return {bit.tohex(255), bit.tohex(-1, -4), bit.bor(1, 2, 4), bit.rol(1, 33), bit.bswap(1)}",
        &["0"],
    ),
    ("return struct.pack('>I2', 258)", &["0"]),
    ("return struct.unpack('>I2', '\\1\\2')", &["0"]),
    ("return {struct.unpack('<i4s', struct.pack('<i4s', -5, 'hi'))}", &["0"]),
    ("return struct.size('>iIh')", &["0"]),
    (
        "return {struct.unpack('>bBhHd', struct.pack('>bBhHd', -1, 255, -2, 65535, 1.5))}",
        &["0"],
    ),
    ("return struct.pack('q', 1)", &["0"]),
    ("return unpack({1,2,3})", &["0"]),
    ("return select('#', unpack({1,2,3}, 2, 3))", &["0"]),
    (
        "return {table.concat({'a','b'}, ','), string.rep('x', 3), string.format('%d', 3.7)}",
        &["0"],
    ),
    ("return {tonumber('0x10'), tonumber('1.5e3'), math.floor(3.5)}", &["0"]),
    ("return redis.call('mget', 'a', 'b')", &["0"]),
    ("return redis.call('incrbyfloat', 'fl', '1.5')", &["0"]),
    ("return redis.call('hgetall', 'h')", &["0"]),
];

/// `n` connections that each MGET `a` and `b`, `min_reads` times at least
/// and then until `stop` is set, handing each pair of values to `check`.
fn mget_readers(
    server: &common::Server,
    (a, b): (&str, &str),
    n: usize,
    min_reads: usize,
    stop: &Arc<AtomicBool>,
    check: fn(Option<i64>, Option<i64>),
) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let client = server.client();
            let (a, b, stop) = (a.to_string(), b.to_string(), stop.clone());
            thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) || reads < min_reads {
                    let (x, y): (Option<i64>, Option<i64>) = c.mget(&[&a, &b]).unwrap();
                    check(x, y);
                    reads += 1;
                }
            })
        })
        .collect()
}

/// Waits for the `writers`, then stops the `readers` and waits for them;
/// a panic in any thread fails the test.
fn finish(writers: Vec<thread::JoinHandle<()>>, stop: &AtomicBool, readers: Vec<thread::JoinHandle<()>>) {
    writers.into_iter().for_each(|w| w.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    readers.into_iter().for_each(|r| r.join().unwrap());
}

fn eval_reply(conn: &mut redis::Connection, script: &str, args: &[&str]) -> String {
    let mut c = cmd("EVAL");
    c.arg(script);
    for a in args {
        c.arg(*a);
    }
    match c.query::<Value>(conn) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn scripts_behave_like_redis() {
    let Some(redis) = common::redis_server() else { return };
    let mayfly = common::mayfly_with(2, &["--default_lua_flags=allow-undeclared-keys"]);
    let mut r = redis.conn();
    let mut m = mayfly.conn();
    for (script, args) in SCRIPTS {
        let want = eval_reply(&mut r, script, args);
        let got = eval_reply(&mut m, script, args);
        assert_eq!(got, want, "script {script:?} {args:?}");
    }
}

/// Sets a key to expire in 20 ms, then spins on TIME for 60 ms.
const OUTLIVE_TTL: &str = "redis.call('set', KEYS[1], 'v', 'PX', 20)
local t0 = redis.call('time')
local start = t0[1] * 1000000 + t0[2]
repeat
  local t = redis.call('time')
until t[1] * 1000000 + t[2] - start > 60000
return {redis.call('get', KEYS[1]), redis.call('exists', KEYS[1])}";

#[test]
fn keys_do_not_expire_while_a_script_runs() {
    let Some(redis) = common::redis_server() else { return };
    let mayfly = common::mayfly_with(2, &[]);
    for (server, name) in [(&redis, "redis"), (&mayfly, "mayfly")] {
        let mut conn = server.conn();
        let during = eval_reply(&mut conn, OUTLIVE_TTL, &["1", "short"]);
        assert_eq!(during, r#"array([bulk-string('"v"'), int(1)])"#, "{name}");
        let after: Option<String> = cmd("GET").arg("short").query(&mut conn).expect("GET");
        assert_eq!(after, None, "{name}: the key expires once the script is done");
    }
}

#[test]
fn evalsha_and_script_commands() {
    let server = common::mayfly();
    let mut c = server.conn();
    let sha: String = cmd("SCRIPT").arg("LOAD").arg("return ARGV[1]").query(&mut c).unwrap();
    assert_eq!(sha, sha1("return ARGV[1]"));
    let v: String = cmd("EVALSHA").arg(&sha).arg(0).arg("hi").query(&mut c).unwrap();
    assert_eq!(v, "hi");
    let v: String = cmd("EVALSHA")
        .arg(sha.to_uppercase())
        .arg(0)
        .arg("up")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "up");
    let exists: Vec<i64> = cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg("0".repeat(40))
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, vec![1, 0]);
    let list: Vec<(String, String)> = cmd("SCRIPT").arg("LIST").query(&mut c).unwrap();
    assert!(list.contains(&(sha.clone(), "return ARGV[1]".to_string())));
    // FLUSHDB leaves the script cache alone; SCRIPT FLUSH empties it.
    let _: () = cmd("FLUSHALL").query(&mut c).unwrap();
    let exists: Vec<i64> = cmd("SCRIPT").arg("EXISTS").arg(&sha).query(&mut c).unwrap();
    assert_eq!(exists, vec![1]);
    let _: () = cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    let err = cmd("EVALSHA").arg(&sha).arg(0).query::<Value>(&mut c).unwrap_err();
    assert_eq!(err.code(), Some("NOSCRIPT"));
    assert_eq!(err.detail(), Some("No matching script. Please use EVAL."));
    // redis-py's register_script path: EVALSHA, NOSCRIPT, then load.
    let script = redis::Script::new("return redis.call('incr', KEYS[1])");
    let n: i64 = script.key("counter").invoke(&mut c).unwrap();
    assert_eq!(n, 1);
    let n: i64 = script.key("counter").invoke(&mut c).unwrap();
    assert_eq!(n, 2);
}

#[test]
fn undeclared_keys_fail_by_default() {
    let server = common::mayfly();
    let mut c = server.conn();
    let script = "return redis.call('set', 'elsewhere', 1)";
    let err = cmd("EVAL").arg(script).arg(0).query::<Value>(&mut c).unwrap_err();
    let want = format!(
        "ERR script tried accessing undeclared key, key: elsewhere script: {}, on @user_script:1.",
        sha1(script)
    );
    assert_eq!(format!("{} {}", err.code().unwrap(), err.detail().unwrap()), want);
    let v: Option<String> = c.get("elsewhere").unwrap();
    assert_eq!(v, None);
    // Declared keys on both shards work; with two shards such a script
    // runs behind the barrier, which still refuses undeclared keys.
    let (a, b) = common::keys_on_two_shards("decl");
    let v: i64 = cmd("EVAL")
        .arg("redis.call('set', KEYS[1], 5); redis.call('set', KEYS[2], 6); return redis.call('get', KEYS[1]) + redis.call('get', KEYS[2])")
        .arg(2)
        .arg(&a)
        .arg(&b)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, 11);
    let err = cmd("EVAL")
        .arg("redis.call('set', KEYS[1], 7); return redis.call('set', 'elsewhere', 1)")
        .arg(2)
        .arg(&a)
        .arg(&b)
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(
        err.detail().unwrap().contains("undeclared key, key: elsewhere"),
        "{err}"
    );
    // As in Redis, what ran before the error stays.
    let v: Option<String> = c.get(&a).unwrap();
    assert_eq!(v.as_deref(), Some("7"));
    let v: Option<String> = c.get("elsewhere").unwrap();
    assert_eq!(v, None);
}

#[test]
fn declared_keys_on_some_of_three_shards_lock_ahead() {
    let server = common::mayfly_with(3, &[]);
    let mut c = server.conn();
    // Keys on shards 0 and 2 only: locked, not behind the barrier.
    let on = |shard: usize| {
        (0..1000)
            .map(|i| format!("three:{i}"))
            .find(|k| mayfly::shard::shard_of(k.as_bytes(), 3) == shard)
            .unwrap()
    };
    let (a, b) = (on(0), on(2));
    let script = "redis.call('incrby', KEYS[1], ARGV[1]); redis.call('incrby', KEYS[2], ARGV[1]); return redis.call('get', KEYS[1]) + redis.call('get', KEYS[2])";
    for round in 1..=3 {
        let v: i64 = cmd("EVAL")
            .arg(script)
            .arg(2)
            .arg(&a)
            .arg(&b)
            .arg(10)
            .query(&mut c)
            .unwrap();
        assert_eq!(v, 20 * round);
    }
    // Writers on connections spread over the cores; no MGET sees one
    // script half done.
    let stop = Arc::new(AtomicBool::new(false));
    let readers = mget_readers(&server, (&a, &b), 6, 0, &stop, |x, y| {
        assert_eq!(x, y, "saw a script half done")
    });
    let writers: Vec<_> = (0..6)
        .map(|_| {
            let client = server.client();
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                for _ in 0..200 {
                    let _: i64 = cmd("EVAL")
                        .arg(script)
                        .arg(2)
                        .arg(&a)
                        .arg(&b)
                        .arg(1)
                        .query(&mut c)
                        .unwrap();
                }
            })
        })
        .collect();
    finish(writers, &stop, readers);
    let (x, y): (i64, i64) = c.mget(&[&a, &b]).unwrap();
    assert_eq!((x, y), (30 + 1200, 30 + 1200));
    let err = cmd("EVAL")
        .arg("return redis.call('get', 'elsewhere')")
        .arg(2)
        .arg(&a)
        .arg(&b)
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(err.detail().unwrap().contains("undeclared key"), "{err}");
}

#[test]
fn every_flag_source_allows_undeclared_keys() {
    // The script's own flags line.
    let server = common::mayfly();
    let mut c = server.conn();
    let v: String = cmd("EVAL")
        .arg("--!df flags=allow-undeclared-keys\nreturn redis.call('set', 'free', 'x')")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "OK");
    let err = cmd("EVAL")
        .arg("--!df flags=nonsense\nreturn 1")
        .arg(0)
        .query::<Value>(&mut c)
        .unwrap_err();
    assert_eq!(err.detail(), Some("Invalid flag: nonsense"));
    // SCRIPT FLAGS, before the script is ever loaded.
    let body = "return redis.call('get', 'free')";
    let _: () = cmd("SCRIPT")
        .arg("FLAGS")
        .arg(sha1(body))
        .arg("allow-undeclared-keys")
        .query(&mut c)
        .unwrap();
    let v: String = cmd("EVAL").arg(body).arg(0).query(&mut c).unwrap();
    assert_eq!(v, "x");
    let err = cmd("SCRIPT")
        .arg("FLAGS")
        .arg("abc")
        .arg("no-writes")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(err.detail(), Some("syntax error"));
    let err = cmd("SCRIPT")
        .arg("FLAGS")
        .arg(sha1(body))
        .arg("bogus")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(err.detail(), Some("Invalid config format: Invalid flag: bogus"));
    // CONFIG SET lua_undeclared_keys_shas.
    let body2 = "return redis.call('strlen', 'free')";
    assert!(cmd("EVAL").arg(body2).arg(0).query::<i64>(&mut c).is_err());
    let _: () = cmd("CONFIG")
        .arg("SET")
        .arg("lua_undeclared_keys_shas")
        .arg(sha1(body2))
        .query(&mut c)
        .unwrap();
    let n: i64 = cmd("EVAL").arg(body2).arg(0).query(&mut c).unwrap();
    assert_eq!(n, 1);
    // --lua_undeclared_keys_shas at startup.
    let body3 = "return redis.call('exists', 'somewhere')";
    let server = common::mayfly_with(2, &[&format!("--lua_undeclared_keys_shas={}", sha1(body3))]);
    let mut c = server.conn();
    let n: i64 = cmd("EVAL").arg(body3).arg(0).query(&mut c).unwrap();
    assert_eq!(n, 0);
    // --default_lua_flags, which a script's own flags line overrides.
    let server = common::mayfly_with(2, &["--default_lua_flags=allow-undeclared-keys"]);
    let mut c = server.conn();
    let n: i64 = cmd("EVAL")
        .arg("return redis.call('exists', 'any')")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
    let err = cmd("EVAL")
        .arg("--!df flags=no-writes\nreturn redis.call('exists', 'any')")
        .arg(0)
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(err.detail().unwrap().contains("undeclared key"), "{err}");
    // A bad --default_lua_flags is refused at startup.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mayfly"))
        .arg("--default_lua_flags=wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid flag: wrong"));
}

#[test]
fn read_only_scripts_refuse_writes() {
    let server = common::mayfly();
    let mut c = server.conn();
    let err = cmd("EVAL_RO")
        .arg("return redis.call('set', KEYS[1], 1)")
        .arg(1)
        .arg("k")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        err.detail()
            .unwrap()
            .starts_with("Write commands are not allowed from read-only scripts.")
    );
    let _: () = c.set("k", "v").unwrap();
    let v: String = cmd("EVAL_RO")
        .arg("return redis.call('get', KEYS[1])")
        .arg(1)
        .arg("k")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "v");
    let err = cmd("EVAL")
        .arg("--!df flags=no-writes\nreturn redis.call('del', KEYS[1])")
        .arg(1)
        .arg("k")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(err.detail().unwrap().contains("read-only scripts"));
}

#[test]
fn a_global_script_is_never_seen_half_done() {
    let server = common::mayfly();
    let (a, b) = common::keys_on_two_shards("move");
    let mut c = server.conn();
    let _: () = c.mset(&[(&a, 100), (&b, 0)]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers = mget_readers(&server, (&a, &b), 50, 5, &stop, |x, y| {
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x + y, 100, "saw a torn state: {x} + {y}");
    });
    // The script names neither key: it runs as a global transaction.
    let script = format!(
        "--!df flags=allow-undeclared-keys\n\
         local from, to = '{a}', '{b}'\n\
         if tonumber(redis.call('get', from)) == 0 then from, to = to, from end\n\
         local n = tonumber(redis.call('get', from))\n\
         redis.call('decrby', from, n)\n\
         redis.call('incrby', to, n)\n\
         return n"
    );
    let started = Instant::now();
    let mut moves = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let n: i64 = cmd("EVAL").arg(&script).arg(0).query(&mut c).unwrap();
        assert_eq!(n, 100);
        moves += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(moves > 10, "only {moves} moves");
}

#[test]
fn concurrent_global_scripts_from_both_cores_stay_atomic() {
    global_scripts_stay_atomic(2);
}

#[test]
fn global_scripts_stay_atomic_with_four_cores_lending() {
    global_scripts_stay_atomic(4);
}

fn global_scripts_stay_atomic(threads: usize) {
    // Writers on many connections (spread over every core) share the
    // barrier's epochs, and a reader's MGET (a transaction of its own)
    // must never see one script half done.
    let server = common::mayfly_with(threads, &[]);
    let (a, b) = common::keys_on_two_shards("pair");
    let script = format!(
        "--!df flags=allow-undeclared-keys\n\
         redis.call('incr', '{a}')\n\
         return redis.call('decr', '{b}')"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let client = server.client();
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        thread::spawn(move || {
            let mut c = client.get_connection().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let (x, y): (Option<i64>, Option<i64>) = c.mget(&[&a, &b]).unwrap();
                assert_eq!(x.unwrap_or(0) + y.unwrap_or(0), 0, "saw a torn state: {x:?} {y:?}");
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let client = server.client();
            let script = script.clone();
            thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                for _ in 0..300 {
                    let _: i64 = cmd("EVAL").arg(&script).arg(0).query(&mut c).unwrap();
                }
            })
        })
        .collect();
    finish(writers, &stop, vec![reader]);
    let mut c = server.conn();
    let (x, y): (i64, i64) = c.mget(&[&a, &b]).unwrap();
    assert_eq!((x, y), (2400, -2400));
}

#[test]
fn a_core_lending_its_shard_keeps_answering() {
    // While a global script runs, the other core has lent it its shard but
    // still serves its own clients (it used to park until the loan came
    // back). Connections spread over both cores, so some are on that core.
    let server = common::mayfly();
    let mut conns: Vec<_> = (0..16).map(|_| server.conn()).collect();
    for c in conns.iter_mut() {
        let _: String = cmd("PING").query(c).unwrap();
    }
    let mut runner_conn = server.conn();
    let runner = thread::spawn(move || {
        let script = "--!df flags=allow-undeclared-keys\n\
                      local t0 = redis.call('time')\n\
                      repeat local t = redis.call('time')\n\
                      until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 600000\n\
                      return redis.call('incr', 'lent:done')";
        let n: i64 = cmd("EVAL").arg(script).arg(0).query(&mut runner_conn).unwrap();
        n
    });
    thread::sleep(Duration::from_millis(150));
    // All at once, so that a connection stuck behind the script holds up
    // only itself.
    let pings: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            thread::spawn(move || {
                let started = Instant::now();
                let _: String = cmd("PING").query(&mut c).unwrap();
                started.elapsed()
            })
        })
        .collect();
    let quick = pings
        .into_iter()
        .map(|p| p.join().unwrap())
        .filter(|waited| *waited < Duration::from_millis(100))
        .count();
    assert_eq!(runner.join().unwrap(), 1);
    assert!(quick > 0, "no connection was answered while the script ran");
    // Work on keys waited for the script, then ran.
    let mut c = server.conn();
    let n: i64 = c.incr("lent:done", 1).unwrap();
    assert_eq!(n, 2);
}

#[test]
fn non_atomic_scripts_finish_beside_cross_shard_transactions() {
    // A call that waits for a key locked by a transaction whose coordinator
    // runs on the script's own core must not block that core for good.
    let server = common::mayfly();
    let (a, b) = common::keys_on_two_shards("loose");
    let stop = Arc::new(AtomicBool::new(false));
    let readers = mget_readers(&server, (&a, &b), 4, 0, &stop, |_, _| {});
    let writers: Vec<_> = ["disable-atomicity,allow-undeclared-keys", "disable-atomicity"]
        .into_iter()
        .flat_map(|flags| std::iter::repeat_n(flags, 4))
        .map(|flags| {
            let client = server.client();
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let script =
                    format!("--!df flags={flags}\nredis.call('incr', KEYS[1])\nreturn redis.call('decr', KEYS[2])");
                for _ in 0..200 {
                    let _: i64 = cmd("EVAL").arg(&script).arg(2).arg(&a).arg(&b).query(&mut c).unwrap();
                }
            })
        })
        .collect();
    finish(writers, &stop, readers);
    let mut c = server.conn();
    let (x, y): (i64, i64) = c.mget(&[&a, &b]).unwrap();
    assert_eq!((x, y), (1600, -1600));
}

#[test]
fn one_shard_scripts_run_atomically_on_either_shard() {
    // Keys sharing a hash tag live on one shard: the script runs on that
    // shard's core. Tags on both shards, callers on both cores.
    let server = common::mayfly();
    let (t0, t1) = common::keys_on_two_shards("tag");
    let script = "local v = redis.call('incr', KEYS[1])\n\
                  redis.call('set', KEYS[2], v)\n\
                  return {v, redis.call('dbsize') > 0 and 1 or 0}";
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for tag in [&t0, &t1] {
        let (a, b) = (format!("{{{tag}}}a"), format!("{{{tag}}}b"));
        let client = server.client();
        let (ra, rb, stop) = (a.clone(), b.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut c = client.get_connection().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let (x, y): (Option<i64>, Option<i64>) = c.mget(&[&ra, &rb]).unwrap();
                assert_eq!(x, y, "saw a torn state");
            }
        }));
        for _ in 0..4 {
            let client = server.client();
            let (a, b) = (a.clone(), b.clone());
            threads.push(thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                for _ in 0..250 {
                    let r: (i64, i64) = cmd("EVAL").arg(script).arg(2).arg(&a).arg(&b).query(&mut c).unwrap();
                    assert!(r.0 >= 1 && r.1 == 1, "{r:?}");
                }
            }));
        }
    }
    let readers: Vec<_> = [0, 5].into_iter().map(|i| threads.remove(i - i / 5)).collect();
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let mut c = server.conn();
    for tag in [&t0, &t1] {
        let n: i64 = c.get(format!("{{{tag}}}a")).unwrap();
        assert_eq!(n, 1000);
    }
    // An undeclared key still fails in this mode.
    let err = cmd("EVAL")
        .arg("return redis.call('get', 'elsewhere')")
        .arg(1)
        .arg(format!("{{{t0}}}a"))
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(err.detail().unwrap().contains("undeclared key"), "{err}");
}

#[test]
fn eval_inside_multi_runs_in_the_transaction() {
    let server = common::mayfly();
    let mut c = server.conn();
    let (a, b) = common::keys_on_two_shards("mx");
    let (r1, r2): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("EVAL")
        .arg("return redis.call('incrby', KEYS[1], 5)")
        .arg(1)
        .arg(&a)
        .cmd("EVAL")
        .arg("--!df flags=allow-undeclared-keys\nreturn redis.call('incrby', ARGV[1], 7)")
        .arg(0)
        .arg(&b)
        .query(&mut c)
        .unwrap();
    assert_eq!((r1, r2), (5, 7));
}

#[test]
fn busy_scripts_and_script_kill() {
    let server = common::mayfly_with(2, &["--lua_time_limit=200"]);
    let client = server.client();
    let runner = thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        cmd("EVAL")
            .arg("local i = 0 while true do i = i + 1 end")
            .arg(0)
            .query::<Value>(&mut c)
    });
    // Clients on the other core get BUSY once the limit passes; find one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut killer = None;
    while Instant::now() < deadline && killer.is_none() {
        thread::sleep(Duration::from_millis(50));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        use std::io::{Read, Write};
        s.write_all(b"GET x\r\n").unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = s.read(&mut buf)
            && buf[..n].starts_with(b"-BUSY Redis is busy running a script.")
        {
            killer = Some(s);
        }
    }
    let mut killer = killer.expect("a client on the free core saw BUSY");
    use std::io::{Read, Write};
    killer.write_all(b"SCRIPT KILL\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = killer.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+OK\r\n");
    let result = runner.join().unwrap();
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains("Script killed by user with SCRIPT KILL"),
        "{err}"
    );
    let mut c = server.conn();
    let pong: String = cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let err = cmd("SCRIPT").arg("KILL").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.code(), Some("NOTBUSY"));
}

/// Sends `request` on a new connection and returns the first reply, or
/// None if none came within 300 ms (the connection landed on a busy core).
fn quick_exchange(port: u16, request: &[u8]) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    s.write_all(request).ok()?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn a_script_that_wrote_cannot_be_killed() {
    let server = common::mayfly_with(2, &["--lua_time_limit=100"]);
    let client = server.client();
    // Writes once, then spins for about three seconds.
    let script = "redis.call('set', KEYS[1], 1)\n\
                  local start = tonumber(redis.call('time')[1])\n\
                  local i = 0\n\
                  while tonumber(redis.call('time')[1]) < start + 3 do i = i + 1 end\n\
                  return 1";
    let runner = thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        cmd("EVAL").arg(script).arg(1).arg("w").query::<i64>(&mut c)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answer = String::new();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(30));
        if let Some(out) = quick_exchange(server.port, b"SCRIPT KILL\r\n")
            && out.starts_with("-UNKILLABLE")
        {
            answer = out;
            break;
        }
    }
    assert!(
        answer.starts_with("-UNKILLABLE Sorry the script already executed write commands"),
        "{answer}"
    );
    assert_eq!(runner.join().unwrap().unwrap(), 1);
}
