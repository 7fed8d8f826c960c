//! The same command sequences against redis-server and Mayfly: the replies
//! must match (errors included, by their full text).

mod common;

use redis::Value;

/// Commands whose reply order is unspecified: compare them sorted.
const UNORDERED: &[&str] = &[
    "smembers", "sunion", "sinter", "sdiff", "keys", "hgetall", "hkeys", "hvals", "spop",
];

fn normalise(name: &str, v: Value) -> Value {
    if !UNORDERED.contains(&name) {
        return v;
    }
    match v {
        Value::Array(mut items) if name == "hgetall" => {
            let mut pairs: Vec<(String, String)> = items
                .chunks(2)
                .map(|p| (format!("{:?}", p[0]), format!("{:?}", p[1])))
                .collect();
            pairs.sort();
            items.clear();
            Value::Array(
                pairs
                    .into_iter()
                    .map(|(k, v)| Value::SimpleString(format!("{k}={v}")))
                    .collect(),
            )
        }
        Value::Array(mut items) | Value::Set(mut items) => {
            items.sort_by_key(|i| format!("{i:?}"));
            Value::Array(items)
        }
        other => other,
    }
}

fn reply(conn: &mut redis::Connection, args: &[&str]) -> String {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match common::raw(conn, &bytes) {
        Ok(v) => format!("{:?}", normalise(&args[0].to_lowercase(), v)),
        Err(e) => format!("error: {e}"),
    }
}

fn check(script: &[&[&str]]) {
    let Some(redis) = common::redis_server() else {
        return;
    };
    let mayfly = common::mayfly();
    let mut r = redis.conn();
    let mut m = mayfly.conn();
    for args in script {
        let want = reply(&mut r, args);
        let got = reply(&mut m, args);
        assert_eq!(got, want, "command {args:?}");
    }
}

#[test]
fn strings_match_redis() {
    check(&[
        &["SET", "k", "v"],
        &["GET", "k"],
        &["SET", "k", "v2", "NX"],
        &["SET", "k", "v3", "XX", "GET"],
        &["SET", "k", "v4", "NX", "GET"],
        &["SET", "k", "v", "EX", "0"],
        &["SET", "k", "v", "EX", "abc"],
        &["SET", "k", "v", "PX", "100", "EX", "100"],
        &["SET", "k", "v", "KEEPTTL", "EX", "5"],
        &["SET", "k", "v", "BOGUS"],
        &["SET", "k"],
        &["SETNX", "k", "x"],
        &["SETEX", "k", "-1", "x"],
        &["PSETEX", "k2", "100000", "x"],
        &["GETSET", "k", "new"],
        &["GETDEL", "k"],
        &["GETDEL", "k"],
        &["INCR", "n"],
        &["INCRBY", "n", "41"],
        &["DECRBY", "n", "2"],
        &["INCRBY", "n", "x"],
        &["SET", "big", "9223372036854775807"],
        &["INCR", "big"],
        &["DECRBY", "n", "-9223372036854775808"],
        &["INCRBYFLOAT", "f", "1.5"],
        &["INCRBYFLOAT", "f", "abc"],
        &["INCRBYFLOAT", "f", "1e3"],
        &["APPEND", "a", "xy"],
        &["APPEND", "a", "z"],
        &["STRLEN", "a"],
        &["GETRANGE", "a", "0", "-1"],
        &["GETRANGE", "a", "-100", "1"],
        &["GETRANGE", "a", "5", "10"],
        &["SETRANGE", "a", "5", "Q"],
        &["GET", "a"],
        &["SETRANGE", "a", "-1", "Q"],
        &["MSET", "m1", "1", "m2", "2"],
        &["MGET", "m1", "m2", "m3", "a"],
        &["MSET", "m1"],
        &["MSETNX", "m1", "x", "m9", "y"],
        &["MSETNX", "m8", "x", "m9", "y"],
        &["SADD", "s", "1"],
        &["GET", "s"],
        &["INCR", "s"],
        &["APPEND", "s", "x"],
        &["GETEX", "m1", "EX", "100", "PERSIST"],
        &["GETEX", "m1", "PERSIST"],
        &["TTL", "m1"],
    ]);
}

