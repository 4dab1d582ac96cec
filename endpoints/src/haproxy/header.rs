//! The PROXY protocol header, versions 1 (a text line) and 2 (binary, with TLVs):
//! [`ProxyHeader`], its encoding, and [`HeaderReader`], a parser that takes the bytes as
//! they come (one at a time if need be) and says when the header is complete, how many of
//! the bytes it used, or what is wrong with it. No I/O here.
//!
//! The rules are those of HAProxy's `doc/proxy-protocol.txt`: a version 1 line is at most
//! 107 bytes with its CRLF (`PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, or
//! `PROXY UNKNOWN...\r\n`, whose addresses are ignored); numbers have no leading zeros; a
//! lone CR or LF is an error. A version 2 header is the 12-byte signature, version 2 and a
//! command (LOCAL or PROXY), a family and protocol byte, a 16-bit length, then that many
//! bytes: the addresses (12, 36 or 216 bytes for IPv4, IPv6, Unix) and TLVs. Anything
//! else is refused, as early as the first byte that cannot start a header.

use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use torsion_reactor::Address;

/// The first 12 bytes of every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, its CRLF included (the spec's worst case,
/// `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;
/// The longest version 2 header [`HeaderReader::new`] accepts: 4 KiB, far more than the
/// addresses (at most 216 bytes) and the TLVs HAProxy, AWS, Azure or GCP send (a unique
/// id is at most 128 bytes), and a bound on what a connection may make us buffer before
/// it is known. The format allows up to 16 + 65,535 bytes.
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;
/// The length of a Unix socket address in a version 2 header.
const UNIX_ADDR_LEN: usize = 108;

/// The TLV types the specification registers (`PP2_TYPE_*`).
pub mod tlv {
    /// The application protocol (ALPN) the client negotiated, as bytes (`h2`).
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (TLS SNI, or the HTTP authority), UTF-8.
    pub const AUTHORITY: u8 = 0x02;
    /// A CRC32c checksum of the whole header; checked when present.
    pub const CRC32C: u8 = 0x03;
    /// Padding, ignored.
    pub const NOOP: u8 = 0x04;
    /// An opaque id of up to 128 bytes the proxy gave the connection.
    pub const UNIQUE_ID: u8 = 0x05;
    /// TLS details of the client's connection to the proxy (with sub-TLVs).
    pub const SSL: u8 = 0x20;
    /// The network namespace's name.
    pub const NETNS: u8 = 0x30;
}

/// Which version of the protocol a header is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text line (`PROXY TCP4 ...\r\n`): HAProxy's `send-proxy`.
    V1,
    /// The binary header, with TLVs: HAProxy's `send-proxy-v2`.
    V2,
}

/// What a version 2 header says the connection is (version 1 headers are always
/// [`Command::Proxy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// The proxy made the connection itself (a health check): the addresses in the
    /// header are to be ignored, the socket's are the real ones.
    Local,
    /// The connection is relayed for a client: the header has its addresses.
    Proxy,
}

/// Whether the relayed connection was a stream (TCP, Unix stream) or datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxiedTransport {
    /// TCP, or a Unix stream socket.
    Stream,
    /// UDP, or a Unix datagram socket (version 2 only).
    Datagram,
}

/// The relayed connection's addresses, as the header gives them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProxiedAddresses {
    /// Not given: version 1's `UNKNOWN`, version 2's `AF_UNSPEC` (or a family and
    /// protocol combination without addresses). The socket's addresses are the ones to use.
    Unknown,
    /// IPv4 (`TCP4`) or IPv6 (`TCP6`) addresses and ports; both of one family.
    Inet {
        /// Stream (TCP) or datagrams (UDP).
        transport: ProxiedTransport,
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to (the proxy's).
        destination: SocketAddr,
    },
    /// Unix socket addresses (version 2 only): the path's bytes, or a NUL byte and the
    /// name for a Linux abstract socket; empty for an unnamed socket. At most 108 bytes.
    Unix {
        /// Stream or datagrams.
        transport: ProxiedTransport,
        /// The client's socket address.
        source: Vec<u8>,
        /// The socket address the client connected to.
        destination: Vec<u8>,
    },
}

/// One type-length-value item of a version 2 header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tlv {
    /// The type (see [`tlv`] for the registered ones).
    pub kind: u8,
    /// The value, at most 65,535 bytes.
    pub value: Vec<u8>,
}

