//! The TLS layer: a [`Protocol`] on a transport (TCP, Unix, anything) that owns a rustls
//! connection and the application's protocol, and hands that protocol a [`Transport`] that
//! behaves as a plain connection's does, in plaintext.
//!
//! One [`Session`] per connection is both halves: [`TlsLayer`] (the protocol the transport
//! under it calls with records) and the [`TransportBackend`] the application writes
//! plaintext to. Where a byte goes:
//!
//! - in: the transport under it calls `data_received` with records → rustls `read_tls` and
//!   `process_new_packets` → the handshake's end (the application's `connection_made`), or
//!   plaintext read out into a buffer shared by the thread → the application's
//!   `data_received`;
//! - out: `write` → while the application's own callback runs, small writes are gathered and
//!   encrypted as one record when it returns; otherwise encrypted at once → rustls
//!   `write_tls` → `write_vectored` on the transport under it, which buffers and sends as it
//!   always does. Before the handshake is done, plaintext waits in the layer.
//!
//! Flow control: the application is paused while the transport under it is (their marks are
//! the same) or while more than the high mark of plaintext waits for the handshake, and
//! resumed when neither holds. Closing: `lose_connection` encrypts what waits, sends
//! `close_notify`, and closes the transport under it after its flush.
//!
//! No call from the application into its transport calls back into user code: encrypting
//! and writing records below never does. Every callback into the application starts from
//! the layer's own callbacks (which start from the loop) or from a job the layer scheduled.

mod flow;
mod shutdown;

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion_reactor::{
    Address, ConnectionLost, Deferred, DelayedCall, Error, ErrorKind, PeerCredentials, Protocol,
    Reactor, Resolver, Scheduler, SchedulerExt, TlsFailure, TlsFailureKind, Transport,
    TransportBackend,
};

use crate::info::TlsInfo;
use flow::Flow;

/// Writes made during the application's own callback are gathered up to this size and
/// encrypted as one record when it returns; larger ones are encrypted at once.
const GATHER_MAX: usize = 4096;
/// A large write is encrypted and handed down in pieces of this size, so rustls's own
/// buffer never holds more.
const ENCRYPT_CHUNK: usize = 64 * 1024;
/// Plaintext is read out of rustls into a buffer of this size (up to four full records).
const PLAIN_BUF: usize = 64 * 1024;

thread_local! {
    /// The thread's plaintext buffer: taken while a layer delivers (a nested layer, TLS in
    /// TLS, finds it taken and uses its own).
    static PLAIN: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Handshaking: the application has not been told `connection_made`.
    Handshaking,
    /// The handshake is done and the application was told `connection_made`.
    Open,
    /// The transport under it is gone; `connection_lost` was delivered if due.
    Closed,
}

/// Told about a connection's life, for client factories and connects that wait for the
/// handshake.
pub(crate) trait Observer {
    /// The handshake is done and the application's `connection_made` has run.
    fn ready(&self, transport: &Transport);
    /// The connection ended before its handshake was done (the application saw nothing).
    fn failed(&self, reason: &ConnectionLost);
    /// A connection that was ready is lost (after the application's `connection_lost`).
    fn lost(&self, reason: &ConnectionLost);
}

struct State {
    tls: rustls::Connection,
    phase: Phase,
    /// Plaintext accepted and not yet encrypted: before the handshake is done, or gathered
    /// during the application's callback.
    pending: Vec<u8>,
    /// `pending` holds gathered writes to encrypt when the running callback returns.
    flush_due: bool,
    /// `lose_connection` or `abort_connection` was called, or the layer failed.
    closing: bool,
    /// `lose_write_connection` was called: `close_notify` is sent (or will be, once the
    /// handshake is done) and no more writes are taken.
    write_shut: bool,
    /// Records received and not yet given to rustls (reading paused, or bytes received
    /// before a STARTTLS switch).
    held: Vec<u8>,
    read_paused: bool,
    /// The peer's end of file (its `close_notify`, or the transport's) was delivered.
    eof_seen: bool,
    /// What the application answered to `eof_received`.
    keep_open: bool,
    /// The reason to give instead of the transport's: a TLS failure, a timeout, a panic.
    reason: Option<ConnectionLost>,
    timer: Option<DelayedCall>,
    info: Option<Rc<TlsInfo>>,
    flow: Flow,
    high: usize,
    low: usize,
}

