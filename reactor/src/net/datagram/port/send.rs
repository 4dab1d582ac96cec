//! Sending: datagrams checked at the call, gathered or queued, flushed with one `sendmmsg`
//! per batch; the queue's bound, its marks, and the errors the OS gives back.

use super::*;

impl Port {
    /// Queues (and, unless gathering, sends) one datagram; `to` is `None` for the peer.
    pub(crate) fn send(self: &Rc<Self>, data: &[u8], to: Option<&Address>) -> Result<(), Error> {
        let dest = {
            let core = self.core.borrow();
            if matches!(core.life, Life::Closing | Life::Closed) {
                return Err(closed_error(&core.local));
            }
            match (to, &core.peer) {
                (None, None) => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "cannot send: the datagram port {} is not connected; use send_to \
                             with an address",
                            core.local
                        ),
                    ));
                }
                (None, Some(_)) => None,
                (Some(to), Some((peer, _))) if addr::same_peer(to, peer) => None,
                (Some(to), Some((peer, _))) => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "cannot send to {to}: the datagram port {} is connected to {peer}",
                            core.local
                        ),
                    ));
                }
                (Some(to), None) => Some(self.destination(to, data.len())?),
            }
        };
        self.enqueue(data, dest)
    }

    /// What the OS needs for `to`, checked against this port (family, port, size).
    pub(crate) fn destination(&self, to: &Address, size: usize) -> Result<SockAddr, Error> {
        addr::destination(to, self.family, self.v6_only, size, &|| self.local_addr())
    }

    pub(super) fn enqueue(
        self: &Rc<Self>,
        data: &[u8],
        dest: Option<SockAddr>,
    ) -> Result<(), Error> {
        let own = self.in_callback.get();
        let inner = self.reactor.upgrade();
        let dispatching = inner.as_ref().is_some_and(|r| r.is_dispatching());
        let mut core = self.core.borrow_mut();
        let limit = self.config.queue_limit.get();
        if core.queue.would_overflow(data.len(), limit) && !core.blocked {
            // Gathered datagrams fill the queue: send them now to make room.
            drop(core);
            self.flush();
            core = self.core.borrow_mut();
            if core.life == Life::Closed {
                return Err(closed_error(&core.local));
            }
        }
        if let Err(Full) = core.queue.push(data, dest, limit) {
            core.dropped_total += 1;
            core.notices.dropped += 1;
            core.notices.dropped_bytes += data.len() as u64;
            let schedule = !std::mem::replace(&mut core.notices.scheduled, true);
            let (queued, count) = (core.queue.bytes(), core.queue.len());
            let local = core.local.clone();
            drop(core);
            if schedule {
                let me = self.me();
                self.soon(move || {
                    if let Some(me) = me {
                        me.deliver_notices();
                    }
                });
            }
            return Err(Error::new(
                ErrorKind::QueueFull,
                format!(
                    "the datagram port {local} dropped a {}-byte datagram: its send queue is \
                     full ({count} datagram(s), {queued} bytes, limit {limit} bytes)",
                    data.len()
                ),
            ));
        }
        if core.blocked {
            let queued = core.queue.bytes();
            let notify = core.flow.changed(queued);
            drop(core);
            if notify {
                self.schedule_flow();
            }
            return Ok(());
        }
        let big = core.queue.len() >= SEND_BATCH || core.queue.bytes() >= GATHER_BYTES;
        if own {
            core.flush_due = true;
        } else if dispatching && !core.listed {
            core.listed = true;
            if let (Some(inner), Some(me)) = (&inner, self.me()) {
                inner.queues.push_flush(me);
            }
        }
        drop(core);
        if big || !(own || dispatching) {
            self.flush();
        }
        Ok(())
    }

    /// Sends what is queued, in batches, until it is empty or the socket would block.
    /// Returns how many datagrams went out (sent or failed for good).
    pub(super) fn flush(self: &Rc<Self>) -> usize {
        let mut done = 0;
        let mut failures = Vec::new();
        let mut network = None;
        let notify_flow;
        let close_now;
        {
            let mut core = self.core.borrow_mut();
            core.flush_due = false;
            if core.life == Life::Closed {
                return 0;
            }
            let fd = self.fd();
            if let Some(fd) = fd.filter(|_| !core.queue.is_empty()) {
                core.blocked = false;
                loop {
                    let batch = core
                        .queue
                        .front(SEND_BATCH)
                        .map(|q| (&q.data[..], q.to.as_ref()));
                    match sys::send_batch(fd, batch, self.gso.get()) {
                        Ok(0) => break,
                        Ok(n) => {
                            core.queue.pop(n);
                            core.front_retried = false;
                            done += n;
                        }
                        Err(sys::SendError { error: e, grouped })
                            if grouped && sys::refuses_gso(&e) =>
                        {
                            // Segmenting is not possible here: from now on each datagram
                            // goes on its own (they are sent again, so nothing is lost).
                            log::debug!(
                                "the datagram port {} sends without UDP segmentation: {e}",
                                core.local
                            );
                            self.gso.set(false);
                        }
                        Err(sys::SendError { error: e, .. })
                            if e.kind() == io::ErrorKind::WouldBlock =>
                        {
                            core.blocked = true;
                            break;
                        }
                        Err(sys::SendError { error: e, .. })
                            if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(sys::SendError { error: e, .. }) => {
                            let retry = self.family != Family::Unix
                                && is_network_error(&e)
                                && !core.front_retried;
                            if retry {
                                // Probably an earlier datagram's ICMP error: report it, and
                                // send this one again.
                                core.front_retried = true;
                                network = Some(e);
                            } else {
                                core.front_retried = false;
                                if let Some(front) = core.queue.first() {
                                    failures.push(DatagramError::SendFailed {
                                        error: Arc::new(e),
                                        address: front
                                            .to
                                            .as_ref()
                                            .map(|a| addr::from_sockaddr(a, self.family)),
                                        size: front.data.len(),
                                    });
                                }
                                core.queue.pop(1);
                                done += 1;
                            }
                        }
                    }
                    if core.queue.is_empty() {
                        break;
                    }
                }
            }
            if done > 0 {
                core.backoff = Duration::ZERO;
            }
            let queued = core.queue.bytes();
            notify_flow = core.flow.changed(queued);
            close_now = core.life == Life::Closing && core.queue.is_empty();
        }
        if let Some(e) = network {
            self.network_error(e, false);
        }
        for failure in failures {
            self.tell(failure, false);
        }
        if notify_flow {
            self.schedule_flow();
        }
        if close_now {
            self.finish_close(ConnectionLost::Done);
        } else {
            self.update_interest();
        }
        done
    }

    /// Writability brought no progress: try again on a timer instead of spinning on a
    /// socket that keeps saying it is writable.
    pub(super) fn retry_later(self: &Rc<Self>) {
        let Some(inner) = self.reactor.upgrade() else {
            return;
        };
        let delay = {
            let mut core = self.core.borrow_mut();
            core.backoff = (core.backoff * 2).clamp(RETRY_FIRST, RETRY_MAX);
            core.backoff
        };
        let me = self.me.clone();
        let call = inner.reactor().call_later(delay, move || {
            if let Some(me) = me.upgrade() {
                me.core.borrow_mut().retry = None;
                me.flush();
            }
        });
        self.core.borrow_mut().retry = Some(call);
        self.update_interest();
    }

    pub(super) fn schedule_flow(self: &Rc<Self>) {
        let me = Rc::clone(self);
        self.soon(move || me.deliver_flow());
    }

    pub(super) fn deliver_flow(self: Rc<Self>) {
        let notice = {
            let mut core = self.core.borrow_mut();
            let notice = core.flow.take_notice();
            if core.life == Life::Closed {
                return;
            }
            notice
        };
        if notice.pause {
            self.call("pause_writing", |p, t| p.pause_writing(t));
        }
        if notice.resume {
            self.call("resume_writing", |p, t| p.resume_writing(t));
        }
    }
}