/// A PROXY protocol header: who the client really is, as a load balancer that relays
/// connections tells the server behind it.
///
/// ```
/// use torsion_endpoints::haproxy::{HeaderReader, ProxyHeader, tlv};
///
/// let header = ProxyHeader::v2("192.0.2.7:40000".parse()?, "198.51.100.1:443".parse()?)
///     .with_tlv(tlv::AUTHORITY, "example.org")
///     .with_tlv(tlv::UNIQUE_ID, "req-1");
/// let mut bytes = header.encode()?;
/// bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
///
/// // The receiving side, given the bytes as they arrive:
/// let mut reader = HeaderReader::new();
/// let (parsed, used) = reader.feed(&bytes)?.expect("the whole header is there");
/// assert_eq!(parsed, header);
/// assert_eq!(&bytes[used..], b"GET / HTTP/1.1\r\n");
/// assert_eq!(parsed.source().unwrap().to_string(), "192.0.2.7:40000");
/// assert_eq!(parsed.authority(), Some("example.org"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// The version it is (or is to be encoded) in.
    pub version: Version,
    /// LOCAL or PROXY (always PROXY in version 1).
    pub command: Command,
    /// The relayed connection's addresses.
    pub addresses: ProxiedAddresses,
    /// The TLVs, in order (version 2 only).
    pub tlvs: Vec<Tlv>,
}

/// What kind of problem a header has ([`HeaderError::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderErrorKind {
    /// The bytes do not start with either version's signature: the peer does not speak
    /// the PROXY protocol (a client that came straight to us, not through the proxy).
    NotProxy,
    /// A version 2 signature with a version other than 2.
    UnsupportedVersion,
    /// The header breaks the format: a bad address, port, command, family, TLV or line
    /// ending.
    Malformed,
    /// Longer than allowed: a version 1 line with no CRLF in its first 107 bytes, or a
    /// version 2 header longer than the reader's limit.
    TooLong,
    /// The CRC32c TLV does not match the header.
    BadChecksum,
    /// [`ProxyHeader::encode`]: the header cannot be written in its version (Unix
    /// addresses, TLVs or LOCAL in version 1, mixed address families, a value too long).
    Unencodable,
}

/// Why a header was refused or cannot be encoded: its kind and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    kind: HeaderErrorKind,
    message: String,
}

impl HeaderError {
    fn new(kind: HeaderErrorKind, message: impl Into<String>) -> HeaderError {
        HeaderError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> HeaderErrorKind {
        self.kind
    }

    /// What is wrong, as a sentence.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HeaderError {}

fn malformed(message: impl Into<String>) -> HeaderError {
    HeaderError::new(HeaderErrorKind::Malformed, message)
}

fn unencodable(message: impl Into<String>) -> HeaderError {
    HeaderError::new(HeaderErrorKind::Unencodable, message)
}

/// Up to `n` bytes of `bytes`, escaped for a log line.
fn shown(bytes: &[u8], n: usize) -> String {
    let mut s = bytes[..bytes.len().min(n)].escape_ascii().to_string();
    if bytes.len() > n {
        s.push_str("...");
    }
    s
}

impl ProxyHeader {
    /// A version 1 header for a TCP connection from `source` to `destination` (both IPv4
    /// or both IPv6; mixed, the IPv4 one is written as an IPv4-mapped IPv6 address).
    pub fn v1(source: SocketAddr, destination: SocketAddr) -> ProxyHeader {
        ProxyHeader::inet(Version::V1, source, destination)
    }

    /// A version 2 PROXY header for a TCP connection from `source` to `destination` (as
    /// for [`v1`](ProxyHeader::v1)), with no TLVs yet.
    pub fn v2(source: SocketAddr, destination: SocketAddr) -> ProxyHeader {
        ProxyHeader::inet(Version::V2, source, destination)
    }

    fn inet(version: Version, source: SocketAddr, destination: SocketAddr) -> ProxyHeader {
        let (source, destination) = same_family(source, destination);
        ProxyHeader {
            version,
            command: Command::Proxy,
            addresses: ProxiedAddresses::Inet {
                transport: ProxiedTransport::Stream,
                source,
                destination,
            },
            tlvs: Vec::new(),
        }
    }

    /// A header for a connection between two [`Address`]es as torsion reports them (a
    /// transport's `peer_addr()` and `local_addr()`): TCP and UDP addresses as such, Unix
    /// ones in version 2; what the version cannot express is sent as unknown.
    pub fn for_addresses(version: Version, source: &Address, destination: &Address) -> Self {
        let unknown = ProxyHeader {
            version,
            command: Command::Proxy,
            addresses: ProxiedAddresses::Unknown,
            tlvs: Vec::new(),
        };
        match (source, destination) {
            (Address::Tcp(s), Address::Tcp(d)) => ProxyHeader::inet(version, *s, *d),
            (Address::Udp(s), Address::Udp(d)) if version == Version::V2 => {
                let (source, destination) = same_family(*s, *d);
                ProxyHeader {
                    addresses: ProxiedAddresses::Inet {
                        transport: ProxiedTransport::Datagram,
                        source,
                        destination,
                    },
                    ..unknown
                }
            }
            (s, d) if version == Version::V2 => match (unix_bytes(s), unix_bytes(d)) {
                (Some(source), Some(destination)) => ProxyHeader {
                    addresses: ProxiedAddresses::Unix {
                        transport: ProxiedTransport::Stream,
                        source,
                        destination,
                    },
                    ..unknown
                },
                _ => unknown,
            },
            _ => unknown,
        }
    }

    /// A header with no addresses: version 1's `PROXY UNKNOWN`, version 2's PROXY command
    /// with `AF_UNSPEC`. The receiver uses the socket's addresses.
    pub fn unknown(version: Version) -> ProxyHeader {
        ProxyHeader {
            version,
            command: Command::Proxy,
            addresses: ProxiedAddresses::Unknown,
            tlvs: Vec::new(),
        }
    }

    /// A version 2 LOCAL header: the connection is the proxy's own (a health check).
    pub fn local() -> ProxyHeader {
        ProxyHeader {
            command: Command::Local,
            ..ProxyHeader::unknown(Version::V2)
        }
    }

    /// This header with one more TLV (version 2).
    pub fn with_tlv(mut self, kind: u8, value: impl AsRef<[u8]>) -> ProxyHeader {
        self.tlvs.push(Tlv {
            kind,
            value: value.as_ref().to_vec(),
        });
        self
    }

    /// This header with a CRC32c TLV, filled in by [`encode`](ProxyHeader::encode).
    pub fn with_crc32c(self) -> ProxyHeader {
        self.with_tlv(tlv::CRC32C, [0; 4])
    }

    /// The client's address, when the header gives one: `None` for a LOCAL header or
    /// unknown addresses (then the socket's peer is the client).
    pub fn source(&self) -> Option<Address> {
        self.address(true)
    }

    /// The address the client connected to (the proxy's), when the header gives one.
    pub fn destination(&self) -> Option<Address> {
        self.address(false)
    }

    fn address(&self, source: bool) -> Option<Address> {
        if self.command == Command::Local {
            return None;
        }
        match &self.addresses {
            ProxiedAddresses::Unknown => None,
            ProxiedAddresses::Inet {
                transport,
                source: s,
                destination: d,
            } => {
                let a = if source { *s } else { *d };
                Some(match transport {
                    ProxiedTransport::Stream => Address::Tcp(a),
                    ProxiedTransport::Datagram => Address::Udp(a),
                })
            }
            ProxiedAddresses::Unix {
                source: s,
                destination: d,
                ..
            } => {
                let a = if source { s } else { d };
                Some(match a.split_first() {
                    None => Address::Unix(None),
                    Some((0, name)) => Address::UnixAbstract(name.to_vec()),
                    Some(_) => Address::Unix(Some(PathBuf::from(OsStr::from_bytes(a)))),
                })
            }
        }
    }

    /// The value of the first TLV of type `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.value.as_slice())
    }

    /// The ALPN TLV: the application protocol the client negotiated with the proxy.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.tlv(tlv::ALPN)
    }

