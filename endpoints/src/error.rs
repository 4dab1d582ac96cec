//! [`EndpointError`], the one error type of the parser, and its [`ErrorKind`].

use std::fmt;

/// What went wrong while parsing an endpoint description.
///
/// Tests and programs should match on the kind rather than on the message text, which may be
/// reworded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The description ends with a `\` that has nothing left to escape.
    TrailingBackslash,
    /// The description has no type: it is empty, its first positional segment is empty, or it
    /// has only `key=value` segments.
    MissingType,
    /// The type is not registered and not a known-but-unsupported type.
    UnknownType,
    /// The type is one Twisted knows (such as `ssl`, `tls` or `tor`) that torsion does not
    /// support yet.
    Unsupported,
    /// A `key=value` segment names a parameter the type does not take.
    UnknownParameter,
    /// A parameter is given twice: positionally and by keyword, or twice by keyword.
    DuplicateParameter,
    /// A required parameter is not given.
    MissingParameter,
    /// More positional segments than the type takes.
    TooManyPositionals,
    /// A number is not written as plain ASCII digits (decimal, or octal for `mode`; `timeout`
    /// may have a `.fraction`).
    InvalidNumber,
    /// A number is well formed but outside the range the parameter allows.
    OutOfRange,
    /// An address (an interface, a bind address, a host, a path) is not valid.
    InvalidAddress,
    /// An IP address of the wrong family, such as an IPv6 interface on a `tcp` server.
    WrongFamily,
    /// Any other bad value, such as a flag that is not `0` or `1`, or an unknown choice.
    InvalidValue,
    /// Parameters that exclude each other are given together (systemd `index` and `name`),
    /// or one is given without another it needs (`requireClientCert` without `caCerts`).
    ConflictingParameters,
    /// A datagram type (`udp`, `unixgram`) where a stream endpoint is asked for, or a
    /// stream type (`tcp`, `unix`) where a datagram endpoint is.
    WrongTransport,
    /// A file the description names is missing, unreadable, or does not hold what it
    /// should (no PEM certificate, no private key).
    BadFile,
    /// A certificate or key the description names cannot be used: the key does not match
    /// the certificate, the certificate expired or is not valid yet, or cannot be parsed.
    BadCertificate,
}

impl ErrorKind {
    /// A short, stable, lower-case name for the kind (such as `"unknown parameter"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::TrailingBackslash => "trailing backslash",
            ErrorKind::MissingType => "missing type",
            ErrorKind::UnknownType => "unknown type",
            ErrorKind::Unsupported => "unsupported type",
            ErrorKind::UnknownParameter => "unknown parameter",
            ErrorKind::DuplicateParameter => "duplicate parameter",
            ErrorKind::MissingParameter => "missing parameter",
            ErrorKind::TooManyPositionals => "too many positionals",
            ErrorKind::InvalidNumber => "invalid number",
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::InvalidAddress => "invalid address",
            ErrorKind::WrongFamily => "wrong address family",
            ErrorKind::InvalidValue => "invalid value",
            ErrorKind::ConflictingParameters => "conflicting parameters",
            ErrorKind::WrongTransport => "wrong transport",
            ErrorKind::BadFile => "bad file",
            ErrorKind::BadCertificate => "bad certificate",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a description is parsed as a server (where to listen) or a client (where to
/// connect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// A server description, as given to [`parse_server`](crate::parse_server).
    Server,
    /// A client description, as given to [`parse_client`](crate::parse_client).
    Client,
}

impl Side {
    /// `"server"` or `"client"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an endpoint description was rejected.
///
/// The message quotes the whole description, names the offending segment or parameter and,
/// where there is a fixed set, lists the valid choices:
///
/// ```
/// use torsion_endpoints::{parse_server, ErrorKind};
///
/// let err = parse_server("tcp:port=80:interfce=0.0.0.0").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::UnknownParameter);
/// assert_eq!(err.param(), Some("interfce"));
/// assert_eq!(
///     err.to_string(),
///     "in \"tcp:port=80:interfce=0.0.0.0\": unknown parameter \"interfce\" for a tcp server; \
///      valid parameters: port, interface, backlog, reuseport"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointError {
    kind: ErrorKind,
    input: String,
    param: Option<String>,
    segment: Option<String>,
    detail: String,
}

impl EndpointError {
    /// A new error of `kind` about the description `input`; `detail` is the sentence that
    /// follows `in "INPUT": ` in the message.
    pub fn new(kind: ErrorKind, input: &str, detail: impl Into<String>) -> Self {
        EndpointError {
            kind,
            input: input.to_owned(),
            param: None,
            segment: None,
            detail: detail.into(),
        }
    }

    /// Records the name of the parameter (or, for type errors, the type) the error is about.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Records the segment of the description, as written, that the error is about.
    pub fn with_segment(mut self, segment: impl Into<String>) -> Self {
        self.segment = Some(segment.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The whole description that was being parsed.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The parameter (or unknown type name) the error is about, if there is one.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The offending segment exactly as written in the description, if there is one.
    pub fn segment(&self) -> Option<&str> {
        self.segment.as_deref()
    }

    /// The message without the leading `in "DESCRIPTION": `.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in \"{}\": {}", show(&self.input), self.detail)
    }
}

impl std::error::Error for EndpointError {}

impl From<EndpointError> for torsion_reactor::Error {
    /// An [`InvalidInput`](torsion_reactor::ErrorKind::InvalidInput) error with the same
    /// message, so that `server_from_string(&reactor, description)?.listen(factory)?` works
    /// in a function that returns `torsion_reactor::Error`.
    fn from(err: EndpointError) -> torsion_reactor::Error {
        torsion_reactor::Error::new(torsion_reactor::ErrorKind::InvalidInput, err.to_string())
    }
}

/// Text from a description as it should appear inside quotes in a message: unchanged, except
/// that control characters are escaped so a message always stays on one line.
pub(crate) fn show(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `"text"` with [`show`] applied.
pub(crate) fn quoted(text: &str) -> String {
    format!("\"{}\"", show(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_input_and_escapes_control_characters() {
        let e = EndpointError::new(ErrorKind::InvalidValue, "tcp:\n80", "bad");
        assert_eq!(e.to_string(), "in \"tcp:\\n80\": bad");
        assert_eq!(e.input(), "tcp:\n80");
        assert_eq!(e.detail(), "bad");
        assert_eq!(e.param(), None);
        assert_eq!(e.segment(), None);
    }

    #[test]
    fn builders_record_param_and_segment() {
        let e = EndpointError::new(ErrorKind::OutOfRange, "x", "y")
            .with_param("port")
            .with_segment("port=70000");
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert_eq!(e.param(), Some("port"));
        assert_eq!(e.segment(), Some("port=70000"));
        assert_eq!(ErrorKind::OutOfRange.to_string(), "out of range");
        assert_eq!(Side::Client.to_string(), "client");
    }
}