#[test]
fn keys_and_expiry_match_redis() {
    check(&[
        &["SET", "a", "1"],
        &["SET", "b", "2"],
        &["EXISTS", "a", "b", "c", "a"],
        &["TYPE", "a"],
        &["TYPE", "nothing"],
        &["EXPIRE", "a", "100"],
        &["TTL", "a"],
        &["EXPIRE", "a", "200", "NX"],
        &["EXPIRE", "a", "200", "XX"],
        &["EXPIRE", "a", "50", "GT"],
        &["EXPIRE", "a", "50", "LT"],
        &["EXPIRE", "b", "50", "GT"],
        &["EXPIRE", "b", "50", "NX", "XX"],
        &["EXPIRE", "b", "50", "GT", "LT"],
        &["EXPIRE", "b", "50", "FOO"],
        &["EXPIRE", "b", "abc"],
        &["EXPIRE", "b", "9223372036854775807"],
        &["PERSIST", "a"],
        &["PERSIST", "a"],
        &["TTL", "a"],
        &["PTTL", "missing"],
        &["EXPIRETIME", "a"],
        &["EXPIREAT", "b", "1"],
        &["EXISTS", "b"],
        &["RENAME", "a", "c"],
        &["RENAME", "nope", "d"],
        &["RENAMENX", "c", "c"],
        &["SET", "d", "x"],
        &["RENAMENX", "c", "d"],
        &["COPY", "c", "e"],
        &["COPY", "c", "e"],
        &["COPY", "c", "e", "REPLACE"],
        &["COPY", "c", "c"],
        &["MOVE", "e", "1"],
        &["MOVE", "e", "0"],
        &["MOVE", "c", "99"],
        &["DEL", "c", "d", "zz"],
        &["UNLINK", "e"],
        &["KEYS", "*"],
        &["DBSIZE"],
        &["SELECT", "1"],
        &["EXISTS", "e"],
        &["SELECT", "99"],
        &["SELECT", "x"],
    ]);
}

/// Values on both sides of the size where Mayfly stops storing a string
/// inside its key's block (512 bytes), with TTLs that must survive edits.
#[test]
fn string_sizes_and_ttls_survive_edits_like_redis() {
    let a500 = "a".repeat(500);
    let b20 = "b".repeat(20);
    let c600 = "c".repeat(600);
    check(&[
        &["SET", "s", &a500, "EX", "1000"],
        &["APPEND", "s", &b20],
        &["STRLEN", "s"],
        &["TTL", "s"],
        &["GETRANGE", "s", "495", "505"],
        &["SETRANGE", "s", "700", "z"],
        &["STRLEN", "s"],
        &["TTL", "s"],
        &["GETRANGE", "s", "690", "-1"],
        &["SET", "s", "5", "KEEPTTL"],
        &["TTL", "s"],
        &["INCRBY", "s", "10"],
        &["TTL", "s"],
        &["INCRBYFLOAT", "s", "0.5"],
        &["GET", "s"],
        &["TTL", "s"],
        &["SET", "big", &c600],
        &["GET", "big"],
        &["EXPIRE", "big", "100"],
        &["GETEX", "big", "PERSIST"],
        &["TTL", "big"],
        &["GETDEL", "big"],
        &["EXISTS", "big"],
        &["SET", "l", &c600, "PX", "100000"],
        &["RENAME", "l", "m"],
        &["TTL", "m"],
        &["COPY", "m", "n"],
        &["GET", "n"],
        &["SADD", "m", "x"],
        &["SET", "m", "short", "GET"],
        &["TTL", "m"],
        &["LPUSH", "q", "1"],
        &["EXPIRE", "q", "300"],
        &["RPUSH", "q", "2"],
        &["TTL", "q"],
        &["SET", "q", "now a string", "KEEPTTL"],
        &["TYPE", "q"],
        &["TTL", "q"],
        &["MSET", "s", &c600, "q", "x"],
        &["MGET", "s", "q", "missing"],
        &["TTL", "q"],
    ]);
}