    /// The AUTHORITY TLV: the host name the client asked for (TLS SNI), if it is UTF-8.
    pub fn authority(&self) -> Option<&str> {
        self.tlv(tlv::AUTHORITY)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The UNIQUE_ID TLV: the proxy's id for this connection (HAProxy's `unique-id`).
    pub fn unique_id(&self) -> Option<&[u8]> {
        self.tlv(tlv::UNIQUE_ID)
    }

    /// The header's bytes, as sent before anything else on a connection. A CRC32c TLV
    /// (see [`with_crc32c`](ProxyHeader::with_crc32c)) gets the checksum.
    ///
    /// Errors ([`HeaderErrorKind::Unencodable`]): in version 1, a LOCAL command, TLVs,
    /// datagrams or Unix addresses; in either, an IPv4 address beside an IPv6 one, a Unix
    /// address over 108 bytes, a TLV value over 65,535 bytes or a header over 65,551.
    pub fn encode(&self) -> Result<Vec<u8>, HeaderError> {
        match self.version {
            Version::V1 => self.encode_v1(),
            Version::V2 => self.encode_v2(),
        }
    }

    fn encode_v1(&self) -> Result<Vec<u8>, HeaderError> {
        if self.command == Command::Local {
            return Err(unencodable(
                "version 1 has no LOCAL command (use PROXY UNKNOWN, or version 2)",
            ));
        }
        if !self.tlvs.is_empty() {
            return Err(unencodable("version 1 headers carry no TLVs"));
        }
        let line = match &self.addresses {
            ProxiedAddresses::Unknown => "PROXY UNKNOWN\r\n".to_owned(),
            ProxiedAddresses::Inet {
                transport: ProxiedTransport::Stream,
                source,
                destination,
            } => {
                let family = match (source, destination) {
                    (SocketAddr::V4(_), SocketAddr::V4(_)) => "TCP4",
                    (SocketAddr::V6(_), SocketAddr::V6(_)) => "TCP6",
                    _ => return Err(mixed_families()),
                };
                format!(
                    "PROXY {family} {} {} {} {}\r\n",
                    v1_ip(source.ip()),
                    v1_ip(destination.ip()),
                    source.port(),
                    destination.port()
                )
            }
            ProxiedAddresses::Inet { .. } => {
                return Err(unencodable("version 1 has no datagram (UDP) addresses"));
            }
            ProxiedAddresses::Unix { .. } => {
                return Err(unencodable("version 1 has no Unix socket addresses"));
            }
        };
        Ok(line.into_bytes())
    }

