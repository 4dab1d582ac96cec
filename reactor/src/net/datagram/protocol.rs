//! What a user writes for a datagram port: a [`DatagramProtocol`]; and what it is told
//! when something goes wrong: a [`DatagramError`].

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::Arc;

use super::transport::DatagramTransport;
use crate::net::protocol::{Address, ConnectionLost};

/// Something a datagram port reports to its protocol's
/// [`error_received`](DatagramProtocol::error_received). None of these stops the port.
///
/// ```
/// use torsion_reactor::{Address, DatagramError};
///
/// let e = DatagramError::Dropped { count: 3, bytes: 192 };
/// assert_eq!(
///     e.to_string(),
///     "3 datagram(s) (192 bytes) dropped: the send queue was full"
/// );
/// assert_eq!(e.address(), None);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DatagramError {
    /// The network reported an error for a datagram sent earlier: ICMP port unreachable
    /// (`ECONNREFUSED`), host or network unreachable, a local path-MTU limit. `address` is
    /// the destination it concerns: the peer of a connected port, or, on Linux, the
    /// destination the kernel names (`IP_RECVERR`/`IPV6_RECVERR`); `None` if unknown.
    Network {
        /// The OS error.
        error: Arc<io::Error>,
        /// The destination of the datagram the error is about, if known.
        address: Option<Address>,
    },
    /// The OS refused to send one datagram (too large for the socket, `EMSGSIZE`;
    /// broadcast not enabled, `EACCES`; no route; nobody at a Unix path): it was not sent.
    SendFailed {
        /// The OS error.
        error: Arc<io::Error>,
        /// Where it was going (`None`: the connected peer).
        address: Option<Address>,
        /// Its size in bytes.
        size: usize,
    },
    /// A datagram larger than the port's receive buffer arrived. It was discarded whole:
    /// a datagram is never delivered cut. Raise the port's `max_datagram_size` to take it.
    Truncated {
        /// Its real size in bytes (where the OS reports it; else at least `limit` + 1).
        size: usize,
        /// The largest datagram the port takes.
        limit: usize,
        /// Where it came from.
        from: Address,
    },
    /// The send queue was at its bound (the socket did not take datagrams fast enough):
    /// these datagrams were dropped since the last report. Each `send_to` that dropped one
    /// also returned [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull).
    Dropped {
        /// Datagrams dropped.
        count: u64,
        /// Their payload bytes.
        bytes: u64,
    },
    /// Receiving failed for another reason (the port goes on).
    Receive {
        /// The OS error.
        error: Arc<io::Error>,
    },
}

impl DatagramError {
    /// The OS error, if this is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            DatagramError::Network { error, .. }
            | DatagramError::SendFailed { error, .. }
            | DatagramError::Receive { error } => Some(error),
            _ => None,
        }
    }

    /// The address this is about: the destination of a failed or bounced datagram, or the
    /// source of a truncated one.
    pub fn address(&self) -> Option<&Address> {
        match self {
            DatagramError::Network { address, .. } | DatagramError::SendFailed { address, .. } => {
                address.as_ref()
            }
            DatagramError::Truncated { from, .. } => Some(from),
            _ => None,
        }
    }
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let describe = |e: &io::Error| crate::error::describe_io(e);
        match self {
            DatagramError::Network { error, address } => match address {
                Some(a) => write!(f, "the network reported for {a}: {}", describe(error)),
                None => write!(f, "the network reported: {}", describe(error)),
            },
            DatagramError::SendFailed {
                error,
                address,
                size,
            } => match address {
                Some(a) => write!(
                    f,
                    "cannot send a {size}-byte datagram to {a}: {}",
                    describe(error)
                ),
                None => write!(
                    f,
                    "cannot send a {size}-byte datagram to the peer: {}",
                    describe(error)
                ),
            },
            DatagramError::Truncated { size, limit, from } => write!(
                f,
                "a {size}-byte datagram from {from} is larger than the {limit}-byte receive \
                 buffer; it was discarded"
            ),
            DatagramError::Dropped { count, bytes } => write!(
                f,
                "{count} datagram(s) ({bytes} bytes) dropped: the send queue was full"
            ),
            DatagramError::Receive { error } => {
                write!(f, "receiving failed: {}", describe(error))
            }
        }
    }
}

