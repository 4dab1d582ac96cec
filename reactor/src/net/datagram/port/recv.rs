//! Receiving: a batch with one `recvmmsg`, each datagram to `datagram_received` (or kept
//! for later if reading was paused in the middle), truncated datagrams and the error queue
//! reported through `error_received`.

use super::*;

impl Port {
    pub(super) fn on_readable(self: &Rc<Self>, inner: &Rc<Inner>) {
        if !self.deliver_stash() {
            return;
        }
        let slot = self.config.max_datagram;
        let count = RECV_BATCH.min((MAX_BUFFER / slot).max(1));
        // No loop runs inside a callback, so the shared buffer is never in use here.
        let mut buf = inner.datagram_buf.borrow_mut();
        if buf.len() < slot * count {
            // Zeroed pages are mapped lazily: only the bytes datagrams fill become resident.
            *buf = vec![0; slot * count];
        }
        let mut received = Vec::with_capacity(count);
        for round in 0..RECV_ROUNDS {
            if !self.reading_now() {
                break;
            }
            let Some(fd) = self.fd() else { break };
            received.clear();
            match sys::recv_batch(fd, &mut buf, slot, count, &mut received) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Woken with nothing to read: an error may be queued (EPOLLERR).
                    if round == 0 && self.config.error_queue {
                        self.drain_error_queue(true);
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_network_error(&e) => {
                    self.network_error(e, true);
                    continue;
                }
                Err(e) => {
                    self.receive_failed(e);
                    break;
                }
            }
            let got = received.len();
            self.deliver_batch(&buf, slot, &mut received);
            if self.core.borrow().flush_due {
                self.flush();
            }
            if got < count {
                break;
            }
        }
    }

    /// Delivers one received batch (the protocol stays out of its slot for all of it).
    pub(super) fn deliver_batch(
        self: &Rc<Self>,
        buf: &[u8],
        slot: usize,
        received: &mut Vec<sys::Received>,
    ) {
        let Some(mut protocol) = self.protocol.take() else {
            return;
        };
        let transport = self.transport();
        let peer = self.core.borrow().peer.as_ref().map(|(a, _)| a.clone());
        self.in_callback.set(true);
        for (i, got) in received.drain(..).enumerate() {
            let (open, paused) = {
                let core = self.core.borrow();
                (core.life == Life::Open, core.read_paused)
            };
            if !open {
                break; // closed from a callback: the rest goes with the socket
            }
            let from = addr::from_sockaddr(&got.from, self.family);
            if peer.as_ref().is_some_and(|p| !addr::same_peer(p, &from)) {
                continue; // queued before `connect`: a connected port hears its peer only
            }
            let data = &buf[i * slot..i * slot + got.len.min(slot)];
            if paused {
                let item = if got.truncated {
                    Stashed::Error(self.truncated(got.len, from))
                } else {
                    Stashed::Datagram(Bytes::copy_from_slice(data), from)
                };
                self.core.borrow_mut().stash.push_back(item);
                continue;
            }
            let result = if got.truncated {
                let error = self.truncated(got.len, from);
                callback::guard(|| protocol.error_received(&transport, &error))
            } else {
                callback::guard(|| protocol.datagram_received(&transport, data, from))
            };
            if let Err(msg) = result {
                let from = addr::from_sockaddr(&got.from, self.family);
                let what = if got.truncated {
                    "error_received"
                } else {
                    "datagram_received"
                };
                self.report_panic(what, Some(&from), msg);
            }
        }
        received.clear();
        self.in_callback.set(false);
        self.protocol.set(Some(protocol));
    }

    pub(super) fn truncated(&self, size: usize, from: Address) -> DatagramError {
        let limit = self.config.max_datagram;
        DatagramError::Truncated {
            size: size.max(limit + 1),
            limit,
            from,
        }
    }