    fn encode_v2(&self) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&V2_SIGNATURE);
        out.push(match self.command {
            Command::Local => 0x20,
            Command::Proxy => 0x21,
        });
        let proto = |t: &ProxiedTransport| match t {
            ProxiedTransport::Stream => 0x1,
            ProxiedTransport::Datagram => 0x2,
        };
        let mut body = Vec::new();
        let family = match &self.addresses {
            ProxiedAddresses::Unknown => 0x00,
            ProxiedAddresses::Inet {
                transport,
                source,
                destination,
            } => {
                let family = match (source, destination) {
                    (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                        body.extend_from_slice(&s.ip().octets());
                        body.extend_from_slice(&d.ip().octets());
                        0x10
                    }
                    (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                        body.extend_from_slice(&s.ip().octets());
                        body.extend_from_slice(&d.ip().octets());
                        0x20
                    }
                    _ => return Err(mixed_families()),
                };
                body.extend_from_slice(&source.port().to_be_bytes());
                body.extend_from_slice(&destination.port().to_be_bytes());
                family | proto(transport)
            }
            ProxiedAddresses::Unix {
                transport,
                source,
                destination,
            } => {
                for a in [source, destination] {
                    if a.len() > UNIX_ADDR_LEN {
                        return Err(unencodable(format!(
                            "a Unix socket address of {} bytes (at most {UNIX_ADDR_LEN})",
                            a.len()
                        )));
                    }
                    body.extend_from_slice(a);
                    body.resize(body.len() + UNIX_ADDR_LEN - a.len(), 0);
                }
                0x30 | proto(transport)
            }
        };
        out.push(family);
        let mut crc_at = None;
        for t in &self.tlvs {
            let len = u16::try_from(t.value.len()).map_err(|_| {
                unencodable(format!(
                    "a TLV value of {} bytes (at most 65535)",
                    t.value.len()
                ))
            })?;
            body.push(t.kind);
            body.extend_from_slice(&len.to_be_bytes());
            if t.kind == tlv::CRC32C && t.value.len() == 4 && crc_at.is_none() {
                crc_at = Some(16 + body.len());
                body.extend_from_slice(&[0; 4]);
            } else {
                body.extend_from_slice(&t.value);
            }
        }
        let len = u16::try_from(body.len()).map_err(|_| {
            unencodable(format!(
                "a header of {} bytes (at most 65551)",
                16 + body.len()
            ))
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        if let Some(at) = crc_at {
            let crc = crc32c(&out);
            out[at..at + 4].copy_from_slice(&crc.to_be_bytes());
        }
        Ok(out)
    }
}

fn mixed_families() -> HeaderError {
    unencodable("the source and destination addresses are of different families (IPv4, IPv6)")
}

/// Both addresses of one family: an IPv4 one beside an IPv6 one becomes IPv4-mapped.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s {
        SocketAddr::V4(v4) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        v6 => v6,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

fn unix_bytes(a: &Address) -> Option<Vec<u8>> {
    match a {
        Address::Unix(None) => Some(Vec::new()),
        Address::Unix(Some(p)) => Some(p.as_os_str().as_bytes().to_vec()),
        Address::UnixAbstract(name) => {
            let mut v = vec![0];
            v.extend_from_slice(name);
            Some(v)
        }
        _ => None,
    }
}

/// An address as version 1 writes it: IPv6 as hexadecimal groups (never the dotted form
/// Rust's `Display` gives IPv4-mapped addresses, which the format does not allow).
fn v1_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let shown = v6.to_string();
            if shown.contains('.') {
                let groups: Vec<String> = v6.segments().iter().map(|g| format!("{g:x}")).collect();
                groups.join(":")
            } else {
                shown
            }
        }
    }
}

/// CRC32c (Castagnoli), as the CRC32C TLV uses it (RFC 4960, appendix B).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Parses a header at the start of `input`: `Ok(Some((header, length)))` once it is
/// complete (`input[length..]` is what follows it), `Ok(None)` while it may still become
/// one, or the reason it cannot. Version 2 headers longer than `max_len` are refused.
///
/// [`HeaderReader`] is the same for bytes that arrive in pieces.
pub fn parse_header(
    input: &[u8],
    max_len: usize,
) -> Result<Option<(ProxyHeader, usize)>, HeaderError> {
    match input.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(input),
        Some(b'\r') => parse_v2(input, max_len),
        Some(_) => Err(not_proxy(input)),
    }
}

