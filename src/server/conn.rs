//! One client connection: read, decode, dispatch, encode, write.
//!
//! Every complete command in a read is answered before the replies are
//! written, so a pipelined batch costs one write. A protocol error gets
//! Redis's error reply and closes this connection only.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use std::panic::AssertUnwindSafe;

use bytes::{Bytes, BytesMut};
use futures_lite::FutureExt;

use super::net::Stream;
use super::{ClientInfo, Node};
use crate::cmd;
use crate::resp::{self, Limits, Protocol, Reply};

/// Flush replies early once this many bytes are waiting.
const OUT_HIGH_WATER: usize = 256 * 1024;

/// A connection's state as commands see it.
pub struct Session {
    pub node: Rc<Node>,
    pub info: Rc<RefCell<ClientInfo>>,
    pub id: u64,
    pub db: u16,
    pub proto: Protocol,
    pub authed: bool,
    /// Close the connection after this reply (QUIT).
    pub quit: bool,
    /// Every lock this session needs is held (EXEC, scripts): reach shards
    /// directly. See `cmd::access`.
    pub atomic: bool,
    /// Commands run on behalf of a Lua script: blocking ones do not block.
    pub in_script: bool,
    /// Commands queued since MULTI.
    pub multi: Option<cmd::transaction::MultiState>,
    /// Keys under WATCH.
    pub watched: Vec<cmd::transaction::Watched>,
}

impl Session {
    pub fn new(node: Rc<Node>, info: Rc<RefCell<ClientInfo>>) -> Session {
        let authed = node
            .shared
            .runtime
            .lock()
            .expect("runtime config")
            .requirepass
            .is_none();
        let id = info.borrow().id;
        Session {
            node,
            info,
            id,
            db: 0,
            proto: Protocol::Resp2,
            authed,
            quit: false,
            atomic: false,
            in_script: false,
            multi: None,
            watched: Vec::new(),
        }
    }
}

pub async fn serve(node: Rc<Node>, mut stream: Stream) {
    let id = node.shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let info = Rc::new(RefCell::new(ClientInfo::new(
        id,
        stream.raw_fd(),
        stream.peer_addr(),
        stream.local_addr(),
    )));
    node.clients.borrow_mut().insert(id, info.clone());
    let mut session = Session::new(node.clone(), info.clone());
    let _ = run_loop(&mut session, &mut stream).await;
    drop(stream);
    cmd::transaction::unwatch_all(&mut session).await;
    node.clients.borrow_mut().remove(&id);
}

async fn run_loop(session: &mut Session, stream: &mut Stream) -> std::io::Result<()> {
    let limits = Limits::default();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    // Single-key commands sent to other cores, replies not yet encoded.
    let mut sent: VecDeque<cmd::Sent> = VecDeque::new();
    let mut batch: Vec<(Option<&'static cmd::CommandSpec>, Vec<Bytes>)> = Vec::with_capacity(BATCH);
    // The database the next request will use, for the socket layer's hint.
    let db = Rc::new(Cell::new(session.db));
    let node = session.node.clone();
    let hint_db = db.clone();
    stream.set_hint(Box::new(move |bytes| {
        cmd::note_arrived(&node.core, hint_db.get(), bytes)
    }));
    loop {
        db.set(session.db);
        if stream.read_into(&mut input).await? == 0 {
            return Ok(());
        }
        cmd::warm_arrived(session.core());
        session.info.borrow_mut().last_active = crate::clock::ticks();
        loop {
            let mut failure = None;
            while batch.len() < BATCH {
                match resp::decode_command(&mut input, &limits) {
                    Ok(Some(args)) if args.is_empty() => {}
                    Ok(Some(args)) => batch.push((cmd::lookup(&args[0]), args)),
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let full = batch.len() == BATCH;
            if batch.len() > 1 {
                cmd::prefetch(session, &batch);
            }
            for (spec, args) in batch.drain(..) {
                // A pipelined batch: commands for other cores' shards
                // are all sent before any reply is awaited.
                let args = match cmd::send_if_remote(session, spec, args) {
                    Ok(s) => {
                        sent.push_back(s);
                        if sent.len() >= MAX_SENT {
                            collect(session, &mut sent, &mut out).await;
                        }
                        continue;
                    }
                    Err(args) => args,
                };
                collect(session, &mut sent, &mut out).await;
                session.info.borrow_mut().busy = true;
                // A bug must cost one connection, never the whole core.
                let outcome = AssertUnwindSafe(cmd::dispatch(session, spec, args))
                    .catch_unwind()
                    .await;
                session.info.borrow_mut().busy = false;
                let Ok(reply) = outcome else {
                    crate::log_warning!("internal error while serving client {}; closing it", session.id);
                    resp::encode(&Reply::Error("ERR internal error"), session.proto, &mut out);
                    stream.write_all(&out).await?;
                    return Ok(());
                };
                resp::encode(&reply, session.proto, &mut out);
                if session.quit || session.info.borrow().killed {
                    stream.write_all(&out).await?;
                    return Ok(());
                }
                if out.len() >= OUT_HIGH_WATER {
                    stream.write_all(&out).await?;
                    out.clear();
                }
            }
            if let Some(e) = failure {
                collect(session, &mut sent, &mut out).await;
                let text = format!("ERR {}", e.0);
                resp::encode(&Reply::ErrorOwned(text), session.proto, &mut out);
                stream.write_all(&out).await?;
                return Ok(());
            }
            if !full {
                break;
            }
        }
        collect(session, &mut sent, &mut out).await;
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if input.capacity() > 1 << 20 && input.is_empty() {
            input = BytesMut::with_capacity(16 * 1024);
        }
    }
}

/// Commands decoded from the input and run as one batch, at most: their
/// keys are prefetched together before the first runs.
const BATCH: usize = 64;

/// Commands sent to other cores and not yet answered, at most.
const MAX_SENT: usize = 1024;

/// Waits for the replies of sent commands, in order, and encodes them.
async fn collect(session: &Session, sent: &mut VecDeque<cmd::Sent>, out: &mut Vec<u8>) {
    while let Some(s) = sent.pop_front() {
        let reply = s.collect(session).await;
        resp::encode(&reply, session.proto, out);
    }
}