/// The code that runs a datagram port: told when the port starts, when a datagram
/// arrives (whole, with its source), when something goes wrong, when the send queue fills
/// and drains, and (exactly once) when the port stops.
///
/// As with stream protocols, the reactor never calls a protocol again while one of its
/// methods runs, and every callback starts from the loop. Datagrams sent during a
/// callback are gathered and sent together (one `sendmmsg` on Linux) when it returns.
///
/// ```
/// use torsion_reactor::{Address, DatagramProtocol, DatagramTransport};
///
/// /// Answers every datagram with its length.
/// struct Measure;
///
/// impl DatagramProtocol for Measure {
///     fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: Address) {
///         let _ = t.send_to(data.len().to_string().as_bytes(), &from);
///     }
/// }
/// ```
pub trait DatagramProtocol: Any {
    /// The port is open (asyncio's `connection_made`, Twisted's `startProtocol`); keep a
    /// clone of `transport` to send later. Called from the loop after `listen_udp` (or the
    /// like) returned.
    fn connection_made(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }

    /// A datagram arrived from `from`: all of it (zero bytes is a datagram too). `data` is
    /// only valid during the call (it lives in a buffer shared by the reactor's ports).
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: Address);

    /// Something went wrong that did not stop the port: a network error for an earlier
    /// datagram, a datagram that could not be sent, one too large to receive, datagrams
    /// dropped because the send queue was full (see [`DatagramError`]). The default logs
    /// it (`debug` for network errors, which a server sees whenever a client goes away;
    /// `warn` for the others), so nothing is lost silently.
    fn error_received(&mut self, transport: &DatagramTransport, error: &DatagramError) {
        match error {
            DatagramError::Network { .. } => {
                log::debug!("datagram port {}: {error}", transport.local_addr())
            }
            _ => log::warn!("datagram port {}: {error}", transport.local_addr()),
        }
    }

    /// The port stopped: closed, aborted, or the reactor shut down. Called exactly once for
    /// every `connection_made`.
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        let _ = reason;
    }

    /// The send queue went above its high-water mark (the socket is not taking datagrams
    /// as fast as they are sent): stop sending until `resume_writing`.
    fn pause_writing(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }

    /// The send queue drained to its low-water mark: send again.
    fn resume_writing(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }
}

/// A boxed datagram protocol is a datagram protocol (the type-erased form endpoints pass
/// around); the reactor does not box it again.
impl<P: DatagramProtocol + ?Sized> DatagramProtocol for Box<P> {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        (**self).connection_made(transport)
    }
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: Address) {
        (**self).datagram_received(transport, data, from)
    }
    fn error_received(&mut self, transport: &DatagramTransport, error: &DatagramError) {
        (**self).error_received(transport, error)
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        (**self).connection_lost(reason)
    }
    fn pause_writing(&mut self, transport: &DatagramTransport) {
        (**self).pause_writing(transport)
    }
    fn resume_writing(&mut self, transport: &DatagramTransport) {
        (**self).resume_writing(transport)
    }
}

/// `protocol` as the port's one box: a `Box<dyn DatagramProtocol>` is used as it is.
pub(crate) fn boxed<P: DatagramProtocol>(protocol: P) -> Box<dyn DatagramProtocol> {
    let mut slot = Some(protocol);
    if let Some(already) =
        (&mut slot as &mut dyn Any).downcast_mut::<Option<Box<dyn DatagramProtocol>>>()
    {
        if let Some(inner) = already.take() {
            return inner;
        }
    }
    match slot {
        Some(p) => Box::new(p),
        None => unreachable!("the protocol is taken only when it was already a box"),
    }
}
