//! What CLIENT LIST and CLIENT INFO show about a connection.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Instant;

pub struct ClientInfo {
    pub id: u64,
    pub addr: Option<SocketAddr>,
    pub laddr: Option<SocketAddr>,
    pub fd: RawFd,
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
    pub db: u16,
    pub resp: u8,
    pub created: Instant,
    /// When the connection last received bytes, in `clock` ticks (cheaper
    /// to read for every request than `Instant`).
    pub last_active: u64,
    pub last_command: &'static str,
    pub multi: i64,
    /// Set by CLIENT KILL; the connection closes at its next chance.
    pub killed: bool,
    /// True while the connection runs a command (its socket must not be
    /// shut before the reply goes out).
    pub busy: bool,
    /// Fired by CLIENT KILL to end a blocking wait.
    pub block_signal: Option<std::sync::Arc<crate::shard::Signal>>,
}

impl ClientInfo {
    pub fn new(id: u64, fd: RawFd, addr: Option<SocketAddr>, laddr: Option<SocketAddr>) -> ClientInfo {
        let now = Instant::now();
        ClientInfo {
            id,
            addr,
            laddr,
            fd,
            name: String::new(),
            lib_name: String::new(),
            lib_ver: String::new(),
            db: 0,
            resp: 2,
            created: now,
            last_active: crate::clock::ticks(),
            last_command: "NULL",
            multi: -1,
            killed: false,
            busy: false,
            block_signal: None,
        }
    }

    pub fn addr_text(&self) -> String {
        self.addr.map_or_else(|| "?:0".into(), |a| a.to_string())
    }

    /// One line of CLIENT LIST, in Redis 7's field order.
    pub fn list_line(&self) -> String {
        let now = Instant::now();
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags=N db={} sub=0 psub=0 ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr_text(),
            self.laddr.map_or_else(|| "?:0".into(), |a| a.to_string()),
            self.fd,
            self.name,
            now.duration_since(self.created).as_secs(),
            crate::clock::ticks_to_us(crate::clock::ticks().saturating_sub(self.last_active)) / 1_000_000,
            self.db,
            self.multi,
            self.last_command,
            self.resp,
            self.lib_name,
            self.lib_ver,
        )
    }
}

/// Which clients CLIENT KILL closes.
#[derive(Clone, Debug)]
pub struct KillFilter {
    pub id: Option<u64>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    /// A client id never to kill (SKIPME).
    pub skip: Option<u64>,
}

impl KillFilter {
    pub fn matches(&self, client: &ClientInfo) -> bool {
        self.skip != Some(client.id)
            && self.id.is_none_or(|id| id == client.id)
            && self.addr.as_ref().is_none_or(|a| *a == client.addr_text())
            && self
                .laddr
                .as_ref()
                .is_none_or(|a| client.laddr.is_some_and(|l| *a == l.to_string()))
    }
}