/// Small sets and hashes are packed as Redis's listpack and intset are,
/// and convert at Redis's limits; OBJECT ENCODING and the order of a
/// packed collection's SSCAN/HSCAN must match.
#[test]
fn packed_collections_convert_at_redis_limits() {
    let mut script: Vec<Vec<String>> = Vec::new();
    let mut run = |args: &[&str]| script.push(args.iter().map(|a| a.to_string()).collect());
    // A set of integers: intset up to 512 members, then a table.
    for i in 0..512 {
        run(&["SADD", "ints", &i.to_string()]);
    }
    run(&["OBJECT", "ENCODING", "ints"]);
    run(&["SSCAN", "ints", "0", "COUNT", "5"]);
    run(&["SADD", "ints", "512"]);
    run(&["OBJECT", "ENCODING", "ints"]);
    run(&["SCARD", "ints"]);
    // A set of strings: a table at 129 members. (Small ones are listpacks
    // as in Redis 7.2, which Debian's 7.0 lacks: see the test below.)
    run(&["SADD", "mixed", "1", "2", "x"]);
    run(&["SREM", "mixed", "2", "nope"]);
    for i in 0..126 {
        run(&["SADD", "mixed", &format!("m{i}")]);
    }
    run(&["SADD", "mixed", "one-more"]);
    run(&["OBJECT", "ENCODING", "mixed"]);
    run(&["SISMEMBER", "mixed", "m77"]);
    // A long member converts at once.
    let long = "L".repeat(65);
    run(&["SADD", "longset", "a", &long]);
    run(&["OBJECT", "ENCODING", "longset"]);
    run(&["SMEMBERS", "longset"]);
    // Hashes: updates keep a field's place; 513 fields or a 65-byte value
    // make a table.
    run(&["HSET", "h", "a", "1", "b", "2", "c", "3"]);
    run(&["HSET", "h", "a", "changed", "d", "4"]);
    run(&["HSCAN", "h", "0"]);
    run(&["HDEL", "h", "b", "zz"]);
    run(&["HSCAN", "h", "0"]);
    run(&["HINCRBY", "h", "d", "5"]);
    run(&["HINCRBYFLOAT", "h", "f", "1.5"]);
    run(&["HSCAN", "h", "0"]);
    run(&["OBJECT", "ENCODING", "h"]);
    for i in 0..508 {
        run(&["HSET", "h", &format!("f{i}"), "v"]);
    }
    run(&["HLEN", "h"]);
    run(&["OBJECT", "ENCODING", "h"]);
    run(&["HSET", "h", "last", "v"]);
    run(&["OBJECT", "ENCODING", "h"]);
    run(&["HGET", "h", "a"]);
    run(&["HSET", "hv", "f", &long]);
    run(&["OBJECT", "ENCODING", "hv"]);
    run(&["HGET", "hv", "f"]);
    run(&["HSETNX", "hv", "f", "x"]);
    run(&["HSTRLEN", "hv", "f"]);
    let commands: Vec<Vec<&str>> = script.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
    let refs: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
    check(&refs);
}

/// Redis 7.2's listpack sets (Debian's 7.0 has none): a small set of
/// strings is packed, SSCAN returns it whole, 129 members make a table.
#[test]
fn small_string_sets_are_listpacks_as_in_redis_7_2() {
    let server = common::mayfly();
    let mut c = server.conn();
    let enc = |c: &mut redis::Connection| reply(c, &["OBJECT", "ENCODING", "s"]);
    reply(&mut c, &["SADD", "s", "1", "2"]);
    assert_eq!(enc(&mut c), "bulk-string('\"intset\"')");
    reply(&mut c, &["SADD", "s", "x"]);
    assert_eq!(enc(&mut c), "bulk-string('\"listpack\"')");
    for i in 0..125 {
        reply(&mut c, &["SADD", "s", &format!("m{i}")]);
    }
    let scan = reply(&mut c, &["SSCAN", "s", "0", "COUNT", "2"]);
    assert!(scan.starts_with("array([bulk-string('\"0\"')"), "{scan}");
    assert_eq!(scan.matches("bulk-string").count(), 1 + 128);
    assert_eq!(enc(&mut c), "bulk-string('\"listpack\"')");
    reply(&mut c, &["SADD", "s", "one-more"]);
    assert_eq!(enc(&mut c), "bulk-string('\"hashtable\"')");
    assert_eq!(reply(&mut c, &["SCARD", "s"]), "int(129)");
}