/// One TLS connection: the rustls state, the application's protocol, and the transport
/// under it. See the [module documentation](self).
pub(crate) struct Session {
    me: Weak<Session>,
    scheduler: RefCell<Option<Rc<dyn Scheduler>>>,
    lower: RefCell<Option<Transport>>,
    st: RefCell<State>,
    /// Out of its slot while one of its callbacks runs; gone once it is lost or dropped.
    user: Cell<Option<Box<dyn Protocol>>>,
    /// Set by `set_protocol` during a callback: takes over when the callback returns.
    replacement: Cell<Option<Box<dyn Protocol>>>,
    in_user: Cell<bool>,
    observer: RefCell<Option<Rc<dyn Observer>>>,
    waiters: RefCell<Vec<Resolver<Transport>>>,
    handshake_timeout: Duration,
    /// Its key among the connections closed with `close_notify` when the reactor stops.
    live: Cell<Option<usize>>,
}

/// The protocol a TLS connection's transport runs: it turns records into the application's
/// plaintext and back.
///
/// Made by [`TlsAcceptor::wrap_protocol`](crate::TlsAcceptor::wrap_protocol) and
/// [`TlsConnector::wrap_protocol`](crate::TlsConnector::wrap_protocol) (or by the factories
/// and [`start_tls`](crate::TlsAcceptor::start_tls), which use them), and given to any
/// transport as its protocol. The application's protocol is told `connection_made` once the
/// handshake is done, with the TLS [`Transport`]; if the handshake fails it is told
/// nothing, and dropped.
pub struct TlsLayer {
    session: Rc<Session>,
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.session.st.borrow();
        f.debug_struct("TlsLayer")
            .field("phase", &st.phase)
            .field("server", &matches!(st.tls, rustls::Connection::Server(_)))
            .finish()
    }
}

impl TlsLayer {
    pub(crate) fn new(
        tls: rustls::Connection,
        user: Box<dyn Protocol>,
        handshake_timeout: Duration,
    ) -> TlsLayer {
        let session = Rc::new_cyclic(|me| Session {
            me: me.clone(),
            scheduler: RefCell::new(None),
            lower: RefCell::new(None),
            st: RefCell::new(State {
                tls,
                phase: Phase::Handshaking,
                pending: Vec::new(),
                flush_due: false,
                closing: false,
                write_shut: false,
                held: Vec::new(),
                read_paused: false,
                eof_seen: false,
                keep_open: false,
                reason: None,
                timer: None,
                info: None,
                flow: Flow::default(),
                high: torsion_reactor::DEFAULT_HIGH_WATER,
                low: torsion_reactor::DEFAULT_LOW_WATER,
            }),
            user: Cell::new(Some(user)),
            replacement: Cell::new(None),
            in_user: Cell::new(false),
            observer: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
            handshake_timeout,
            live: Cell::new(None),
        });
        TlsLayer { session }
    }

    /// Uses `scheduler` for the handshake timeout and the layer's own callbacks, instead of
    /// this thread's reactor: a [`Clock`](torsion_reactor::Clock) in tests.
    pub fn with_scheduler(self, scheduler: Rc<dyn Scheduler>) -> TlsLayer {
        *self.session.scheduler.borrow_mut() = Some(scheduler);
        self
    }

    /// The TLS transport the application's protocol is given (plaintext in and out).
    pub fn transport(&self) -> Transport {
        self.session.transport()
    }

    /// A Deferred that fires with the TLS transport once the handshake is done and the
    /// application's `connection_made` has run, or fails (with an [`ErrorKind::Tls`]
    /// error for a TLS failure) if the connection ends first. Cancelling it aborts the
    /// connection.
    pub fn handshake(&self) -> Deferred<Transport> {
        self.session.handshake()
    }

    pub(crate) fn set_observer(&self, observer: Rc<dyn Observer>) {
        *self.session.observer.borrow_mut() = Some(observer);
    }

    /// Records received before the layer was installed (STARTTLS), handled first.
    pub(crate) fn hold(&self, received: &[u8]) {
        self.session
            .st
            .borrow_mut()
            .held
            .extend_from_slice(received);
    }
}