fn not_proxy(input: &[u8]) -> HeaderError {
    HeaderError::new(
        HeaderErrorKind::NotProxy,
        format!(
            "no PROXY protocol header: the connection began with \"{}\"",
            shown(input, 16)
        ),
    )
}

fn parse_v1(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, HeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    let n = input.len().min(PREFIX.len());
    if input[..n] != PREFIX[..n] {
        return Err(if n < 5 || input[..5] != PREFIX[..5] {
            not_proxy(input)
        } else {
            malformed("a version 1 header: no space after PROXY")
        });
    }
    let window = &input[..input.len().min(V1_MAX_LEN)];
    let mut end = None;
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => {
                    end = Some(i);
                    break;
                }
                Some(_) => return Err(malformed("a version 1 header: a CR without its LF")),
                None => {}
            },
            b'\n' => return Err(malformed("a version 1 header: an LF without its CR")),
            0x20..=0x7e => {}
            other => {
                return Err(malformed(format!(
                    "a version 1 header: the byte \\x{other:02x} (only printable ASCII is \
                     allowed)"
                )));
            }
        }
    }
    let Some(end) = end else {
        if input.len() >= V1_MAX_LEN {
            return Err(HeaderError::new(
                HeaderErrorKind::TooLong,
                format!("a version 1 header: no CRLF in its first {V1_MAX_LEN} bytes"),
            ));
        }
        return Ok(None);
    };
    // Printable ASCII only, checked above.
    let line = std::str::from_utf8(&input[PREFIX.len()..end])
        .map_err(|_| malformed("a version 1 header that is not ASCII"))?;
    let header = v1_line(line)?;
    Ok(Some((header, end + 2)))
}

fn v1_line(line: &str) -> Result<ProxyHeader, HeaderError> {
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or_default();
    let v6 = match family {
        "UNKNOWN" => return Ok(ProxyHeader::unknown(Version::V1)),
        "TCP4" => false,
        "TCP6" => true,
        other => {
            return Err(malformed(format!(
                "a version 1 header: unknown protocol \"{}\" (TCP4, TCP6 or UNKNOWN)",
                shown(other.as_bytes(), 16)
            )));
        }
    };
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(malformed(format!(
            "a version 1 {family} header needs 4 fields separated by single spaces \
             (source, destination, source port, destination port), not {}",
            fields.len()
        )));
    };
    let ip = |s: &str| -> Result<IpAddr, HeaderError> {
        let bad = || {
            malformed(format!(
                "a version 1 {family} header: \"{}\" is not an {} address",
                shown(s.as_bytes(), 40),
                if v6 { "IPv6" } else { "IPv4" }
            ))
        };
        if v6 {
            if s.contains('.') {
                return Err(bad());
            }
            s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad())
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad())
        }
    };
    let port = |s: &str| -> Result<u16, HeaderError> {
        let ok = !s.is_empty()
            && s.len() <= 5
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        ok.then(|| s.parse::<u16>().ok()).flatten().ok_or_else(|| {
            malformed(format!(
                "a version 1 header: \"{}\" is not a port (0 to 65535, no leading zeros)",
                shown(s.as_bytes(), 16)
            ))
        })
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    let destination = SocketAddr::new(ip(dst)?, port(dport)?);
    Ok(ProxyHeader {
        version: Version::V1,
        command: Command::Proxy,
        addresses: ProxiedAddresses::Inet {
            transport: ProxiedTransport::Stream,
            source,
            destination,
        },
        tlvs: Vec::new(),
    })
}

