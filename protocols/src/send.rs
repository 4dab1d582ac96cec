//! [`SendError`]: why a frame could not be sent on a connection.

use std::error::Error;
use std::fmt;

use crate::error::EncodeError;

/// Why `try_send_line` or `try_send_string` did not send a frame.
///
/// Either way nothing was written: a frame is checked before any byte of it
/// reaches the transport, so the outgoing stream is never left half-framed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The frame cannot be framed: too long for the encoder's `max_length`,
    /// or (for lines) it contains the delimiter.
    Encode(EncodeError),
    /// The transport refused the bytes: the connection is closed or closing.
    Transport(torsion_reactor::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Encode(e) => e.fmt(f),
            SendError::Transport(e) => e.fmt(f),
        }
    }
}

impl Error for SendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SendError::Encode(e) => Some(e),
            SendError::Transport(e) => Some(e),
        }
    }
}

impl From<EncodeError> for SendError {
    fn from(e: EncodeError) -> SendError {
        SendError::Encode(e)
    }
}

impl From<torsion_reactor::Error> for SendError {
    fn from(e: torsion_reactor::Error) -> SendError {
        SendError::Transport(e)
    }
}
