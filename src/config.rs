//! Command-line flags, named after Dragonfly's, with their defaults.
//!
//! Both `--flag=value` and `--flag value` work (clap accepts either).

use clap::Parser;

use crate::logging::Level;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "mayfly",
    version,
    about = "A Redis-compatible, thread-per-core in-memory data store"
)]
pub struct Config {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 6379)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,

    /// Number of executor threads (one shard each); 0 means one per online CPU.
    #[arg(long = "proactor_threads", default_value_t = 0)]
    pub proactor_threads: usize,

    /// Password clients must give with AUTH (or HELLO ... AUTH).
    #[arg(long)]
    pub requirepass: Option<String>,

    /// Number of databases.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub dbnum: u16,

    /// Log verbosity: debug, verbose, notice or warning.
    #[arg(long, default_value = "notice")]
    pub loglevel: Level,

    /// Script flags for scripts that state none of their own, e.g.
    /// "allow-undeclared-keys" (comma, space or semicolon separated).
    #[arg(long = "default_lua_flags", default_value = "")]
    pub default_lua_flags: String,

    /// SHA1s of scripts that may touch undeclared keys (comma separated).
    #[arg(long = "lua_undeclared_keys_shas", default_value = "")]
    pub lua_undeclared_keys_shas: String,

    /// Milliseconds a script may run before other clients get BUSY.
    #[arg(long = "lua_time_limit", default_value_t = 5000)]
    pub lua_time_limit: u64,

    /// Socket implementation: uring (our own DEFER_TASKRUN ring) or glommio.
    #[arg(long = "socket_backend", value_enum, default_value = "uring")]
    pub socket_backend: crate::server::net::Backend,

    /// Microseconds an idle executor busy-polls before it sleeps. 0 (the
    /// default) costs what Redis costs per request; 20-50 buys 10-15% more
    /// requests per second at pipeline 1 for 10-30% more CPU per request
    /// (bench/RESULTS.md).
    #[arg(long = "spin_before_park_us", default_value_t = 0)]
    pub spin_before_park_us: u64,
    /// Microseconds a busy executor may let the first socket event wait
    /// for others before it wakes, so one wake-up serves many requests. A
    /// single executor with many connections sending sleeps until a quarter
    /// of them have sent or this time passes; one of several executors, on
    /// which the other cores' hops wait, waits 20 at most. 0 wakes on every
    /// completion.
    #[arg(long = "wake_batch_us", default_value_t = 200)]
    pub wake_batch_us: u32,

    /// on: each executor is bound to one CPU. off: the kernel places them,
    /// and may move one away from a CPU that another busy process (a
    /// client on the same machine) shares.
    #[arg(long = "proactor_affinity_mode", value_enum, default_value = "on")]
    pub proactor_affinity_mode: crate::server::Affinity,

    /// The time slice, in microseconds, the executors ask the kernel's
    /// scheduler for (Linux 6.12 or later; 100 to 100000). A shorter slice
    /// than other processes' lets an executor that wakes preempt them, as
    /// a client sharing its CPU. 0 (the default) keeps the kernel's.
    #[arg(long = "sched_slice_us", default_value_t = 0)]
    pub sched_slice_us: u64,
}

impl Config {
    /// Checks values clap cannot; Err is the message to print.
    pub fn validate(&self) -> Result<(), String> {
        crate::script::flags::Flags::parse_list(&self.default_lua_flags)
            .map_err(|bad| format!("--default_lua_flags: Invalid flag: {bad}"))?;
        if self.sched_slice_us != 0 && !(100..=100_000).contains(&self.sched_slice_us) {
            return Err("--sched_slice_us: must be 0 or between 100 and 100000".to_string());
        }
        Ok(())
    }

    /// The executor count: the flag, or the CPUs this process may run on.
    pub fn threads(&self) -> usize {
        if self.proactor_threads > 0 {
            self.proactor_threads
        } else {
            crate::server::allowed_cpus().len().max(1)
        }
    }

    /// Defaults, for tests and embedding.
    pub fn default_for_test(port: u16, threads: usize) -> Config {
        let mut c = Config::parse_from(["mayfly"]);
        c.port = port;
        c.proactor_threads = threads;
        c
    }
}