fn parse_v2(input: &[u8], max_len: usize) -> Result<Option<(ProxyHeader, usize)>, HeaderError> {
    let n = input.len().min(V2_SIGNATURE.len());
    if input[..n] != V2_SIGNATURE[..n] {
        return Err(not_proxy(input));
    }
    if let Some(&ver_cmd) = input.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(HeaderError::new(
                HeaderErrorKind::UnsupportedVersion,
                format!(
                    "a version 2 signature with version {} (only 2 is defined)",
                    ver_cmd >> 4
                ),
            ));
        }
        if ver_cmd & 0xf > 1 {
            return Err(malformed(format!(
                "a version 2 header with command {} (0 LOCAL or 1 PROXY)",
                ver_cmd & 0xf
            )));
        }
    }
    if let Some(&fam) = input.get(13) {
        if fam >> 4 > 3 || fam & 0xf > 2 {
            return Err(malformed(format!(
                "a version 2 header with address family and protocol 0x{fam:02x}"
            )));
        }
    }
    if input.len() < 16 {
        return Ok(None);
    }
    let total = 16 + usize::from(u16::from_be_bytes([input[14], input[15]]));
    if total > max_len {
        return Err(HeaderError::new(
            HeaderErrorKind::TooLong,
            format!("a version 2 header of {total} bytes (at most {max_len} are accepted)"),
        ));
    }
    if input.len() < total {
        return Ok(None);
    }
    let command = if input[12] & 0xf == 0 {
        Command::Local
    } else {
        Command::Proxy
    };
    let body = &input[16..total];
    let transport = match input[13] & 0xf {
        1 => ProxiedTransport::Stream,
        _ => ProxiedTransport::Datagram,
    };
    let (addresses, rest) = match (input[13] >> 4, input[13] & 0xf) {
        (0, _) | (_, 0) => (ProxiedAddresses::Unknown, None),
        (family, _) => {
            let need = match family {
                1 => 12,
                2 => 36,
                _ => 2 * UNIX_ADDR_LEN,
            };
            if body.len() < need {
                return Err(malformed(format!(
                    "a version 2 header with {} bytes of addresses where its family needs \
                     {need}",
                    body.len()
                )));
            }
            let a = &body[..need];
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            let addresses = match family {
                1 => {
                    let ip = |at: usize| Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]);
                    ProxiedAddresses::Inet {
                        transport,
                        source: SocketAddr::new(ip(0).into(), port(8)),
                        destination: SocketAddr::new(ip(4).into(), port(10)),
                    }
                }
                2 => {
                    let ip = |at: usize| {
                        let mut o = [0; 16];
                        o.copy_from_slice(&a[at..at + 16]);
                        Ipv6Addr::from(o)
                    };
                    ProxiedAddresses::Inet {
                        transport,
                        source: SocketAddr::new(ip(0).into(), port(32)),
                        destination: SocketAddr::new(ip(16).into(), port(34)),
                    }
                }
                _ => {
                    let trim = |s: &[u8]| {
                        let end = s.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                        s[..end].to_vec()
                    };
                    ProxiedAddresses::Unix {
                        transport,
                        source: trim(&a[..UNIX_ADDR_LEN]),
                        destination: trim(&a[UNIX_ADDR_LEN..]),
                    }
                }
            };
            (addresses, Some(&body[need..]))
        }
    };
    let tlvs = match rest {
        Some(rest) => parse_tlvs(rest)?,
        // No address block is defined for these: TLVs, if any, follow the fixed part (as
        // after a LOCAL health check's header); what does not read as TLVs is ignored.
        None => parse_tlvs(body).unwrap_or_default(),
    };
    check_crc(&input[..total], &tlvs)?;
    Ok(Some((
        ProxyHeader {
            version: Version::V2,
            command,
            addresses,
            tlvs,
        },
        total,
    )))
}

fn parse_tlvs(mut rest: &[u8]) -> Result<Vec<Tlv>, HeaderError> {
    let mut tlvs = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(malformed(format!(
                "a version 2 header ending in {} bytes that are not a whole TLV",
                rest.len()
            )));
        }
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        if rest.len() < 3 + len {
            return Err(malformed(format!(
                "a version 2 header with a TLV of type 0x{:02x} and length {len} that \
                 goes past the header's end",
                rest[0]
            )));
        }
        tlvs.push(Tlv {
            kind: rest[0],
            value: rest[3..3 + len].to_vec(),
        });
        rest = &rest[3 + len..];
    }
    Ok(tlvs)
}

/// Checks a CRC32C TLV, if there is one, against the header (with the TLV's value zeroed).
fn check_crc(header: &[u8], tlvs: &[Tlv]) -> Result<(), HeaderError> {
    let Some(sent) = tlvs.iter().find(|t| t.kind == tlv::CRC32C) else {
        return Ok(());
    };
    let Ok(sent) = <[u8; 4]>::try_from(sent.value.as_slice()) else {
        return Err(malformed(format!(
            "a version 2 header with a CRC32C TLV of {} bytes (4 expected)",
            sent.value.len()
        )));
    };
    // Where the value is: find the TLV again, walking the same structure.
    let mut zeroed = header.to_vec();
    let addresses_len = match (header[13] >> 4, header[13] & 0xf) {
        (0, _) | (_, 0) => 0,
        (1, _) => 12,
        (2, _) => 36,
        _ => 2 * UNIX_ADDR_LEN,
    };
    let mut at = 16 + addresses_len;
    while at + 3 <= zeroed.len() {
        let len = usize::from(u16::from_be_bytes([zeroed[at + 1], zeroed[at + 2]]));
        if zeroed[at] == tlv::CRC32C {
            zeroed[at + 3..at + 7].fill(0);
            break;
        }
        at += 3 + len;
    }
    let computed = crc32c(&zeroed);
    if computed != u32::from_be_bytes(sent) {
        return Err(HeaderError::new(
            HeaderErrorKind::BadChecksum,
            format!(
                "a version 2 header whose CRC32C TLV says 0x{:08x} where the header's is \
                 0x{computed:08x}",
                u32::from_be_bytes(sent)
            ),
        ));
    }
    Ok(())
}