    /// Delivers what a pause in the middle of a batch left over; returns whether reading
    /// may go on.
    pub(super) fn deliver_stash(self: &Rc<Self>) -> bool {
        loop {
            if !self.reading_now() {
                return false;
            }
            let next = self.core.borrow_mut().stash.pop_front();
            match next {
                None => return true,
                Some(Stashed::Datagram(data, from)) => {
                    self.call("datagram_received", |p, t| {
                        p.datagram_received(t, &data, from)
                    });
                }
                Some(Stashed::Error(error)) => {
                    self.call("error_received", |p, t| p.error_received(t, &error));
                }
            }
        }
    }

    /// Reads the error queue (Linux `IP_RECVERR`): each entry becomes a `Network` error,
    /// delivered now from the loop (`inline`) or queued for delivery.
    pub(super) fn drain_error_queue(self: &Rc<Self>, inline: bool) {
        for _ in 0..RECV_BATCH {
            let Some(fd) = self.fd() else { return };
            let error = match sys::recv_queued_error(fd) {
                Ok(Some(queued)) => DatagramError::Network {
                    error: Arc::new(queued.error),
                    address: queued.about.map(|a| addr::from_sockaddr(&a, self.family)),
                },
                Ok(None) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("{}: cannot read the error queue: {e}", self.describe());
                    return;
                }
            };
            self.tell(error, inline);
        }
    }

    /// An asynchronous network error came back from a receive or a send: with the error
    /// queue on, the queue has it with its address; else it is about the peer.
    pub(super) fn network_error(self: &Rc<Self>, err: io::Error, inline: bool) {
        if self.config.error_queue {
            self.drain_error_queue(inline);
            return;
        }
        let address = self.core.borrow().peer.as_ref().map(|(a, _)| a.clone());
        let error = DatagramError::Network {
            error: Arc::new(err),
            address,
        };
        self.tell(error, inline);
    }

    pub(super) fn receive_failed(self: &Rc<Self>, err: io::Error) {
        let transient = matches!(
            err.raw_os_error(),
            Some(libc::ENOMEM | libc::ENOBUFS | libc::EAGAIN)
        );
        if transient {
            self.tell(
                DatagramError::Receive {
                    error: Arc::new(err),
                },
                true,
            );
        } else {
            // Not something a datagram caused (a closed or broken descriptor): the socket
            // cannot be read any more.
            log::error!("{}: receiving failed: {err}; closing it", self.describe());
            self.finish_close(ConnectionLost::Reset(Arc::new(err)));
        }
    }

    /// Tells the protocol `error`: now (`inline`, from the loop, in order with the
    /// datagrams) or from the next iteration.
    pub(super) fn tell(self: &Rc<Self>, error: DatagramError, inline: bool) {
        if inline && !self.in_callback.get() {
            if self.core.borrow().read_paused {
                self.core
                    .borrow_mut()
                    .stash
                    .push_back(Stashed::Error(error));
            } else {
                self.call("error_received", |p, t| p.error_received(t, &error));
            }
            return;
        }
        let schedule = {
            let mut core = self.core.borrow_mut();
            let notices = &mut core.notices;
            if notices.errors.len() < MAX_PENDING_ERRORS {
                notices.errors.push(error);
            } else {
                notices.suppressed += 1;
            }
            !std::mem::replace(&mut notices.scheduled, true)
        };
        if schedule {
            let me = self.me();
            self.soon(move || {
                if let Some(me) = me {
                    me.deliver_notices();
                }
            });
        }
    }

    pub(super) fn deliver_notices(self: &Rc<Self>) {
        let notices = std::mem::take(&mut self.core.borrow_mut().notices);
        if self.core.borrow().life == Life::Closed {
            return;
        }
        if notices.suppressed > 0 {
            log::warn!(
                "{}: {} more error(s) came faster than they could be reported",
                self.describe(),
                notices.suppressed
            );
        }
        for error in &notices.errors {
            self.call("error_received", |p, t| p.error_received(t, error));
        }
        if notices.dropped > 0 {
            let error = DatagramError::Dropped {
                count: notices.dropped,
                bytes: notices.dropped_bytes,
            };
            self.call("error_received", |p, t| p.error_received(t, &error));
        }
    }
}