impl Protocol for TlsLayer {
    fn connection_made(&mut self, transport: &Transport) {
        self.session.attach(transport);
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.session.on_records(data);
    }

    fn eof_received(&mut self, _transport: &Transport) -> bool {
        self.session.on_lower_eof()
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.session.on_lower_lost(reason);
    }

    fn pause_writing(&mut self, _transport: &Transport) {
        self.session.on_lower_flow();
    }

    fn resume_writing(&mut self, _transport: &Transport) {
        self.session.on_lower_flow();
    }
}

/// Hands records to the transport under the layer.
struct Down<'a>(&'a Transport);

impl Write for Down<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .try_write(buf)
            .map(|()| buf.len())
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if let [one] = bufs {
            return self.write(one);
        }
        let parts: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
        let total = parts.iter().map(|p| p.len()).sum();
        self.0
            .try_write_vectored(&parts)
            .map(|()| total)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends every record rustls has ready down to `lower`.
fn send_records(tls: &mut rustls::Connection, lower: &Transport) {
    while tls.wants_write() {
        match tls.write_tls(&mut Down(lower)) {
            Ok(0) | Err(_) => break, // closed under us: connection_lost is on its way
            Ok(_) => {}
        }
    }
}

/// Encrypts `data` and sends the records down.
fn encrypt(tls: &mut rustls::Connection, data: &[u8], lower: &Transport) {
    for piece in data.chunks(ENCRYPT_CHUNK) {
        // The buffer limit is lifted once the handshake is done, so this takes it all.
        if tls.writer().write_all(piece).is_err() {
            return;
        }
        send_records(tls, lower);
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_owned()
    }
}

/// What a rustls error means for the connection.
pub(crate) fn classify(err: &rustls::Error) -> TlsFailure {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::InvalidCertRevocationList(_) => {
            TlsFailure::new(TlsFailureKind::Certificate, err.to_string())
        }
        rustls::Error::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::BadCertificateStatusResponse),
        ) => TlsFailure::new(
            TlsFailureKind::Certificate,
            format!("the peer rejected the certificate (alert {alert:?})"),
        ),
        rustls::Error::AlertReceived(alert) => TlsFailure::new(
            TlsFailureKind::Protocol,
            format!("the peer sent the fatal alert {alert:?}"),
        ),
        _ => TlsFailure::new(TlsFailureKind::Protocol, err.to_string()),
    }
}

fn closed_error() -> Error {
    Error::new(
        ErrorKind::ConnectionClosed,
        "cannot write: the TLS connection is closed or closing",
    )
}

impl Session {
    fn transport(self: &Rc<Self>) -> Transport {
        Transport::new(Rc::clone(self) as Rc<dyn TransportBackend>)
    }

    fn lower(&self) -> Option<Transport> {
        self.lower.borrow().clone()
    }

    fn scheduler(&self) -> Rc<dyn Scheduler> {
        let mut slot = self.scheduler.borrow_mut();
        Rc::clone(slot.get_or_insert_with(|| Reactor::current().scheduler()))
    }

    /// Runs `f` from the loop, later, if the session still exists.
    fn soon(&self, f: impl FnOnce(&Rc<Session>) + 'static) {
        let me = self.me.clone();
        self.scheduler().call_soon(move || {
            if let Some(me) = me.upgrade() {
                f(&me);
            }
        });
    }

    fn is_server(&self) -> bool {
        matches!(self.st.borrow().tls, rustls::Connection::Server(_))
    }

    fn peer(&self) -> String {
        self.lower().map_or_else(
            || "(not connected)".to_owned(),
            |t| t.peer_addr().to_string(),
        )
    }

    /// The layer is on `lower` now: match its marks, arm the handshake timeout, send the
    /// first flight (a client's hello), handle records held from before.
    fn attach(self: &Rc<Self>, lower: &Transport) {
        *self.lower.borrow_mut() = Some(lower.clone());
        if self.scheduler.borrow().is_none() {
            // On the thread's reactor (not a test's Clock): closed cleanly when it stops.
            self.live.set(Some(shutdown::register(self.me.clone())));
        }
        let (high, low) = {
            let st = self.st.borrow();
            (st.high, st.low)
        };
        lower.set_write_buffer_limits(high, low);
        let me = self.me.clone();
        let timer = self
            .scheduler()
            .call_later(self.handshake_timeout, move || {
                if let Some(me) = me.upgrade() {
                    me.on_timeout();
                }
            });
        let held = {
            let mut st = self.st.borrow_mut();
            st.timer = Some(timer);
            send_records(&mut st.tls, lower);
            !st.held.is_empty()
        };
        if held {
            self.soon(|me| me.resume_input());
        }
    }