/// Reads a header from bytes as they arrive, keeping what it needs between pieces (at most
/// the header itself: [`V1_MAX_LEN`] bytes, or the version 2 limit).
///
/// ```
/// use torsion_endpoints::haproxy::{HeaderReader, HeaderErrorKind};
///
/// let mut reader = HeaderReader::new();
/// let input = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\nhello";
/// let (first, rest) = input.split_at(30);
/// assert!(reader.feed(first).unwrap().is_none()); // not complete yet
/// let (header, used) = reader.feed(rest).unwrap().unwrap();
/// assert_eq!(&rest[used..], b"hello");
/// assert_eq!(header.source().unwrap().to_string(), "192.0.2.7:40000");
///
/// let err = HeaderReader::new().feed(b"GET / HTTP/1.1\r\n").unwrap_err();
/// assert_eq!(err.kind(), HeaderErrorKind::NotProxy);
/// ```
#[derive(Clone, Debug)]
pub struct HeaderReader {
    buf: Vec<u8>,
    max_len: usize,
}

impl Default for HeaderReader {
    fn default() -> Self {
        HeaderReader::new()
    }
}

impl HeaderReader {
    /// A reader accepting version 2 headers of up to [`DEFAULT_MAX_HEADER_LEN`] bytes.
    pub fn new() -> HeaderReader {
        HeaderReader::with_max_len(DEFAULT_MAX_HEADER_LEN)
    }

    /// A reader accepting version 2 headers of up to `max_len` bytes (at least 16; a
    /// header with Unix addresses needs 232).
    pub fn with_max_len(max_len: usize) -> HeaderReader {
        HeaderReader {
            buf: Vec::new(),
            max_len: max_len.max(16),
        }
    }