#[test]
fn collections_match_redis() {
    check(&[
        &["SADD", "s", "a", "b", "c"],
        &["SADD", "s", "a"],
        &["SCARD", "s"],
        &["SISMEMBER", "s", "a"],
        &["SMISMEMBER", "s", "a", "z"],
        &["SMEMBERS", "s"],
        &["SREM", "s", "a", "z"],
        &["SADD", "t", "b", "x"],
        &["SUNION", "s", "t"],
        &["SINTER", "s", "t"],
        &["SDIFF", "s", "t"],
        &["SINTERSTORE", "u", "s", "t"],
        &["SMEMBERS", "u"],
        &["SINTERCARD", "2", "s", "t", "LIMIT", "1"],
        &["SINTERCARD", "0", "s"],
        &["SINTERCARD", "3", "s"],
        &["SMOVE", "s", "t", "c"],
        &["SMOVE", "s", "t", "nope"],
        &["SPOP", "nope"],
        &["SPOP", "s", "-1"],
        &["SRANDMEMBER", "nope"],
        &["SRANDMEMBER", "nope", "5"],
        &["HSET", "h", "f", "1", "g", "2"],
        &["HSET", "h", "f"],
        &["HGET", "h", "f"],
        &["HMGET", "h", "f", "x"],
        &["HGETALL", "h"],
        &["HINCRBY", "h", "f", "10"],
        &["HINCRBY", "h", "f", "x"],
        &["HINCRBYFLOAT", "h", "g", "0.5"],
        &["HSETNX", "h", "f", "z"],
        &["HEXISTS", "h", "f"],
        &["HSTRLEN", "h", "f"],
        &["HLEN", "h"],
        &["HDEL", "h", "f", "g", "zz"],
        &["EXISTS", "h"],
        &["HGET", "s", "x"],
        &["RPUSH", "l", "a", "b", "c", "d"],
        &["LPUSH", "l", "z"],
        &["LRANGE", "l", "0", "-1"],
        &["LRANGE", "l", "-3", "-2"],
        &["LRANGE", "l", "5", "1"],
        &["LINDEX", "l", "-1"],
        &["LINDEX", "l", "99"],
        &["LSET", "l", "0", "Z"],
        &["LSET", "l", "99", "Z"],
        &["LSET", "nolist", "0", "Z"],
        &["LINSERT", "l", "BEFORE", "b", "B"],
        &["LINSERT", "l", "AFTER", "nope", "B"],
        &["LINSERT", "nolist", "AFTER", "x", "B"],
        &["LINSERT", "l", "SIDEWAYS", "b", "B"],
        &["LREM", "l", "0", "B"],
        &["LPOS", "l", "c"],
        &["LPOS", "l", "c", "RANK", "0"],
        &["LPOS", "l", "c", "RANK", "-1", "COUNT", "2"],
        &["LTRIM", "l", "1", "-2"],
        &["LRANGE", "l", "0", "-1"],
        &["LPOP", "l"],
        &["RPOP", "l", "2"],
        &["LPOP", "l", "-1"],
        &["LPOP", "l", "0"],
        &["LPOP", "nolist", "2"],
        &["RPOPLPUSH", "l", "l2"],
        &["LMOVE", "l2", "l", "RIGHT", "LEFT"],
        &["LMOVE", "l2", "l", "UP", "LEFT"],
        &["LMPOP", "2", "nolist", "l", "RIGHT", "COUNT", "10"],
        &["LMPOP", "0", "l", "LEFT"],
        &["LPUSH", "s", "x"],
        &["LLEN", "l"],
    ]);
}

#[test]
fn connection_commands_match_redis() {
    check(&[
        &["PING"],
        &["PING", "hello"],
        &["PING", "a", "b"],
        &["ECHO", "x"],
        &["CLIENT", "SETNAME", "has space"],
        &["CLIENT", "SETNAME", "ok-name"],
        &["CLIENT", "GETNAME"],
        // CLIENT SETINFO is Redis 7.2's; Debian's 7.0 lacks it (see server.rs tests).
        &["CLIENT", "NOSUCH"],
        &["AUTH", "pw"],
        &["HELLO", "4"],
        &["HELLO", "x"],
        &["FLUSHDB", "BOGUS"],
        &["CONFIG", "GET", "maxmemory"],
        &["OBJECT", "ENCODING", "nothing"],
        &["NOSUCHCOMMAND", "x"],
    ]);
}

/// Seeded random walks over sets and hashes, sized to cross the packed
/// encodings' limits, with every reply compared: one where long items
/// convert collections early, one with short items only, where they stay
/// packed for long and convert on size.
#[test]
fn random_collection_walks_match_redis() {
    for (seed, with_long) in [(0x5eed_1234_abcd_0001, true), (0x0dd_ba11_cafe_0002, false)] {
        let script = walk(seed, with_long);
        let commands: Vec<Vec<&str>> = script.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
        let refs: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
        check(&refs);
    }
}

fn walk(mut seed: u64, with_long: bool) -> Vec<Vec<String>> {
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let long = "w".repeat(70);
    let item = |i: usize| -> String {
        match i % 4 {
            0 | 1 => (i % 600).to_string(),
            3 if with_long => format!("{long}{}", i % 5),
            _ => format!("m{}", i % 300),
        }
    };
    let mut script: Vec<Vec<String>> = Vec::new();
    for _ in 0..3000 {
        let set = format!("s{}", next(3));
        let other = format!("s{}", next(3));
        let hash = format!("h{}", next(3));
        let a = item(next(2400));
        let b = item(next(2400));
        let cmd: Vec<String> = match next(16) {
            0..=3 => vec!["SADD".into(), set, a, b],
            4 => vec!["SREM".into(), set, a, b],
            5 => vec!["SISMEMBER".into(), set, a],
            6 => vec!["SCARD".into(), set],
            7 => vec!["SMOVE".into(), set, other, a],
            8 => vec!["SINTERSTORE".into(), "dst".into(), set, other],
            9 => vec!["SMEMBERS".into(), set],
            10 | 11 => vec!["HSET".into(), hash, a, b],
            12 => vec!["HDEL".into(), hash, a],
            13 => vec!["HGET".into(), hash, a],
            14 => vec!["HLEN".into(), hash],
            _ => vec!["HGETALL".into(), hash],
        };
        script.push(cmd);
    }
    for k in ["h0", "h1", "h2"] {
        script.push(vec!["OBJECT".into(), "ENCODING".into(), k.into()]);
    }
    script
}