    fn handshake(self: &Rc<Self>) -> Deferred<Transport> {
        let phase = self.st.borrow().phase;
        match phase {
            Phase::Open => Deferred::succeed(self.transport()),
            Phase::Closed => Deferred::fail(Error::new(
                ErrorKind::ConnectionClosed,
                "the TLS connection is closed",
            )),
            Phase::Handshaking => {
                let me = self.me.clone();
                let (d, resolver) = Deferred::with_canceller(move |_| {
                    if let Some(lower) = me.upgrade().and_then(|me| me.lower()) {
                        lower.abort_connection();
                    }
                });
                self.waiters.borrow_mut().push(resolver);
                d
            }
        }
    }

    /// Calls the application's protocol (taken out of its slot); its gathered writes are
    /// encrypted when it returns. A panic aborts the connection (with the panic as the
    /// reason) and goes on up to whoever called the layer, which reports it.
    fn call_user<R>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut dyn Protocol, &Transport) -> R,
    ) -> Option<R> {
        let mut protocol = self.user.take()?;
        let transport = self.transport();
        self.in_user.set(true);
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut *protocol, &transport)));
        self.in_user.set(false);
        match self.replacement.take() {
            Some(new) => {
                self.user.set(Some(new));
                drop(protocol);
            }
            None => self.user.set(Some(protocol)),
        }
        if self.st.borrow().flush_due {
            self.pump();
            self.flow_update();
        }
        match result {
            Ok(r) => Some(r),
            Err(payload) => {
                let msg = panic_message(&*payload);
                self.st
                    .borrow_mut()
                    .reason
                    .get_or_insert(ConnectionLost::Panicked(msg));
                if let Some(lower) = self.lower() {
                    lower.abort_connection();
                }
                resume_unwind(payload)
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Records in

    fn on_records(self: &Rc<Self>, data: &[u8]) {
        {
            let mut st = self.st.borrow_mut();
            if st.phase == Phase::Closed || st.closing {
                return;
            }
            if st.read_paused || !st.held.is_empty() {
                st.held.extend_from_slice(data);
                if st.read_paused {
                    return;
                }
                drop(st);
                return self.resume_input();
            }
        }
        self.feed(data);
        self.send_pending_records();
    }

    /// Handles what was held back: plaintext rustls still has, then held records.
    fn resume_input(self: &Rc<Self>) {
        self.deliver_plaintext();
        let held = {
            let mut st = self.st.borrow_mut();
            if st.read_paused || st.closing || st.phase == Phase::Closed {
                return;
            }
            std::mem::take(&mut st.held)
        };
        self.feed(&held);
        self.send_pending_records();
    }

    fn send_pending_records(&self) {
        let lower = self.lower();
        if let Some(lower) = lower {
            send_records(&mut self.st.borrow_mut().tls, &lower);
        }
    }

    /// Gives `data` to rustls record by record, acting on what each step produced.
    fn feed(self: &Rc<Self>, mut data: &[u8]) {
        while !data.is_empty() {
            let processed = {
                let mut st = self.st.borrow_mut();
                if st.phase == Phase::Closed || st.closing {
                    return;
                }
                if st.read_paused {
                    st.held.extend_from_slice(data);
                    return;
                }
                match st.tls.read_tls(&mut data) {
                    Ok(0) => return, // after the peer's close_notify nothing more is read
                    Ok(_) => {}
                    Err(e) => {
                        drop(st);
                        return self.fail(TlsFailure::new(
                            TlsFailureKind::Protocol,
                            format!("cannot take the peer's TLS records: {e}"),
                        ));
                    }
                }
                let processed = st.tls.process_new_packets();
                let done = st.phase == Phase::Handshaking && !st.tls.is_handshaking();
                processed.map(|io| (io.peer_has_closed(), done))
            };
            match processed {
                Err(err) => {
                    self.send_pending_records(); // the alert
                    return self.fail(classify(&err));
                }
                Ok((peer_closed, handshake_done)) => {
                    if handshake_done {
                        self.handshake_done();
                    }
                    self.deliver_plaintext();
                    if peer_closed {
                        self.on_peer_eof();
                    }
                }
            }
        }
    }

    /// Reads plaintext out of rustls and gives it to the application, until there is none
    /// or the application paused reading or closed.
    fn deliver_plaintext(self: &Rc<Self>) {
        let mut buf = PLAIN.with(Cell::take);
        if buf.len() < PLAIN_BUF {
            buf = vec![0; PLAIN_BUF];
        }
        loop {
            let n = {
                let mut st = self.st.borrow_mut();
                if st.phase != Phase::Open || st.read_paused || st.closing {
                    break;
                }
                match st.tls.reader().read(&mut buf) {
                    Ok(0) | Err(_) => break, // none now (WouldBlock), or the clean end
                    Ok(n) => n,
                }
            };
            if self
                .call_user(|p, t| p.data_received(t, &buf[..n]))
                .is_none()
            {
                break;
            }
        }
        PLAIN.with(|slot| slot.set(buf));
    }

    fn handshake_done(self: &Rc<Self>) {
        let shut = {
            let mut st = self.st.borrow_mut();
            st.phase = Phase::Open;
            if let Some(timer) = st.timer.take() {
                let _ = timer.cancel();
            }
            // Records are handed down as soon as they are made: rustls need not hold any.
            st.tls.set_buffer_limit(None);
            st.info = Some(Rc::new(TlsInfo::from_connection(&st.tls)));
            st.write_shut
        };
        let transport = self.transport();
        self.call_user(|p, t| p.connection_made(t));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            let _ = waiter.callback(transport.clone());
        }
        let observer = self.observer.borrow().clone();
        if let Some(observer) = observer {
            observer.ready(&transport);
        }
        self.pump();
        if shut {
            self.send_close_notify(false);
        }
        self.flow_update();
    }

    /// The peer's `close_notify`: its end of file.
    fn on_peer_eof(self: &Rc<Self>) {
        {
            let mut st = self.st.borrow_mut();
            if st.eof_seen || st.phase != Phase::Open {
                return;
            }
            st.eof_seen = true;
        }
        let keep = self.call_user(|p, t| p.eof_received(t)).unwrap_or(false);
        {
            let mut st = self.st.borrow_mut();
            st.keep_open = keep;
            if !keep {
                // The peer said it is done and so are we: the end is clean, even if the
                // peer closes its socket before our close_notify reaches it (a broken pipe
                // or a reset on that last record is no loss). Twisted and asyncio report
                // the transport's reason here, clean or reset depending on which came
                // first; this is always clean.
                st.reason.get_or_insert(ConnectionLost::Done);
            }
        }
        if !keep {
            self.lose_connection();
        }
    }

    fn on_lower_eof(self: &Rc<Self>) -> bool {
        let phase = self.st.borrow().phase;
        match phase {
            Phase::Handshaking => {
                self.fail(TlsFailure::new(
                    TlsFailureKind::Protocol,
                    "the peer closed the connection during the TLS handshake",
                ));
                false
            }
            Phase::Open => {
                let mut st = self.st.borrow_mut();
                if st.eof_seen {
                    // After the peer's close_notify: the application already answered.
                    return st.keep_open && !st.closing;
                }
                // No close_notify: the end is not the peer's word (Twisted reports it as a
                // lost connection too), so the application hears it as the reason.
                st.reason.get_or_insert(ConnectionLost::Tls(TlsFailure::new(
                    TlsFailureKind::Truncated,
                    "the peer closed the connection without a TLS close_notify \
                     (what it sent may be cut short)",
                )));
                st.closing = true;
                false
            }
            Phase::Closed => false,
        }
    }

    fn on_timeout(self: &Rc<Self>) {
        {
            let mut st = self.st.borrow_mut();
            st.timer = None;
            if st.phase != Phase::Handshaking {
                return;
            }
            let secs = self.handshake_timeout.as_secs_f64();
            st.reason.get_or_insert(ConnectionLost::Tls(TlsFailure::new(
                TlsFailureKind::HandshakeTimeout,
                format!("the TLS handshake did not finish within {secs}s"),
            )));
            st.closing = true;
        }
        if let Some(lower) = self.lower() {
            lower.abort_connection();
        }
    }

    /// A TLS failure: remember it as the reason, send the alert, close.
    fn fail(self: &Rc<Self>, failure: TlsFailure) {
        {
            let mut st = self.st.borrow_mut();
            if st.phase == Phase::Closed {
                return;
            }
            st.reason.get_or_insert(ConnectionLost::Tls(failure));
            st.closing = true;
        }
        if let Some(lower) = self.lower() {
            lower.lose_connection();
        }
    }

    fn on_lower_lost(self: &Rc<Self>, lower_reason: &ConnectionLost) {
        if let Some(key) = self.live.take() {
            shutdown::forget(key);
        }
        let (was, reason) = {
            let mut st = self.st.borrow_mut();
            let was = st.phase;
            st.phase = Phase::Closed;
            st.pending = Vec::new();
            st.held = Vec::new();
            if let Some(timer) = st.timer.take() {
                let _ = timer.cancel();
            }
            let reason = st.reason.take().unwrap_or_else(|| lower_reason.clone());
            (was, reason)
        };
        let observer = self.observer.borrow_mut().take();
        match was {
            Phase::Open => {
                let protocol = self.user.take();
                drop(self.replacement.take());
                let outcome = protocol
                    .map(|mut p| catch_unwind(AssertUnwindSafe(|| p.connection_lost(&reason))));
                if let Some(observer) = observer {
                    observer.lost(&reason);
                }
                if let Some(Err(payload)) = outcome {
                    resume_unwind(payload);
                }
            }
            Phase::Handshaking => {
                drop(self.user.take());
                let context = format!("TLS handshake with {}", self.peer());
                if self.is_server() {
                    log::info!("{context} failed: {reason}");
                } else {
                    log::debug!("{context} failed: {reason}");
                }
                let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
                for waiter in waiters {
                    let err = match &reason {
                        ConnectionLost::Tls(failure) => Error::tls(&context, failure.clone()),
                        other => Error::new(
                            ErrorKind::ConnectionClosed,
                            format!("{context}: {other} before the handshake was done"),
                        ),
                    };
                    let _ = waiter.errback(err);
                }
                if let Some(observer) = observer {
                    observer.failed(&reason);
                }
            }
            Phase::Closed => {}
        }
    }

    // ---------------------------------------------------------------------------------
    // Plaintext out

    /// Encrypts what waits in `pending` and sends it down (once the handshake is done).
    fn pump(&self) {
        let lower = self.lower();
        let mut st = self.st.borrow_mut();
        st.flush_due = false;
        if st.phase != Phase::Open || st.pending.is_empty() {
            return;
        }
        let Some(lower) = lower else { return };
        let pending = std::mem::take(&mut st.pending);
        encrypt(&mut st.tls, &pending, &lower);
    }

    fn write_parts(&self, parts: &[&[u8]]) -> Result<(), Error> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        {
            let mut st = self.st.borrow_mut();
            if st.phase == Phase::Closed || st.closing || st.write_shut {
                return Err(closed_error());
            }
            if total == 0 {
                return Ok(());
            }
            let gather = self.in_user.get() && st.pending.len() + total <= GATHER_MAX;
            if st.phase != Phase::Open || gather {
                parts.iter().for_each(|p| st.pending.extend_from_slice(p));
                if st.phase == Phase::Open {
                    st.flush_due = true;
                }
            } else {
                let Some(lower) = self.lower() else {
                    return Err(closed_error());
                };
                if !st.pending.is_empty() {
                    let pending = std::mem::take(&mut st.pending);
                    encrypt(&mut st.tls, &pending, &lower);
                }
                if parts.len() > 1 && total <= ENCRYPT_CHUNK {
                    encrypt(&mut st.tls, &parts.concat(), &lower);
                } else {
                    parts.iter().for_each(|p| encrypt(&mut st.tls, p, &lower));
                }
            }
        }
        self.flow_update();
        Ok(())
    }

    /// Whether the application should be paused now: the transport under it is, or more
    /// than the high mark waits for the handshake.
    fn above_mark(&self) -> bool {
        let (waiting, high) = {
            let st = self.st.borrow();
            (st.pending.len(), st.high)
        };
        waiting > high || self.lower().is_some_and(|l| l.is_writing_paused())
    }

    /// Brings the flow state up to date; schedules telling the application if it changed.
    fn flow_update(&self) {
        let above = self.above_mark();
        let schedule = {
            let mut st = self.st.borrow_mut();
            st.phase != Phase::Closed && st.flow.set(above)
        };
        if schedule {
            self.soon(|me| me.deliver_flow());
        }
    }

    /// Tells the application `pause_writing`/`resume_writing` as due (from the loop).
    fn deliver_flow(self: &Rc<Self>) {
        let notice = {
            let mut st = self.st.borrow_mut();
            if st.phase != Phase::Open {
                return;
            }
            st.flow.take()
        };
        if notice.pause {
            self.call_user(|p, t| p.pause_writing(t));
        }
        if notice.resume {
            self.call_user(|p, t| p.resume_writing(t));
        }
    }

    /// The transport under it paused or resumed: the application follows (from the loop).
    fn on_lower_flow(self: &Rc<Self>) {
        self.flow_update();
        self.deliver_flow();
    }

    /// Encrypts what waits, then sends `close_notify`; `and_close` closes the transport
    /// under it after its flush, else only shuts down its writing side.
    fn send_close_notify(&self, and_close: bool) {
        self.pump();
        let Some(lower) = self.lower() else { return };
        {
            let mut st = self.st.borrow_mut();
            st.tls.send_close_notify();
            send_records(&mut st.tls, &lower);
        }
        if and_close {
            lower.lose_connection();
        } else {
            let _ = lower.lose_write_connection();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(key) = self.live.take() {
            shutdown::forget(key);
        }
    }
}