    /// Takes the next bytes: `Ok(Some((header, used)))` once the header is complete,
    /// `used` being how many bytes of `data` it took (`data[used..]` follows the header:
    /// the application's first bytes); `Ok(None)` while more is needed; an error as soon
    /// as the bytes cannot be a header. Once it answered, the reader is done with.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(ProxyHeader, usize)>, HeaderError> {
        if self.buf.is_empty() {
            // The usual case: the whole header in one read, parsed where it lies.
            let parsed = parse_header(data, self.max_len)?;
            if parsed.is_none() {
                self.buf.extend_from_slice(data);
            }
            return Ok(parsed);
        }
        let before = self.buf.len();
        self.buf.extend_from_slice(data);
        match parse_header(&self.buf, self.max_len)? {
            Some((header, len)) => {
                self.buf = Vec::new();
                Ok(Some((header, len - before)))
            }
            None => Ok(None),
        }
    }

    /// How many bytes it holds of a header not complete yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, HeaderError> {
        parse_header(input, DEFAULT_MAX_HEADER_LEN)
    }

    fn kind(input: &[u8]) -> HeaderErrorKind {
        parse_all(input).expect_err("an error").kind()
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn v1_examples_from_the_spec() {
        let (h, n) = parse_all(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /")
            .unwrap()
            .unwrap();
        assert_eq!(n, 47);
        assert_eq!(
            h.source(),
            Some(Address::Tcp("192.168.0.1:56324".parse().unwrap()))
        );
        assert_eq!(
            h.destination(),
            Some(Address::Tcp("192.168.0.11:443".parse().unwrap()))
        );
        let (h, n) = parse_all(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!((h.addresses, n), (ProxiedAddresses::Unknown, 15));
        // UNKNOWN: whatever comes before the CRLF is ignored.
        let (h, _) = parse_all(b"PROXY UNKNOWN ffff:: ffff:: 1 2\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.source(), None);
        let (h, _) = parse_all(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.source().unwrap().to_string(), "[2001:db8::1]:65535");
        let longest = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(longest.len(), V1_MAX_LEN);
        assert!(parse_all(longest.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn v1_errors() {
        use HeaderErrorKind::*;
        for (input, expected) in [
            (&b"GET / HTTP/1.1\r\n"[..], NotProxy),
            (b"PROXZ", NotProxy),
            (b"PROXYTCP4", Malformed),
            (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rx", Malformed),
            (b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", Malformed),
            (b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", Malformed),
            (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", Malformed),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", Malformed),
            (b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", Malformed),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 \x002\r\n", Malformed),
        ] {
            assert_eq!(kind(input), expected, "{}", input.escape_ascii());
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(kind(&long), TooLong);
        // One byte short of the limit, without a CRLF yet: still waiting.
        assert!(parse_all(&long[..V1_MAX_LEN - 1]).unwrap().is_none());
    }

    #[test]
    fn v2_local_unknown_and_tlvs() {
        let local = ProxyHeader::local().encode().unwrap();
        assert_eq!(local.len(), 16);
        assert_eq!(&local[12..], &[0x20, 0x00, 0, 0]);
        let (h, n) = parse_all(&local).unwrap().unwrap();
        assert_eq!((h.command, h.source(), n), (Command::Local, None, 16));

        // LOCAL with addresses: the addresses are parsed, and ignored.
        let mut h = ProxyHeader::v2("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
        h.command = Command::Local;
        let (parsed, _) = parse_all(&h.encode().unwrap()).unwrap().unwrap();
        assert_eq!(parsed.source(), None);

        let h = ProxyHeader::v2(
            "[2001:db8::7]:5".parse().unwrap(),
            "[::1]:6".parse().unwrap(),
        )
        .with_tlv(tlv::ALPN, "h2")
        .with_tlv(tlv::NOOP, [])
        .with_tlv(0xE0, [1, 2, 3])
        .with_crc32c();
        let bytes = h.encode().unwrap();
        let (parsed, n) = parse_all(&bytes).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(parsed.alpn(), Some(&b"h2"[..]));
        assert_eq!(parsed.tlv(0xE0), Some(&[1, 2, 3][..]));
        assert_eq!(parsed.authority(), None);
        let mut corrupt = bytes.clone();
        corrupt[20] ^= 1; // an address bit
        assert_eq!(kind(&corrupt), HeaderErrorKind::BadChecksum);
    }

    #[test]
    fn v2_errors() {
        use HeaderErrorKind::*;
        let good = ProxyHeader::v2("1.2.3.4:1".parse().unwrap(), "5.6.7.8:2".parse().unwrap())
            .encode()
            .unwrap();
        let with = |at: usize, b: u8| {
            let mut v = good.clone();
            v[at] = b;
            v
        };
        assert_eq!(kind(&with(12, 0x11)), UnsupportedVersion);
        assert_eq!(kind(&with(12, 0x22)), Malformed);
        assert_eq!(kind(&with(13, 0x41)), Malformed);
        assert_eq!(kind(&with(13, 0x13)), Malformed);
        assert_eq!(kind(&with(5, b'x')), NotProxy);
        // Length too small for IPv4 addresses.
        assert_eq!(kind(&with(15, 11)[..27]), Malformed);
        // A length that leaves a partial TLV.
        let mut partial = with(15, 14);
        partial.extend_from_slice(&[0xE0, 0]);
        assert_eq!(kind(&partial), Malformed);
        let mut overrun = with(15, 15);
        overrun.extend_from_slice(&[0xE0, 0, 9]);
        assert_eq!(kind(&overrun), Malformed);
        // Over the reader's limit, told as soon as the length is known.
        let huge = with(14, 0xff);
        assert_eq!(kind(&huge[..16]), TooLong);
        assert!(
            parse_header(&huge[..16], 16 + 0xff00 + 12)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn encoding_limits() {
        use HeaderErrorKind::Unencodable;
        let v4: SocketAddr = "1.2.3.4:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:2".parse().unwrap();
        let mixed = ProxyHeader::v1(v4, v6);
        // Mixed families are written as IPv6, the IPv4 one mapped.
        let line = mixed.encode().unwrap();
        assert_eq!(line, b"PROXY TCP6 0:0:0:0:0:ffff:102:304 ::1 1 2\r\n");
        let (back, _) = parse_all(&line).unwrap().unwrap();
        assert_eq!(back.source().unwrap().to_string(), "[::ffff:1.2.3.4]:1");
        let errors = [
            ProxyHeader::local().with_tlv(1, "x"),
            ProxyHeader::v1(v4, v4).with_tlv(1, "x"),
            ProxyHeader {
                version: Version::V1,
                ..ProxyHeader::local()
            },
            ProxyHeader::for_addresses(
                Version::V2,
                &Address::Unix(Some(PathBuf::from("a".repeat(109)))),
                &Address::Unix(None),
            ),
            ProxyHeader::v2(v4, v4).with_tlv(1, vec![0; 65536]),
        ];
        let kinds: Vec<_> = errors
            .iter()
            .map(|h| h.encode().map_err(|e| e.kind()))
            .collect();
        assert!(kinds[0].is_ok(), "LOCAL may carry TLVs in version 2");
        for k in &kinds[1..] {
            assert_eq!(k.as_ref().err(), Some(&Unencodable), "{kinds:?}");
        }
        let unix = ProxyHeader::for_addresses(
            Version::V1,
            &Address::Unix(Some("/a".into())),
            &Address::Unix(Some("/b".into())),
        );
        assert_eq!(unix.encode().unwrap(), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn unix_addresses_round_trip() {
        for (s, d) in [
            (
                Address::Unix(Some("/run/client.sock".into())),
                Address::Unix(Some("/run/x.sock".into())),
            ),
            (Address::UnixAbstract(b"name".to_vec()), Address::Unix(None)),
        ] {
            let h = ProxyHeader::for_addresses(Version::V2, &s, &d);
            let bytes = h.encode().unwrap();
            assert_eq!(bytes.len(), 16 + 216);
            let (back, _) = parse_all(&bytes).unwrap().unwrap();
            assert_eq!((back.source(), back.destination()), (Some(s), Some(d)));
        }
    }
}
