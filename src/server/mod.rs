//! Executors, listeners and connections.
//!
//! `run` starts one glommio executor per shard, each pinned to a CPU unless
//! `--proactor_affinity_mode off`. Every
//! executor owns its shard, drains its inbox of cross-core work, runs the
//! active-expiry cycle, and binds the listening port with SO_REUSEPORT so
//! that the kernel spreads connections over the cores.

mod client;
mod conn;
pub mod net;

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

pub use client::{ClientInfo, KillFilter};
pub use conn::Session;

use crate::config::Config;
use crate::db::{Map, now_ms};
use crate::shard::{Core, Hint, Inbox, Job, Shard, barrier};
use crate::{log_notice, log_warning};

/// Settings that CONFIG SET may change at run time.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub requirepass: Option<String>,
}

/// State shared by all cores: configuration and a few counters. It holds no
/// keyspace data.
pub struct Shared {
    pub config: Config,
    pub threads: usize,
    pub started: Instant,
    pub next_client_id: AtomicU64,
    pub runtime: Mutex<RuntimeConfig>,
    pub shutting_down: AtomicBool,
    /// Every executor waits here, its driver started and its socket bound,
    /// before any listens: a server whose start-up fails on one core exits
    /// before it has accepted a single connection.
    pub startup: std::sync::Barrier,
}

/// Per-command counters for INFO commandstats.
#[derive(Default, Clone, Debug)]
pub struct CommandStat {
    pub calls: u64,
    /// Time spent, in `clock` ticks.
    pub ticks: u64,
    pub failed: u64,
}

/// Connection-side counters of one core.
#[derive(Default)]
pub struct NodeStats {
    pub commands: u64,
    pub connections: u64,
    pub per_command: Map<&'static str, CommandStat>,
}

