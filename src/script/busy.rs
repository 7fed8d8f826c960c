//! Long-running scripts: BUSY replies and SCRIPT KILL.
//!
//! A Lua hook runs every 10,000 instructions. Once the running script has
//! been going for longer than `--lua_time_limit`, the server is busy: other
//! clients get `BUSY ...` for everything but SCRIPT KILL and SHUTDOWN NOSAVE
//! (clients on the busy core itself wait, since that core is running Lua).
//! SCRIPT KILL asks the hook to stop a script that has not written.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use mlua::{HookTriggers, Lua, VmState};

pub const BUSY_ERROR: &str = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
pub const KILLED_ERROR: &str = "ERR Script killed by user with SCRIPT KILL...";

static TIME_LIMIT_MS: AtomicU64 = AtomicU64::new(5000);
/// Scripts running now, on any core.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Scripts past the time limit.
static OVERDUE: AtomicUsize = AtomicUsize::new(0);
static KILL_REQUESTED: AtomicBool = AtomicBool::new(false);
/// A running script has written (it cannot be killed).
static RUNNING_WROTE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    static OVERDUE_HERE: Cell<bool> = const { Cell::new(false) };
    static KILLED_HERE: Cell<bool> = const { Cell::new(false) };
}

pub fn set_time_limit_ms(ms: u64) {
    TIME_LIMIT_MS.store(ms, Ordering::Relaxed);
}

pub fn time_limit_ms() -> u64 {
    TIME_LIMIT_MS.load(Ordering::Relaxed)
}

/// Whether clients should be told BUSY.
pub fn is_busy() -> bool {
    OVERDUE.load(Ordering::Relaxed) > 0
}

/// Whether a script is running on this core (one may be waiting inside a
/// synchronous call, serving work that other cores sent).
pub fn running_here() -> bool {
    STARTED.with(|s| s.get().is_some())
}

pub fn script_started(_sha: &str) {
    RUNNING.fetch_add(1, Ordering::SeqCst);
    STARTED.with(|s| s.set(Some(Instant::now())));
    KILLED_HERE.with(|k| k.set(false));
}

pub fn script_finished() {
    STARTED.with(|s| s.set(None));
    if OVERDUE_HERE.with(|o| o.replace(false)) {
        OVERDUE.fetch_sub(1, Ordering::SeqCst);
    }
    if RUNNING.fetch_sub(1, Ordering::SeqCst) == 1 {
        KILL_REQUESTED.store(false, Ordering::SeqCst);
        RUNNING_WROTE.store(false, Ordering::SeqCst);
    }
}

/// Records that the running script wrote.
pub fn note_write() {
    RUNNING_WROTE.store(true, Ordering::Relaxed);
}

/// Whether the script that just ended on this core was killed.
pub fn was_killed() -> bool {
    KILLED_HERE.with(|k| k.get())
}

/// SCRIPT KILL: the reply to send.
pub fn kill() -> Result<(), &'static str> {
    if RUNNING.load(Ordering::SeqCst) == 0 {
        return Err("NOTBUSY No scripts in execution right now.");
    }
    if RUNNING_WROTE.load(Ordering::SeqCst) {
        return Err(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
        );
    }
    KILL_REQUESTED.store(true, Ordering::SeqCst);
    Ok(())
}

pub fn install_hook(lua: &Lua) -> mlua::Result<()> {
    lua.set_hook(HookTriggers::new().every_nth_instruction(10_000), |_, _| {
        let Some(started) = STARTED.with(|s| s.get()) else {
            return Ok(VmState::Continue);
        };
        if !OVERDUE_HERE.with(|o| o.get()) && started.elapsed().as_millis() as u64 >= time_limit_ms() {
            OVERDUE_HERE.with(|o| o.set(true));
            OVERDUE.fetch_add(1, Ordering::SeqCst);
            crate::log_warning!(
                "Slow script detected: still in execution after {} milliseconds.",
                time_limit_ms()
            );
        }
        if KILL_REQUESTED.load(Ordering::Relaxed) && !RUNNING_WROTE.load(Ordering::Relaxed) {
            KILL_REQUESTED.store(false, Ordering::SeqCst);
            KILLED_HERE.with(|k| k.set(true));
            return Err(mlua::Error::RuntimeError(KILLED_ERROR.into()));
        }
        Ok(VmState::Continue)
    })
}