impl TransportBackend for Session {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.write_parts(&[data])
    }

    fn write_vectored(&self, parts: &[&[u8]]) -> Result<(), Error> {
        self.write_parts(parts)
    }

    fn lose_connection(&self) {
        let phase = {
            let mut st = self.st.borrow_mut();
            if st.phase == Phase::Closed || st.closing {
                return;
            }
            st.closing = true;
            st.phase
        };
        if phase == Phase::Open && !self.st.borrow().write_shut {
            self.send_close_notify(true);
        } else if let Some(lower) = self.lower() {
            lower.lose_connection();
        }
    }

    fn abort_connection(&self) {
        {
            let mut st = self.st.borrow_mut();
            if st.phase == Phase::Closed {
                return;
            }
            st.closing = true;
        }
        if let Some(lower) = self.lower() {
            lower.abort_connection();
        }
    }

    fn lose_write_connection(&self) -> Result<(), Error> {
        let phase = {
            let mut st = self.st.borrow_mut();
            if st.phase == Phase::Closed || st.closing {
                return Err(closed_error());
            }
            if st.write_shut {
                return Ok(());
            }
            st.write_shut = true;
            st.phase
        };
        if phase == Phase::Open {
            self.send_close_notify(false);
        }
        Ok(())
    }

    fn peer_addr(&self) -> Address {
        self.lower().map_or_else(
            || Address::Other("(not connected)".into()),
            |t| t.peer_addr(),
        )
    }

    fn local_addr(&self) -> Address {
        self.lower().map_or_else(
            || Address::Other("(not connected)".into()),
            |t| t.local_addr(),
        )
    }

    fn is_closing(&self) -> bool {
        let st = self.st.borrow();
        st.phase == Phase::Closed || st.closing || self.lower().is_some_and(|t| t.is_closing())
    }

    fn pause_reading(&self) {
        self.st.borrow_mut().read_paused = true;
        if let Some(lower) = self.lower() {
            lower.pause_reading();
        }
    }

    fn resume_reading(&self) {
        {
            let mut st = self.st.borrow_mut();
            if !st.read_paused {
                return;
            }
            st.read_paused = false;
        }
        if let Some(lower) = self.lower() {
            lower.resume_reading();
        }
        self.soon(|me| {
            if me.st.borrow().phase == Phase::Open {
                me.call_user(|p, t| p.reading_resumed(t));
                me.resume_input();
            }
        });
    }

    fn buffer_size(&self) -> usize {
        self.st.borrow().pending.len() + self.lower().map_or(0, |t| t.buffer_size())
    }

    fn is_reading(&self) -> bool {
        let st = self.st.borrow();
        st.phase == Phase::Open
            && !st.read_paused
            && !st.closing
            && !st.eof_seen
            && self.lower().is_some_and(|t| t.is_reading())
    }

    fn is_writing_paused(&self) -> bool {
        let above = self.above_mark();
        let schedule = {
            let mut st = self.st.borrow_mut();
            st.phase != Phase::Closed && st.flow.set(above)
        };
        if schedule {
            self.soon(|me| me.deliver_flow());
        }
        self.st.borrow_mut().flow.observe()
    }

    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        {
            let mut st = self.st.borrow_mut();
            st.high = high;
            st.low = low.min(high);
        }
        if let Some(lower) = self.lower() {
            lower.set_write_buffer_limits(high, low);
        }
        self.flow_update();
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        let st = self.st.borrow();
        (st.high, st.low)
    }

    fn set_nodelay(&self, on: bool) -> Result<(), Error> {
        self.lower().ok_or_else(closed_error)?.set_nodelay(on)
    }

    fn set_keepalive(&self, idle: Option<Duration>) -> Result<(), Error> {
        self.lower().ok_or_else(closed_error)?.set_keepalive(idle)
    }

    fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.lower().and_then(|t| t.peer_credentials())
    }

    fn with_fd(&self, f: &mut dyn FnMut(BorrowedFd<'_>)) -> Result<(), Error> {
        self.lower().ok_or_else(closed_error)?.with_fd(f)
    }

    fn set_protocol(&self, protocol: Box<dyn Protocol>) -> Result<(), Error> {
        if self.st.borrow().phase == Phase::Closed {
            return Err(Error::new(
                ErrorKind::ConnectionClosed,
                "cannot set the protocol of a closed TLS connection",
            ));
        }
        if self.in_user.get() {
            self.replacement.set(Some(protocol));
        } else {
            drop(self.user.replace(Some(protocol)));
        }
        Ok(())
    }

    fn with_protocol(&self, f: &mut dyn FnMut(&mut dyn Protocol)) -> Result<(), Error> {
        let Some(mut protocol) = self.user.take() else {
            return Err(if self.in_user.get() {
                Error::new(
                    ErrorKind::Busy,
                    "the protocol is running one of its own callbacks: use `self` there",
                )
            } else {
                Error::new(
                    ErrorKind::ConnectionClosed,
                    "the TLS connection is closed and its protocol gone",
                )
            });
        };
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut *protocol)));
        self.user.set(Some(protocol));
        result.map_err(|payload| {
            Error::new(
                ErrorKind::Panicked,
                format!(
                    "the function given to with_protocol panicked: {}",
                    panic_message(&*payload)
                ),
            )
        })
    }

    fn extra(&self, what: TypeId) -> Option<Rc<dyn Any>> {
        if what == TypeId::of::<TlsInfo>() {
            return self
                .st
                .borrow()
                .info
                .clone()
                .map(|info| info as Rc<dyn Any>);
        }
        self.lower().and_then(|t| t.extra_any(what))
    }

    /// On the connection under the layer (whose `peer_addr` this one reports).
    fn set_peer_addr(&self, peer: Address) -> Result<(), Error> {
        match self.lower() {
            Some(lower) => lower.set_peer_addr(peer),
            None => Err(Error::new(
                ErrorKind::ConnectionClosed,
                "cannot set the peer address: the TLS connection is closed",
            )),
        }
    }

    /// On the connection under the layer (which answers the questions this one does not).
    fn attach_extra(&self, value: Rc<dyn Any>) -> Result<(), Error> {
        match self.lower() {
            Some(lower) => lower.attach_extra_any(value),
            None => Err(Error::new(
                ErrorKind::ConnectionClosed,
                "cannot attach information: the TLS connection is closed",
            )),
        }
    }
}

/// Installs `layer` on the live `transport` (STARTTLS); see
/// [`TlsAcceptor::start_tls`](crate::TlsAcceptor::start_tls).
pub(crate) fn start_tls(
    transport: &Transport,
    layer: TlsLayer,
    received: &[u8],
) -> Result<Deferred<Transport>, Error> {
    layer.hold(received);
    let session = Rc::clone(&layer.session);
    let handshake = session.handshake();
    transport.set_protocol(layer)?;
    session.attach(transport);
    Ok(handshake)
}