/// Everything one executor's connections share.
pub struct Node {
    pub core: Core,
    pub shared: Arc<Shared>,
    pub clients: RefCell<Map<u64, Rc<RefCell<ClientInfo>>>>,
    pub stats: RefCell<NodeStats>,
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Whether each executor is bound to a CPU (`--proactor_affinity_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Affinity {
    On,
    Off,
}

/// Asks the scheduler for a time slice of `us` microseconds for this
/// thread, keeping its policy and nice value (sched_setattr; Linux 6.12
/// reads `sched_runtime` as the slice of a normal task).
fn ask_for_slice(us: u64) -> std::io::Result<()> {
    /// The kernel's `struct sched_attr`, which libc does not declare.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    // SAFETY: getpriority and sched_setattr read only what they are given;
    // errno is this thread's.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        if nice == -1 && *libc::__errno_location() != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: us * 1000,
            deadline: 0,
            period: 0,
        };
        if libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts the executors and serves until SHUTDOWN.
pub fn run(config: Config) -> std::io::Result<()> {
    crate::clock::calibrate();
    let scripts = crate::script::store::store();
    scripts.set_default_flags(
        crate::script::flags::Flags::parse_list(&config.default_lua_flags)
            .map_err(|bad| std::io::Error::other(format!("Invalid flag: {bad}")))?,
    );
    scripts.set_undeclared_shas(&config.lua_undeclared_keys_shas);
    crate::script::busy::set_time_limit_ms(config.lua_time_limit);
    let threads = config.threads();
    let cpus = allowed_cpus();
    let mesh: Arc<Vec<Inbox>> = Arc::new((0..threads).map(|_| Inbox::default()).collect());
    let shared = Arc::new(Shared {
        runtime: Mutex::new(RuntimeConfig {
            requirepass: config.requirepass.clone(),
        }),
        config,
        threads,
        started: Instant::now(),
        next_client_id: AtomicU64::new(1),
        shutting_down: AtomicBool::new(false),
        startup: std::sync::Barrier::new(threads),
    });
    log_notice!(
        "Mayfly {} starting: {} thread(s), redis_version {}",
        env!("CARGO_PKG_VERSION"),
        threads,
        crate::REDIS_VERSION
    );
    refuse_taken_port(&shared.config)?;
    handle_signals(shared.clone())?;
    let mut handles = Vec::new();
    for id in 0..threads {
        let cpu = cpus[id % cpus.len()];
        let mesh = mesh.clone();
        let shared = shared.clone();
        let spin = Duration::from_micros(shared.config.spin_before_park_us);
        let placement = match shared.config.proactor_affinity_mode {
            Affinity::On => Placement::Fixed(cpu),
            Affinity::Off => Placement::Unbound,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("mayfly-{id}"))
            .io_memory(64 << 10)
            .spin_before_park(spin)
            .spawn(move || net::counted(core_main(id, mesh, shared)))
            .map_err(|e| std::io::Error::other(format!("cannot start executor {id}: {e}")))?;
        handles.push(handle);
    }
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(std::io::Error::other(format!("executor failed: {e}"))),
        }
    }
    Ok(())
}

/// Fails, as Redis does, when another process already listens on the port.
///
/// The executors bind with SO_REUSEPORT, which would let a second server of
/// the same user share the port silently and take half its connections. A
/// bind without SO_REUSEPORT fails if anyone listens there.
fn refuse_taken_port(config: &Config) -> std::io::Result<()> {
    let addr = format!("{}:{}", config.bind, config.port);
    match net::probe_port(&addr) {
        Ok(()) => Ok(()),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("Could not create server TCP listening socket {addr}: bind: {e}"),
        )),
    }
}

async fn core_main(id: usize, mesh: Arc<Vec<Inbox>>, shared: Arc<Shared>) -> std::io::Result<()> {
    let nshards = mesh.len();
    let node = Rc::new(Node {
        core: Core::new(id, Shard::new(id, nshards, shared.config.dbnum as usize), mesh),
        shared: shared.clone(),
        clients: Default::default(),
        stats: Default::default(),
    });
    LOCAL_NODE.with(|n| *n.borrow_mut() = Some(node.clone()));

    let addr = format!("{}:{}", shared.config.bind, shared.config.port);
    let backend = shared.config.socket_backend;
    let spin = Duration::from_micros(shared.config.spin_before_park_us);
    // First: glommio polls a task as it spawns it, and the tasks below must
    // find this executor's doorbell when they first register a waker.
    let alone = shared.config.threads() == 1;
    let slice = shared.config.sched_slice_us;
    if slice > 0
        && let Err(e) = ask_for_slice(slice)
    {
        log_warning!("Could not set the scheduler slice to {slice} us: {e}");
    }
    if let Err(e) = net::start_executor(backend, spin, shared.config.wake_batch_us, alone) {
        log_warning!("Could not start the {backend:?} socket driver: {e}");
        std::process::exit(1);
    }
    net::spawn(drain_inbox(node.clone()));
    net::spawn(expire_cycle(node.clone()));
    let lender = node.clone();
    net::spawn(async move { barrier::serve_loans(&lender.core).await });
    let reaper = node.clone();
    net::spawn(async move { barrier::reap_idle(&reaper.core).await });
    let listener = match net::Listener::bind(backend, &addr) {
        Ok(l) => l,
        Err(e) => {
            log_warning!("Could not bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    shared.startup.wait();
    if let Err(e) = listener.listen() {
        log_warning!("Could not listen on {addr}: {e}");
        std::process::exit(1);
    }
    if id == 0 {
        log_notice!("Ready to accept connections on {addr}");
    }
    loop {
        match listener.accept().await {
            Ok(stream) => {
                node.stats.borrow_mut().connections += 1;
                net::spawn(conn::serve(node.clone(), stream));
            }
            // A listener shut down for exit fails its accepts; say nothing.
            Err(_) if shared.shutting_down.load(Ordering::SeqCst) => {
                net::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                log_warning!("accept failed: {e}");
                net::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Runs work that other cores sent to this core's shard, in batches; the
/// entries the batch will look up are prefetched together first.
async fn drain_inbox(node: Rc<Node>) {
    let inbox = &node.core.mesh[node.core.id];
    let mut batch: Vec<(Job, Hint)> = Vec::with_capacity(64);
    loop {
        poll_fn(|cx| inbox.poll_drain(cx, 64, &mut batch)).await;
        node.core.until_home().await;
        {
            let mut shard = node.core.own_shard();
            if batch.len() > 1 {
                for (db, hash) in batch.iter().filter_map(|(_, hint)| *hint) {
                    if let Some(db) = shard.dbs.get(db as usize) {
                        db.prefetch_hash(hash);
                    }
                }
            }
            for (job, _) in batch.drain(..) {
                job(&mut shard);
            }
        }
        glommio::yield_if_needed().await;
    }
}

/// Frees expired keys that nobody touches, a bounded amount at a time.
async fn expire_cycle(node: Rc<Node>) {
    loop {
        net::sleep(Duration::from_millis(100)).await;
        node.core.until_home().await;
        let now = now_ms();
        let mut shard = node.core.own_shard();
        for db in shard.dbs.iter_mut() {
            db.expire_cycle(now, 2000);
        }
    }
}

/// Marks the server as stopping and exits the process.
///
/// The listening sockets are shut down first: their io_uring ACCEPTs would
/// otherwise keep them listening after the process is gone, until the
/// kernel tears the rings down, and a client connecting meanwhile would be
/// accepted, then reset.
pub fn shutdown(shared: &Shared) -> ! {
    shared.shutting_down.store(true, Ordering::SeqCst);
    net::close_listeners();
    log_notice!("Mayfly is now ready to exit, bye bye...");
    std::process::exit(0);
}

/// Blocks SIGTERM and SIGINT in this thread and the executors it starts,
/// and shuts down cleanly when one arrives, as Redis does.
fn handle_signals(shared: Arc<Shared>) -> std::io::Result<()> {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask and
    // sigwait are given valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::thread::Builder::new()
            .name("mayfly-signals".into())
            .spawn(move || {
                let mut signal: libc::c_int = 0;
                if libc::sigwait(&set, &mut signal) == 0 {
                    let name = if signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
                    crate::log_warning!("Received {name} scheduling shutdown...");
                    shutdown(&shared);
                }
            })?;
    }
    Ok(())
}

thread_local! {
    /// This executor's node, so that work sent from other cores can reach
    /// connection state (CLIENT LIST, CLIENT KILL, INFO).
    static LOCAL_NODE: RefCell<Option<Rc<Node>>> = const { RefCell::new(None) };
}

/// This executor's node. Panics off an executor thread.
pub fn local_node() -> Rc<Node> {
    LOCAL_NODE.with(|n| n.borrow().clone().expect("not on an executor thread"))
}

/// Runs `f` over the clients connected to this executor.
pub fn with_local_clients<R>(f: impl FnOnce(&Map<u64, Rc<RefCell<ClientInfo>>>) -> R) -> R {
    let node = local_node();
    let clients = node.clients.borrow();
    f(&clients)
}

/// Closes this executor's clients that match `filter`; returns how many.
pub fn kill_local_clients(filter: &KillFilter) -> usize {
    with_local_clients(|clients| {
        let mut killed = 0;
        for client in clients.values() {
            let mut c = client.borrow_mut();
            if filter.matches(&c) && !c.killed {
                c.killed = true;
                // An idle or blocked client is closed at once; one that is
                // running a command (perhaps this very CLIENT KILL) gets its
                // reply first.
                let blocked = c.block_signal.take();
                if !c.busy || blocked.is_some() {
                    net::shutdown_fd(c.fd);
                }
                if let Some(signal) = blocked {
                    signal.fire();
                }
                killed += 1;
            }
        }
        killed
    })
}
