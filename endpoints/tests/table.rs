//! Table-driven tests: descriptions with the parameters they must produce (every parameter,
//! defaults filled in, as `type name=value ...`) or the kind of error they must give.

use std::sync::OnceLock;
use std::time::Duration;

#[path = "../../tls/tests/support/pki.rs"]
mod pki;

use torsion_endpoints::{
    BindAddress, ClientFamily, ClientSpec, ErrorKind, FdSelector, HaproxyServer, ServerSpec,
    SocketDomain, StdioServer, SystemdServer, TcpClient, TcpServer, UdpClient, UdpServer,
    UnixClient, UnixServer, UnixgramClient, UnixgramServer, client_from_string,
    datagram_client_from_string, datagram_from_string, parse_client, parse_server,
    server_from_string,
};

fn render(type_name: &str, params: Vec<(String, torsion_endpoints::ParamValue)>) -> String {
    let mut out = type_name.to_owned();
    for (name, value) in params {
        out.push_str(&format!(" {name}={value}"));
    }
    out
}

fn server(description: &str) -> String {
    match parse_server(description) {
        Ok(spec) => render(spec.type_name(), spec.params()),
        Err(e) => panic!("{description:?} should parse as a server: {e}"),
    }
}

fn client(description: &str) -> String {
    match parse_client(description) {
        Ok(spec) => render(spec.type_name(), spec.params()),
        Err(e) => panic!("{description:?} should parse as a client: {e}"),
    }
}

const TCP_DEFAULTS: &str = "interface=0.0.0.0 backlog=1024 reuseport=false";

#[rustfmt::skip]
const VALID_SERVERS: &[(&str, &str)] = &[
    ("tcp:80", "tcp port=80 interface=0.0.0.0 backlog=1024 reuseport=false"),
    ("TCP:80", "tcp port=80 interface=0.0.0.0 backlog=1024 reuseport=false"),
    ("Tcp:port=80", "tcp port=80 interface=0.0.0.0 backlog=1024 reuseport=false"),
    ("tcp:8000:127.0.0.1:7", "tcp port=8000 interface=127.0.0.1 backlog=7 reuseport=false"),
    ("tcp:80:interface=127.0.0.1", "tcp port=80 interface=127.0.0.1 backlog=1024 reuseport=false"),
    ("tcp:interface=127.0.0.1:80", "tcp port=80 interface=127.0.0.1 backlog=1024 reuseport=false"),
    ("port=80:tcp", "tcp port=80 interface=0.0.0.0 backlog=1024 reuseport=false"),
    ("tcp:backlog=9:80:10.0.0.1", "tcp port=80 interface=10.0.0.1 backlog=9 reuseport=false"),
    ("tcp:0", "tcp port=0 interface=0.0.0.0 backlog=1024 reuseport=false"),
    ("tcp:65535", "tcp port=65535 interface=0.0.0.0 backlog=1024 reuseport=false"),
    ("tcp:080", "tcp port=80 interface=0.0.0.0 backlog=1024 reuseport=false"),
    ("tcp:80:backlog=1", "tcp port=80 interface=0.0.0.0 backlog=1 reuseport=false"),
    ("tcp:80:0.0.0.0:2147483647", "tcp port=80 interface=0.0.0.0 backlog=2147483647 reuseport=false"),
    ("tcp:80:reuseport=1", "tcp port=80 interface=0.0.0.0 backlog=1024 reuseport=true"),
    ("tcp:80:reuseport=0", "tcp port=80 interface=0.0.0.0 backlog=1024 reuseport=false"),
    (r"t\cp:8\0", "tcp port=80 interface=0.0.0.0 backlog=1024 reuseport=false"),
    ("tcp6:80", "tcp6 port=80 interface=:: backlog=1024 reuseport=false ipv6only=none"),
    ("tcp6:80:5", "tcp6 port=80 interface=:: backlog=5 reuseport=false ipv6only=none"),
    (r"tcp6:80:5:\:\:1", "tcp6 port=80 interface=::1 backlog=5 reuseport=false ipv6only=none"),
    (r"tcp6:port=80:interface=\:\:1", "tcp6 port=80 interface=::1 backlog=1024 reuseport=false ipv6only=none"),
    ("TCP6:80:ipv6only=0", "tcp6 port=80 interface=:: backlog=1024 reuseport=false ipv6only=false"),
    ("tcp6:80:ipv6only=1:reuseport=1", "tcp6 port=80 interface=:: backlog=1024 reuseport=true ipv6only=true"),
    (r"tcp6:80:interface=fe80\:\:1%eth0", "tcp6 port=80 interface=fe80::1%eth0 backlog=1024 reuseport=false ipv6only=none"),
    (r"tcp6:80:interface=fe80\:\:1%2", "tcp6 port=80 interface=fe80::1%2 backlog=1024 reuseport=false ipv6only=none"),
    (r"tcp6:80:interface=\:\:ffff\:127.0.0.1", "tcp6 port=80 interface=::ffff:127.0.0.1 backlog=1024 reuseport=false ipv6only=none"),
    ("unix:/var/run/finger:mode=660", "unix address=/var/run/finger mode=432 backlog=1024 lockfile=true"),
    (r"unix:/tmp/a\:b.sock", "unix address=/tmp/a:b.sock mode=438 backlog=1024 lockfile=true"),
    ("unix:/tmp/s:600:10:0", "unix address=/tmp/s mode=384 backlog=10 lockfile=false"),
    ("unix:address=/tmp/s:mode=0o600", "unix address=/tmp/s mode=384 backlog=1024 lockfile=true"),
    ("unix:/tmp/s:mode=0660", "unix address=/tmp/s mode=432 backlog=1024 lockfile=true"),
    (r"unix:/tmp/with\=equals", "unix address=/tmp/with=equals mode=438 backlog=1024 lockfile=true"),
    ("unix:address=/tmp/k=v=w:mode=600", "unix address=/tmp/k=v=w mode=384 backlog=1024 lockfile=true"),
    ("unix:relative.sock", "unix address=relative.sock mode=438 backlog=1024 lockfile=true"),
    (r"unix:/tmp/back\\slash", "unix address=/tmp/back\\slash mode=438 backlog=1024 lockfile=true"),
    ("UNIX:/tmp/ünï cödé.sock", "unix address=/tmp/ünï cödé.sock mode=438 backlog=1024 lockfile=true"),
    ("unix:/tmp/s:mode=0", "unix address=/tmp/s mode=0 backlog=1024 lockfile=true"),
    ("unix:/tmp/s:mode=777:lockfile=1", "unix address=/tmp/s mode=511 backlog=1024 lockfile=true"),
    ("systemd:domain=INET:index=0", "systemd domain=INET index=0"),
    ("systemd:INET6:1", "systemd domain=INET6 index=1"),
    ("systemd:domain=UNIX:name=control", "systemd domain=UNIX name=control"),
    ("systemd:domain=inet6:name=web", "systemd domain=INET6 name=web"),
    ("SystemD:INET:name=web.socket-1", "systemd domain=INET name=web.socket-1"),
    ("udp:53", "udp port=53 interface=0.0.0.0 reuseport=false"),
    ("UDP:port=0:interface=127.0.0.1", "udp port=0 interface=127.0.0.1 reuseport=false"),
    ("udp:5353:224.0.0.251:reuseport=1", "udp port=5353 interface=224.0.0.251 reuseport=true"),
    ("udp6:53", "udp6 port=53 interface=:: reuseport=false ipv6only=none"),
    (r"udp6:53:\:\:1", "udp6 port=53 interface=::1 reuseport=false ipv6only=none"),
    (r"udp6:port=53:interface=fe80\:\:1%eth0:ipv6only=0", "udp6 port=53 interface=fe80::1%eth0 reuseport=false ipv6only=false"),
    ("unixgram:/run/log.sock", "unixgram address=/run/log.sock mode=438 lockfile=true"),
    ("unixgram:/run/log.sock:mode=620:lockfile=0", "unixgram address=/run/log.sock mode=400 lockfile=false"),
    ("unixgram:/tmp/s:600:1", "unixgram address=/tmp/s mode=384 lockfile=true"),
    ("unixgram:@metrics", "unixgram address=@metrics mode=438 lockfile=true"),
    ("stdio", "stdio"),
    ("stdio:", "stdio"),
    ("haproxy:tcp:80", "haproxy timeout=5 endpoint=tcp:80"),
    ("HAProxy:tcp:port=80:interface=192.168.1.1", "haproxy timeout=5 endpoint=tcp:port=80:interface=192.168.1.1"),
    ("haproxy:timeout=1.5:unix:/run/x.sock", "haproxy timeout=1.5 endpoint=unix:/run/x.sock"),
    ("timeout=2:haproxy:tcp6:80:interface=\\:\\:1", "haproxy timeout=2 endpoint=tcp6:80:interface=\\:\\:1"),
    ("haproxy:systemd:INET:0", "haproxy timeout=5 endpoint=systemd:INET:0"),
    ("STDIO:", "stdio"),
];

#[rustfmt::skip]
const INVALID_SERVERS: &[(&str, ErrorKind)] = &[
    ("", ErrorKind::MissingType),
    (":80", ErrorKind::MissingType),
    ("port=80", ErrorKind::MissingType),
    ("foo:80", ErrorKind::UnknownType),
    ("tcp=1:80", ErrorKind::UnknownType),
    ("stdio:x", ErrorKind::TooManyPositionals),
    ("stdio:port=1", ErrorKind::UnknownParameter),
    ("stdio::", ErrorKind::TooManyPositionals),
    ("ssl:443", ErrorKind::MissingParameter),
    ("SSL:443:privateKey=/nonexistent/key.pem", ErrorKind::BadFile),
    ("tls:/certs:443", ErrorKind::InvalidNumber),
    ("ssl:443:privateKey=k.pem:requireClientCert=1", ErrorKind::ConflictingParameters),
    ("ssl:443:privateKey=k.pem:alpn=h2,,x", ErrorKind::InvalidValue),
    ("ssl:443:privateKey=k.pem:sslmethod=SSLv3_METHOD", ErrorKind::InvalidValue),
    ("haproxy", ErrorKind::MissingParameter),
    ("haproxy:timeout=3", ErrorKind::MissingParameter),
    (r"haproxy:tcp\:80", ErrorKind::UnknownType),
    ("haproxy:tcp:80:timeout=3", ErrorKind::UnknownParameter),
    ("haproxy:timeout=0:tcp:80", ErrorKind::OutOfRange),
    ("haproxy:timeout=x:tcp:80", ErrorKind::InvalidNumber),
    ("haproxy:port=1:tcp:80", ErrorKind::UnknownParameter),
    ("haproxy:tcp:65536", ErrorKind::OutOfRange),
    ("haproxy:udp:53", ErrorKind::WrongTransport),
    ("haproxy:haproxy:tcp:80", ErrorKind::WrongTransport),
    ("onion:80", ErrorKind::Unsupported),
    (r"unix:/tmp/x\", ErrorKind::TrailingBackslash),
    (r"tcp:80\", ErrorKind::TrailingBackslash),
    ("tcp", ErrorKind::MissingParameter),
    ("tcp:interface=127.0.0.1", ErrorKind::MissingParameter),
    ("tcp:port=80:interfce=1", ErrorKind::UnknownParameter),
    ("tcp:80:ipv6only=1", ErrorKind::UnknownParameter),
    ("tcp:80:Port=80", ErrorKind::UnknownParameter),
    ("tcp:80:=x", ErrorKind::UnknownParameter),
    ("tcp:80:port=81", ErrorKind::DuplicateParameter),
    ("tcp:port=1:port=2", ErrorKind::DuplicateParameter),
    ("tcp:80:127.0.0.1:interface=127.0.0.1", ErrorKind::DuplicateParameter),
    ("tcp:80:127.0.0.1:5:6", ErrorKind::TooManyPositionals),
    ("tcp6:80:::1", ErrorKind::TooManyPositionals),
    ("tcp:80x", ErrorKind::InvalidNumber),
    ("tcp:", ErrorKind::InvalidNumber),
    ("tcp:+80", ErrorKind::InvalidNumber),
    ("tcp:-1", ErrorKind::InvalidNumber),
    ("tcp: 80", ErrorKind::InvalidNumber),
    ("tcp:8_000", ErrorKind::InvalidNumber),
    ("tcp:８０", ErrorKind::InvalidNumber),
    ("tcp:0x50", ErrorKind::InvalidNumber),
    ("tcp:65536", ErrorKind::OutOfRange),
    ("tcp:99999999999999999999999", ErrorKind::OutOfRange),
    ("tcp:80:backlog=0", ErrorKind::OutOfRange),
    ("tcp:80:backlog=2147483648", ErrorKind::OutOfRange),
    ("tcp:80:backlog=-5", ErrorKind::InvalidNumber),
    ("tcp:80:", ErrorKind::InvalidAddress),
    ("tcp:80:localhost", ErrorKind::InvalidAddress),
    ("tcp:80:interface=127.0.0.01", ErrorKind::InvalidAddress),
    (r"tcp:80:interface=\:\:1", ErrorKind::WrongFamily),
    ("tcp6:80:interface=127.0.0.1", ErrorKind::WrongFamily),
    ("tcp:80:interface=127.0.0.1%eth0", ErrorKind::InvalidAddress),
    (r"tcp6:80:interface=fe80\:\:1%", ErrorKind::InvalidAddress),
    (r"tcp6:80:interface=[\:\:1]", ErrorKind::InvalidAddress),
    ("tcp:80:reuseport=2", ErrorKind::InvalidValue),
    ("tcp:80:reuseport=yes", ErrorKind::InvalidValue),
    ("tcp6:80:ipv6only=true", ErrorKind::InvalidValue),
    ("unix", ErrorKind::MissingParameter),
    ("unix:", ErrorKind::InvalidAddress),
    ("unix:/tmp/s:mode=8", ErrorKind::InvalidNumber),
    ("unix:/tmp/s:mode=0x1ff", ErrorKind::InvalidNumber),
    ("unix:/tmp/s:mode=1000", ErrorKind::OutOfRange),
    ("unix:/tmp/s:lockfile=2", ErrorKind::InvalidValue),
    ("unix:/tmp/s:backlog=0", ErrorKind::OutOfRange),
    ("unix:/tmp/s:path=/y", ErrorKind::UnknownParameter),
    ("unix:/x:/y", ErrorKind::InvalidNumber),
    ("unix:/a:660:5:1:extra", ErrorKind::TooManyPositionals),
    ("unix:/a:address=/b", ErrorKind::DuplicateParameter),
    ("systemd:domain=INET", ErrorKind::MissingParameter),
    ("systemd:index=0", ErrorKind::MissingParameter),
    ("systemd:domain=INET:index=0:name=web", ErrorKind::ConflictingParameters),
    ("systemd:domain=AF_INET:index=0", ErrorKind::InvalidValue),
    ("systemd:domain=INET:index=-1", ErrorKind::InvalidNumber),
    ("systemd:domain=INET:index=x", ErrorKind::InvalidNumber),
    ("systemd:domain=INET:index=99999999999", ErrorKind::OutOfRange),
    ("systemd:domain=INET:name=", ErrorKind::InvalidValue),
    ("systemd:domain=INET:name=a b", ErrorKind::InvalidValue),
    (r"systemd:domain=INET:name=a\:b", ErrorKind::InvalidValue),
    ("systemd:INET:0:web", ErrorKind::TooManyPositionals),
    ("systemd:domain=INET:index=0:fd=3", ErrorKind::UnknownParameter),
    ("udp", ErrorKind::MissingParameter),
    ("udp:65536", ErrorKind::OutOfRange),
    ("udp:53:backlog=5", ErrorKind::UnknownParameter),
    ("udp:53:ipv6only=1", ErrorKind::UnknownParameter),
    (r"udp:53:\:\:1", ErrorKind::WrongFamily),
    ("udp6:53:127.0.0.1", ErrorKind::WrongFamily),
    ("udp:53:localhost", ErrorKind::InvalidAddress),
    ("udp:53:reuseport=yes", ErrorKind::InvalidValue),
    ("udp:53:127.0.0.1:extra", ErrorKind::TooManyPositionals),
    ("unixgram", ErrorKind::MissingParameter),
    ("unixgram:", ErrorKind::InvalidAddress),
    ("unixgram:@", ErrorKind::InvalidAddress),
    ("unixgram:/a:mode=1000", ErrorKind::OutOfRange),
    ("unixgram:/a:backlog=5", ErrorKind::UnknownParameter),
];

#[rustfmt::skip]
const VALID_CLIENTS: &[(&str, &str)] = &[
    ("tcp:example.org:80", "tcp host=example.org port=80 timeout=30 bindAddress=none"),
    ("TCP:example.org:80", "tcp host=example.org port=80 timeout=30 bindAddress=none"),
    ("tcp:host=example.org:port=80", "tcp host=example.org port=80 timeout=30 bindAddress=none"),
    ("tcp:host=twistedmatrix.com:port=80:timeout=15", "tcp host=twistedmatrix.com port=80 timeout=15 bindAddress=none"),
    ("tcp:host=example.org:80", "tcp host=example.org port=80 timeout=30 bindAddress=none"),
    ("tcp:80:host=example.org", "tcp host=example.org port=80 timeout=30 bindAddress=none"),
    ("tcp:port=80:example.org", "tcp host=example.org port=80 timeout=30 bindAddress=none"),
    ("tcp:example.org:80:timeout=1.5", "tcp host=example.org port=80 timeout=1.5 bindAddress=none"),
    ("tcp:example.org:80:timeout=0", "tcp host=example.org port=80 timeout=0 bindAddress=none"),
    ("tcp:example.org:80:timeout=0.25", "tcp host=example.org port=80 timeout=0.25 bindAddress=none"),
    ("tcp:www.example.com:80:bindAddress=192.0.2.100", "tcp host=www.example.com port=80 timeout=30 bindAddress=192.0.2.100"),
    (r"tcp:192.0.2.1:80:bindAddress=192.0.2.100\:5000", "tcp host=192.0.2.1 port=80 timeout=30 bindAddress=192.0.2.100:5000"),
    (r"tcp:\:\:1:80", "tcp host=::1 port=80 timeout=30 bindAddress=none"),
    (r"tcp:fe80\:\:1%eth0:80", "tcp host=fe80::1%eth0 port=80 timeout=30 bindAddress=none"),
    ("tcp:bücher.example:80", "tcp host=bücher.example port=80 timeout=30 bindAddress=none"),
    (r"tcp6:\:\:1:80:bindAddress=[\:\:1]\:5000", "tcp6 host=::1 port=80 timeout=30 bindAddress=[::1]:5000"),
    ("tcp6:example.org:443", "tcp6 host=example.org port=443 timeout=30 bindAddress=none"),
    (r"tcp6:host=example.org:port=443:bindAddress=\:\:1", "tcp6 host=example.org port=443 timeout=30 bindAddress=::1"),
    ("unix:/var/foo/bar:lockfile=1:timeout=9", "unix path=/var/foo/bar timeout=9 lockfile=true"),
    ("unix:/tmp/s", "unix path=/tmp/s timeout=30 lockfile=false"),
    (r"unix:path=/tmp/a\:b", "unix path=/tmp/a:b timeout=30 lockfile=false"),
    ("UNIX:/tmp/s:timeout=0.5", "unix path=/tmp/s timeout=0.5 lockfile=false"),
    ("udp:host=127.0.0.1:port=8000", "udp host=127.0.0.1 port=8000 timeout=30 bindAddress=none"),
    ("udp:example.org:53", "udp host=example.org port=53 timeout=30 bindAddress=none"),
    ("udp:53:host=example.org:timeout=2", "udp host=example.org port=53 timeout=2 bindAddress=none"),
    (r"udp:192.0.2.1:53:bindAddress=192.0.2.9\:5353", "udp host=192.0.2.1 port=53 timeout=30 bindAddress=192.0.2.9:5353"),
    (r"udp6:\:\:1:53", "udp6 host=::1 port=53 timeout=30 bindAddress=none"),
    ("unixgram:/run/log.sock", "unixgram path=/run/log.sock"),
    ("unixgram:path=@metrics", "unixgram path=@metrics"),
];

#[rustfmt::skip]
const INVALID_CLIENTS: &[(&str, ErrorKind)] = &[
    ("", ErrorKind::MissingType),
    ("host=a:port=80", ErrorKind::MissingType),
    ("host=a:80", ErrorKind::UnknownType),
    ("tcp:example.org", ErrorKind::MissingParameter),
    ("tcp:port=80", ErrorKind::MissingParameter),
    ("tcp", ErrorKind::MissingParameter),
    ("tcp:a:1:2", ErrorKind::TooManyPositionals),
    ("tcp:a:1:port=2", ErrorKind::DuplicateParameter),
    ("tcp:host=a:port=1:2", ErrorKind::DuplicateParameter),
    ("tcp:host=a:1:2", ErrorKind::TooManyPositionals),
    ("tcp:host=a:host=b:port=1", ErrorKind::DuplicateParameter),
    ("tcp:a:1:timeout=1.5.2", ErrorKind::InvalidNumber),
    ("tcp:a:1:timeout=-1", ErrorKind::InvalidNumber),
    ("tcp:a:1:timeout=inf", ErrorKind::InvalidNumber),
    ("tcp:a:1:timeout=NaN", ErrorKind::InvalidNumber),
    ("tcp:a:1:timeout=.5", ErrorKind::InvalidNumber),
    ("tcp:a:1:timeout=99999999999999999999", ErrorKind::OutOfRange),
    ("tcp:a:70000", ErrorKind::OutOfRange),
    ("tcp:a:http", ErrorKind::InvalidNumber),
    ("tcp::80", ErrorKind::InvalidAddress),
    ("tcp:a b:80", ErrorKind::InvalidAddress),
    (r"tcp:[\:\:1]:80", ErrorKind::InvalidAddress),
    ("tcp:a:80:bindAddress=localhost", ErrorKind::InvalidAddress),
    ("tcp:a:80:bindaddress=1.2.3.4", ErrorKind::UnknownParameter),
    (r"tcp:a:80:bindAddress=1.2.3.4\:99999", ErrorKind::OutOfRange),
    (r"tcp:127.0.0.1:80:bindAddress=\:\:1", ErrorKind::WrongFamily),
    ("tcp6:127.0.0.1:80", ErrorKind::WrongFamily),
    ("tcp6:example.org:80:bindAddress=127.0.0.1", ErrorKind::WrongFamily),
    ("tls:example.com", ErrorKind::MissingParameter),
    ("tls:example.com:443:trustRoots=/nonexistent/ca.pem", ErrorKind::BadFile),
    ("tls:example.com:443:privateKey=k.pem", ErrorKind::ConflictingParameters),
    ("tls:example.com:443:certificate=/nonexistent/c.pem", ErrorKind::BadFile),
    // Host and bindAddress of different families: one check for every host-and-port client.
    (r"tls:127.0.0.1:443:bindAddress=\:\:1", ErrorKind::WrongFamily),
    ("tls:example.com:443:bindAddress=localhost", ErrorKind::InvalidAddress),
    ("tls:port=443:host=a b", ErrorKind::InvalidAddress),
    ("ssl:example.com:443", ErrorKind::Unsupported),
    ("tor:example.onion:80", ErrorKind::Unsupported),
    ("systemd:domain=INET:index=0", ErrorKind::UnknownType),
    ("foo:bar", ErrorKind::UnknownType),
    ("unix", ErrorKind::MissingParameter),
    ("unix:", ErrorKind::InvalidAddress),
    ("unix:/a:/b", ErrorKind::TooManyPositionals),
    ("unix:/a:timeout=x", ErrorKind::InvalidNumber),
    ("unix:/a:lockfile=yes", ErrorKind::InvalidValue),
    ("unix:/a:checkPID=1", ErrorKind::UnknownParameter),
    ("unix:/a:mode=660", ErrorKind::UnknownParameter),
    ("unix:/a:path=/b", ErrorKind::DuplicateParameter),
    (r"tcp:a:80\", ErrorKind::TrailingBackslash),
    ("udp:example.org", ErrorKind::MissingParameter),
    ("udp:example.org:0", ErrorKind::OutOfRange),
    ("udp6:127.0.0.1:53", ErrorKind::WrongFamily),
    (r"udp:127.0.0.1:53:bindAddress=\:\:1", ErrorKind::WrongFamily),
    ("udp:a:53:lockfile=1", ErrorKind::UnknownParameter),
    ("unixgram", ErrorKind::MissingParameter),
    ("unixgram:/a:timeout=5", ErrorKind::UnknownParameter),
    ("unixgram:/a:/b", ErrorKind::TooManyPositionals),
];

#[test]
fn valid_servers() {
    for (description, expected) in VALID_SERVERS {
        assert_eq!(&server(description), expected, "{description:?}");
    }
}

#[test]
fn invalid_servers() {
    for (description, kind) in INVALID_SERVERS {
        match parse_server(description) {
            Ok(spec) => panic!("{description:?} should fail with {kind:?}, gave {spec:?}"),
            Err(e) => {
                assert_eq!(e.kind(), *kind, "{description:?}: {e}");
                assert_eq!(e.input(), *description);
                let quoted = format!("in \"{}\": ", description);
                assert!(e.to_string().starts_with(&quoted), "{e}");
            }
        }
    }
}

#[test]
fn valid_clients() {
    for (description, expected) in VALID_CLIENTS {
        assert_eq!(&client(description), expected, "{description:?}");
    }
}

#[test]
fn invalid_clients() {
    for (description, kind) in INVALID_CLIENTS {
        match parse_client(description) {
            Ok(spec) => panic!("{description:?} should fail with {kind:?}, gave {spec:?}"),
            Err(e) => {
                assert_eq!(e.kind(), *kind, "{description:?}: {e}");
                assert_eq!(e.input(), *description);
            }
        }
    }
}

#[test]
fn table_is_large_enough() {
    let total =
        VALID_SERVERS.len() + INVALID_SERVERS.len() + VALID_CLIENTS.len() + INVALID_CLIENTS.len();
    assert!(total >= 100, "only {total} descriptions");
}

#[test]
fn every_error_kind_is_covered() {
    let kinds = [
        ErrorKind::TrailingBackslash,
        ErrorKind::MissingType,
        ErrorKind::UnknownType,
        ErrorKind::Unsupported,
        ErrorKind::UnknownParameter,
        ErrorKind::DuplicateParameter,
        ErrorKind::MissingParameter,
        ErrorKind::TooManyPositionals,
        ErrorKind::InvalidNumber,
        ErrorKind::OutOfRange,
        ErrorKind::InvalidAddress,
        ErrorKind::WrongFamily,
        ErrorKind::InvalidValue,
        ErrorKind::ConflictingParameters,
    ];
    for kind in kinds {
        assert!(
            INVALID_SERVERS
                .iter()
                .chain(INVALID_CLIENTS)
                .any(|(_, k)| *k == kind),
            "{kind:?} not covered"
        );
    }
}

#[test]
fn errors_name_the_parameter_and_segment() {
    let e = parse_server("tcp:80:backlog=0").unwrap_err();
    assert_eq!(e.param(), Some("backlog"));
    assert_eq!(e.segment(), Some("backlog=0"));

    let e = parse_server(r"tcp6:80:5:interface=\:\:1:x=1").unwrap_err();
    assert_eq!(e.param(), Some("x"));
    assert_eq!(e.segment(), Some("x=1"));

    let e = parse_client("tcp:a:1:port=2").unwrap_err();
    assert_eq!(e.param(), Some("port"));
    assert_eq!(e.segment(), Some("port=2"));

    let e = parse_server("tcp:80x").unwrap_err();
    assert_eq!(e.param(), Some("port"));
    assert_eq!(e.segment(), Some("80x"));

    let e = parse_server(r"unix:/a\:b:mode=9").unwrap_err();
    assert_eq!(e.segment(), Some("mode=9"));

    let e = parse_server("nope:1").unwrap_err();
    assert_eq!(e.param(), Some("nope"));
}

#[test]
fn exact_messages() {
    let cases: &[(&str, bool, &str)] = &[
        (
            "tcp:port=80:interfce=::1",
            true,
            "in \"tcp:port=80:interfce=::1\": unknown parameter \"interfce\" for a tcp server; \
             valid parameters: port, interface, backlog, reuseport",
        ),
        (
            "tcp:80:port=81",
            true,
            "in \"tcp:80:port=81\": parameter \"port\" is given twice: as positional 1 \"80\" \
             and as \"port=81\"",
        ),
        (
            "tcp6:80:127.0.0.1",
            true,
            "in \"tcp6:80:127.0.0.1\": invalid backlog \"127.0.0.1\" (positional 2): not a \
             plain decimal number (ASCII digits only); expected a number from 1 to 2147483647",
        ),
        (
            "tcp:interface=127.0.0.1",
            true,
            "in \"tcp:interface=127.0.0.1\": missing required parameter \"port\" for a tcp \
             server; give it as positional 1 or as port=VALUE",
        ),
        (
            "tcp:80:1.2.3.4:5:6",
            true,
            "in \"tcp:80:1.2.3.4:5:6\": too many positional values: \"6\" would be positional \
             4 but a tcp server takes at most 3 (port, interface, backlog); a \":\" inside a \
             value must be escaped as \"\\:\"",
        ),
        (
            "SSL:example.com:443",
            false,
            "in \"SSL:example.com:443\": client endpoint type \"ssl\" is not supported yet; \
             supported client types: tcp, tcp6, tls, udp, udp6, unix, unixgram",
        ),
        (
            "dccp:53",
            true,
            "in \"dccp:53\": unknown server endpoint type \"dccp\"; valid server types: \
             haproxy, ssl, stdio, systemd, tcp, tcp6, tls, udp, udp6, unix, unixgram",
        ),
        (
            "udp:53:backlog=5",
            true,
            "in \"udp:53:backlog=5\": unknown parameter \"backlog\" for a udp server; valid \
             parameters: port, interface, reuseport",
        ),
        (
            "unix:/tmp/s:lockfile=yes",
            true,
            "in \"unix:/tmp/s:lockfile=yes\": invalid lockfile \"yes\": expected 0 or 1",
        ),
        (
            "tcp:80:bindaddress=1.2.3.4",
            true,
            "in \"tcp:80:bindaddress=1.2.3.4\": unknown parameter \"bindaddress\" for a tcp \
             server; valid parameters: port, interface, backlog, reuseport",
        ),
        (
            "tcp:h:80:bindaddress=1.2.3.4",
            false,
            "in \"tcp:h:80:bindaddress=1.2.3.4\": unknown parameter \"bindaddress\" for a tcp \
             client; valid parameters: host, port, timeout, bindAddress (parameter names are \
             case-sensitive: did you mean bindAddress?)",
        ),
    ];
    for (description, is_server, message) in cases {
        let e = if *is_server {
            parse_server(description).unwrap_err()
        } else {
            parse_client(description).unwrap_err()
        };
        assert_eq!(e.to_string(), *message);
    }
}

#[test]
fn structs_compare_directly() {
    let spec = parse_server(r"tcp6:8080:16:fe80\:\:1%eth0:ipv6only=0:reuseport=1").unwrap();
    assert_eq!(
        spec.downcast_ref::<TcpServer>(),
        Some(&TcpServer {
            port: 8080,
            interface: "fe80::1".parse().unwrap(),
            scope: Some("eth0".into()),
            backlog: 16,
            reuseport: true,
            ipv6only: Some(false),
        })
    );
    assert!(spec.downcast_ref::<UnixServer>().is_none());

    let spec = parse_server("unix:/run/x.sock:0o640:lockfile=0").unwrap();
    assert_eq!(
        spec.downcast_ref::<UnixServer>(),
        Some(&UnixServer {
            address: "/run/x.sock".into(),
            mode: 0o640,
            backlog: 1024,
            lockfile: false,
        })
    );

    let spec = parse_server("systemd:UNIX:3").unwrap();
    assert_eq!(
        spec.downcast_ref::<SystemdServer>(),
        Some(&SystemdServer {
            domain: SocketDomain::Unix,
            selector: FdSelector::Index(3),
        })
    );

    let spec = parse_client(r"tcp6:host=\:\:1:8080:timeout=0.125:bindAddress=\:\:1").unwrap();
    assert_eq!(
        spec.downcast_ref::<TcpClient>(),
        Some(&TcpClient {
            host: "::1".into(),
            port: 8080,
            timeout: Duration::from_millis(125),
            bind_address: Some(BindAddress::new("::1".parse().unwrap())),
            family: ClientFamily::Ipv6,
        })
    );

    let spec = parse_client("unix:/run/x.sock:lockfile=1").unwrap();
    assert_eq!(
        spec.downcast_ref::<UnixClient>(),
        Some(&UnixClient {
            path: "/run/x.sock".into(),
            timeout: Duration::from_secs(30),
            lockfile: true,
        })
    );
}

#[test]
fn display_gives_a_description_that_parses_back() {
    for (description, _) in VALID_SERVERS {
        let spec = parse_server(description).unwrap();
        let canonical = if let Some(s) = spec.downcast_ref::<TcpServer>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<UnixServer>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<SystemdServer>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<UdpServer>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<UnixgramServer>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<StdioServer>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<HaproxyServer>() {
            s.to_string()
        } else {
            panic!("unexpected spec {spec:?}");
        };
        let again = parse_server(&canonical).unwrap();
        assert_eq!(
            render(again.type_name(), again.params()),
            render(spec.type_name(), spec.params()),
            "{description:?} -> {canonical:?}"
        );
    }
    for (description, _) in VALID_CLIENTS {
        let spec = parse_client(description).unwrap();
        let canonical = if let Some(s) = spec.downcast_ref::<TcpClient>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<UnixClient>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<UdpClient>() {
            s.to_string()
        } else if let Some(s) = spec.downcast_ref::<UnixgramClient>() {
            s.to_string()
        } else {
            panic!("unexpected spec {spec:?}");
        };
        let again = parse_client(&canonical).unwrap();
        assert_eq!(
            render(again.type_name(), again.params()),
            render(spec.type_name(), spec.params()),
            "{description:?} -> {canonical:?}"
        );
    }
}

#[test]
fn tcp_defaults_constant_matches() {
    assert_eq!(server("tcp:1"), format!("tcp port=1 {TCP_DEFAULTS}"));
}

#[test]
fn specs_are_send_and_sync() {
    fn check<T: Send + Sync>(_: &T) {}
    let s: Box<dyn ServerSpec> = parse_server("tcp:1").unwrap();
    check(&s);
    let c: Box<dyn ClientSpec> = parse_client("tcp:a:1").unwrap();
    check(&c);
}

#[test]
fn datagram_and_stream_endpoints_are_told_apart() {
    let reactor = torsion_reactor::Reactor::current();
    for d in ["udp:53", "udp6:53", "unixgram:/tmp/x"] {
        assert!(parse_server(d).unwrap().is_datagram(), "{d}");
        let e = server_from_string(&reactor, d).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongTransport, "{d}");
        assert!(e.to_string().contains("datagram_from_string"), "{e}");
        datagram_from_string(&reactor, d).expect("a datagram endpoint");
    }
    for d in ["tcp:80", "unix:/tmp/x", "systemd:INET:0"] {
        assert!(!parse_server(d).unwrap().is_datagram(), "{d}");
        let e = datagram_from_string(&reactor, d).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongTransport, "{d}");
        assert_eq!(
            e.detail(),
            format!(
                "{} is a stream endpoint type: listen with server_from_string (or connect with \
                 client_from_string) and a factory; datagram types: udp, udp6, unixgram",
                parse_server(d).unwrap().type_name()
            )
        );
    }
    let e = client_from_string(&reactor, "udp:host=h:port=53").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongTransport);
    assert_eq!(e.param(), Some("udp"));
    let e = datagram_client_from_string(&reactor, "tcp:h:80").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongTransport);
    datagram_client_from_string(&reactor, "unixgram:/tmp/x").expect("a datagram client");
}

#[test]
fn datagram_structs_compare_directly() {
    let spec = parse_server(r"udp6:5353:fe80\:\:1%eth0:reuseport=1:ipv6only=1").unwrap();
    assert_eq!(
        spec.downcast_ref::<UdpServer>(),
        Some(&UdpServer {
            port: 5353,
            interface: "fe80::1".parse().unwrap(),
            scope: Some("eth0".into()),
            reuseport: true,
            ipv6only: Some(true),
        })
    );
    let spec = parse_client(r"udp6:\:\:1:53:timeout=0.5").unwrap();
    assert_eq!(
        spec.downcast_ref::<UdpClient>(),
        Some(&UdpClient {
            host: "::1".into(),
            port: 53,
            timeout: Duration::from_millis(500),
            bind_address: None,
            family: ClientFamily::Ipv6,
        })
    );
    let spec = parse_server("unixgram:@bus:lockfile=0").unwrap();
    let unix = spec.downcast_ref::<UnixgramServer>().unwrap();
    assert!(unix.is_abstract());
    assert!(!unix.lockfile);
    assert_eq!(
        parse_client("unixgram:/run/x")
            .unwrap()
            .downcast_ref::<UnixgramClient>(),
        Some(&UnixgramClient::new("/run/x"))
    );
}

// ---------------------------------------------------------------------------------------
// The documented tables of types and parameters (the front README, this crate's README and
// documentation, and the guide's chapter on endpoints) checked against the parser, so that
// none of them can drift from the code: every row must be true, and every type and
// parameter the parser knows must have a row.

/// Where the tables are, and whether each has a `side` column (else the side comes from the
/// `## Servers` / `## Clients` heading above it, as in the crate documentation).
const DOCUMENTED_TABLES: &[(&str, &str)] = &[
    ("endpoints/src/lib.rs", include_str!("../src/lib.rs")),
    ("docs/endpoints.md", include_str!("../../docs/endpoints.md")),
];

/// A value to give a required parameter when the check needs a valid description.
fn sample_value(param: &str) -> &'static str {
    match param {
        "port" => "1",
        "host" => "example.org",
        "address" | "path" => "/tmp/table-check.sock",
        "domain" => "INET",
        "index" | "lockfile" | "reuseport" => "0",
        "mode" => "600",
        "backlog" | "timeout" => "5",
        // `ssl`/`tls` servers read and check their key and certificate at parse time.
        "privateKey" => tls_key_file(),
        _ => "x",
    }
}

/// A key and certificate in one PEM file, made once for the whole test binary.
fn tls_key_file() -> &'static str {
    static FILE: OnceLock<String> = OnceLock::new();
    FILE.get_or_init(|| {
        let pki = pki::Pki::new("table");
        let issued = pki.server("server", &["localhost"]);
        let both = pki.path("both.pem");
        pki::combined(&issued, &both);
        std::mem::forget(pki); // its files must outlive every check
        torsion_endpoints::quote(both.to_str().expect("a UTF-8 temporary directory"))
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Default {
    Required,
    /// One of a group of parameters must be given ("one of index/name").
    OneOf,
    /// A value as the table writes it (`0`, `666`, `0.0.0.0`), or `none`.
    Value(String),
}

#[derive(Clone, Debug)]
struct Row {
    side: &'static str,
    type_name: String,
    param: String,
    position: Option<usize>,
    default: Default,
    line: usize,
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let inner = line.trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The words in backquotes in `text`.
fn quoted_words(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_string())
        .collect()
}

/// Every row of the endpoint tables in `text`.
fn documented_rows(text: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut heading_side = None;
    let mut columns: Option<Vec<String>> = None;
    let (mut side, mut types): (&'static str, Vec<String>) = ("", Vec::new());
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start().trim_start_matches("//!").trim();
        if line.starts_with('#') {
            let lower = line.to_lowercase();
            if lower.contains("servers") {
                heading_side = Some("server");
            } else if lower.contains("clients") {
                heading_side = Some("client");
            }
        }
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let row = cells(line);
        if columns.is_none() {
            if row.iter().any(|c| c == "parameter") && row.iter().any(|c| c == "pos.") {
                columns = Some(row);
            }
            continue;
        }
        let names = columns.as_ref().expect("a header");
        if row
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue; // the separator line
        }
        let cell = |name: &str| -> String {
            names
                .iter()
                .position(|c| c == name)
                .and_then(|at| row.get(at))
                .cloned()
                .unwrap_or_default()
        };
        match cell("side").as_str() {
            // "server (datagram)": datagram types share the server and client grammars.
            s if s.starts_with("server") => side = "server",
            s if s.starts_with("client") => side = "client",
            "" if names.iter().any(|c| c == "side") => {}
            "" => side = heading_side.expect("a ## Servers or ## Clients heading above the table"),
            other => panic!("line {}: unknown side {other:?}", i + 1),
        }
        let type_cell = cell("type");
        if !type_cell.is_empty() {
            let before_arrow = type_cell.split('→').next().unwrap_or_default();
            types = quoted_words(before_arrow);
        }
        let param_cell = cell("parameter");
        let position_cell = cell("pos.").replace('*', "");
        let digits: String = position_cell
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let position = digits.parse().ok();
        let default_cell = cell("default");
        let default = if default_cell == "required" {
            Default::Required
        } else if default_cell.starts_with("one of") {
            Default::OneOf
        } else if default_cell == "none"
            || default_cell == "system's"
            || default_cell.starts_with("the ")
        {
            // "the system's", "the `certificate` file": a fallback the parser reports as none.
            Default::Value("none".into())
        } else {
            Default::Value(default_cell.trim_matches('`').to_string())
        };
        if let Some(other) = param_cell.strip_prefix("as ") {
            // "as `tcp`": the same parameters as another type of the same side.
            let other = quoted_words(other).concat();
            let copies: Vec<Row> = rows
                .iter()
                .filter(|r| r.side == side && r.type_name == other)
                .cloned()
                .collect();
            assert!(
                !copies.is_empty(),
                "line {}: nothing to copy from {other:?}",
                i + 1
            );
            for t in &types {
                for copy in &copies {
                    rows.push(Row {
                        type_name: t.clone(),
                        line: i + 1,
                        ..copy.clone()
                    });
                }
            }
            continue;
        }
        for t in &types {
            rows.push(Row {
                side,
                type_name: t.clone(),
                param: quoted_words(&param_cell).concat(),
                position,
                default: default.clone(),
                line: i + 1,
            });
        }
    }
    rows
}

fn parse(side: &str, description: &str) -> Result<Vec<(String, ParamValue)>, EndpointError> {
    if side == "server" {
        parse_server(description).map(|s| s.params())
    } else {
        parse_client(description).map(|s| s.params())
    }
}

use torsion_endpoints::{EndpointError, ParamValue, Registry};

/// The list in an error message after `marker`, up to `end`: `port, interface, backlog`.
fn listed(message: &str, marker: &str, end: &str) -> Vec<String> {
    let after = message
        .split_once(marker)
        .map(|(_, a)| a)
        .unwrap_or_default();
    let list = after.split(end).next().unwrap_or_default();
    list.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// What the parser says about a type: every parameter, and the positional ones in order.
fn parser_params(side: &str, type_name: &str) -> (Vec<String>, Vec<String>) {
    let unknown = parse(side, &format!("{type_name}:zz_no_such_parameter=1"))
        .expect_err("an unknown parameter is an error");
    assert_eq!(unknown.kind(), ErrorKind::UnknownParameter, "{unknown}");
    let all = listed(&unknown.to_string(), "valid parameters: ", " (");
    if wrapped(type_name).is_some() {
        return (all, Vec::new()); // positionals belong to the wrapped description
    }
    let extra = ["a"; 12].join(":");
    let too_many = parse(side, &format!("{type_name}:{extra}")).expect_err("12 positionals");
    assert_eq!(too_many.kind(), ErrorKind::TooManyPositionals, "{too_many}");
    let message = too_many.to_string();
    let positional = listed(&message, &format!("{side} takes at most "), ")")
        .into_iter()
        .map(|p| {
            p.split_once('(')
                .map_or(p.clone(), |(_, name)| name.to_string())
        })
        .collect();
    (all, positional)
}

/// Types that wrap another description, given after their own parameters, and the
/// description the checks give them (they have no positional parameters of their own).
const WRAPPERS: &[(&str, &str)] = &[("haproxy", "tcp:1")];

fn wrapped(type_name: &str) -> Option<&'static str> {
    WRAPPERS
        .iter()
        .find(|(t, _)| *t == type_name)
        .map(|(_, inner)| *inner)
}

/// A description of `type_name` giving only the required parameters (the first of each
/// one-of group), except those in `leave_out`.
fn minimal(rows: &[&Row], type_name: &str, leave_out: &[&str]) -> String {
    let mut description = type_name.to_string();
    let mut one_of_given = false;
    for row in rows {
        let needed = match row.default {
            Default::Required => true,
            Default::OneOf => !std::mem::replace(&mut one_of_given, true),
            Default::Value(_) => false,
        };
        if needed && !leave_out.contains(&row.param.as_str()) {
            description.push_str(&format!(":{}={}", row.param, sample_value(&row.param)));
        }
    }
    if let Some(inner) = wrapped(type_name) {
        description.push(':');
        description.push_str(inner);
    }
    description
}

/// The value a table writes, as `ParamValue`'s `Display` shows it.
fn normalized(param: &str, written: &str, actual: &ParamValue) -> String {
    match (actual, written) {
        (ParamValue::Bool(_), "0") => "false".into(),
        (ParamValue::Bool(_), "1") => "true".into(),
        _ if param == "mode" => u64::from_str_radix(written.trim_start_matches("0o"), 8)
            .map_or(written.to_string(), |m| m.to_string()),
        _ => written.to_string(),
    }
}

fn check_table(file: &str, rows: &[Row]) -> Vec<String> {
    let mut problems = Vec::new();
    let registry = Registry::with_builtins();
    let sides: [(&str, Vec<String>); 2] = [
        (
            "server",
            registry.server_types().map(String::from).collect(),
        ),
        (
            "client",
            registry.client_types().map(String::from).collect(),
        ),
    ];
    for (side, types) in &sides {
        for type_name in types {
            let mine: Vec<&Row> = rows
                .iter()
                .filter(|r| r.side == *side && &r.type_name == type_name)
                .collect();
            if mine.is_empty() {
                problems.push(format!("{file}: the {side} type `{type_name}` has no rows"));
                continue;
            }
            let (params, positional) = parser_params(side, type_name);
            for param in &params {
                if !mine.iter().any(|r| &r.param == param) {
                    problems.push(format!(
                        "{file}: the {side} type `{type_name}` has a parameter `{param}` \
                         that the table does not list"
                    ));
                }
            }
            let full = minimal(&mine, type_name, &[]);
            let defaults = match parse(side, &full) {
                Ok(defaults) => defaults,
                Err(e) => {
                    problems.push(format!(
                        "{file}: {full:?} (the required parameters of the {side} type \
                         `{type_name}`, from the table) does not parse: {e}; if the table is \
                         right, give the parameter a valid value in `sample_value`"
                    ));
                    continue;
                }
            };
            for row in mine.iter().filter(|r| !r.param.is_empty()) {
                // An empty parameter is a "(none)" row: a type that takes no parameters.
                let at = format!("{file}:{}: {side} `{type_name}` `{}`", row.line, row.param);
                if !params.contains(&row.param) {
                    problems.push(format!("{at}: the parser has no such parameter"));
                    continue;
                }
                let actual_position = positional
                    .iter()
                    .position(|p| p == &row.param)
                    .map(|i| i + 1);
                if actual_position != row.position {
                    problems.push(format!(
                        "{at}: position {:?} in the table, {actual_position:?} in the parser",
                        row.position
                    ));
                }
                match &row.default {
                    Default::Required | Default::OneOf => {
                        let group: Vec<&str> = if row.default == Default::OneOf {
                            mine.iter()
                                .filter(|r| r.default == Default::OneOf)
                                .map(|r| r.param.as_str())
                                .collect()
                        } else {
                            vec![row.param.as_str()]
                        };
                        let without = minimal(&mine, type_name, &group);
                        match parse(side, &without) {
                            Err(e) if e.kind() == ErrorKind::MissingParameter => {}
                            other => problems.push(format!(
                                "{at}: the table says it is required, but {without:?} gives \
                                 {other:?}"
                            )),
                        }
                    }
                    Default::Value(written) => {
                        let actual = defaults.iter().find(|(name, _)| name == &row.param);
                        match actual {
                            Some((_, value)) => {
                                let expected = normalized(&row.param, written, value);
                                if value.to_string() != expected {
                                    problems.push(format!(
                                        "{at}: default {written:?} in the table, {value} in \
                                         the parser"
                                    ));
                                }
                            }
                            None => {
                                problems.push(format!("{at}: {full:?} reports no value for it"))
                            }
                        }
                    }
                }
            }
        }
    }
    for row in rows {
        let known = sides
            .iter()
            .any(|(side, types)| *side == row.side && types.contains(&row.type_name));
        if !known {
            problems.push(format!(
                "{file}:{}: the table lists a {} type `{}` that the parser does not have",
                row.line, row.side, row.type_name
            ));
        }
    }
    problems
}

#[test]
fn every_documented_table_matches_the_parser() {
    let mut problems = Vec::new();
    for (file, text) in DOCUMENTED_TABLES {
        let rows = documented_rows(text);
        if rows.is_empty() {
            problems.push(format!("{file}: no table of endpoint types found"));
            continue;
        }
        problems.extend(check_table(file, &rows));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_table_check_finds_a_wrong_row() {
    let good = "| side | type | parameter | pos. | default | meaning |\n|---|---|---|---|---|---|\n\
                | server | `unix` | `address` | 1 | required | path |\n\
                | | | `mode` | 2 | `666` | octal |\n\
                | | | `backlog` | 3 | `1024` | |\n\
                | | | `lockfile` | 4 | `1` | |\n";
    let rows: Vec<Row> = documented_rows(good);
    assert_eq!(rows.len(), 4);
    let unix_problems = |rows: &[Row]| -> Vec<String> {
        check_table("sample", rows)
            .into_iter()
            .filter(|p| p.contains("`unix`") && p.contains("server"))
            .collect()
    };
    assert!(
        unix_problems(&rows).is_empty(),
        "{:?}",
        unix_problems(&rows)
    );
    let cases = [
        ("`666`", "`644`", "default"),
        ("| 3 | `1024`", "| — | `1024`", "position"),
        ("| `lockfile` | 4 | `1` | |\n", "", "does not list"),
        ("| 1 | required", "| 1 | `/tmp`", "does not parse"),
        ("| 2 | `666`", "| 2 | required", "says it is required"),
        ("`lockfile` | 4", "`lockfle` | 4", "no such parameter"),
    ];
    for (from, to, expected) in cases {
        let bad = documented_rows(&good.replace(from, to));
        let found = unix_problems(&bad);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "replacing {from:?} by {to:?}: expected a problem about {expected:?}, got {found:?}"
        );
    }
}

#[test]
fn a_wrong_family_interface_names_the_type_to_use() {
    let cases = [
        (
            r"tcp:80:interface=\:\:1",
            "a tcp server listens on IPv4; use tcp6 for IPv6",
        ),
        (
            "tcp6:80:interface=127.0.0.1",
            "a tcp6 server listens on IPv6; use tcp for IPv4",
        ),
        (
            r"udp:53:\:\:1",
            "a udp port listens on IPv4; use udp6 for IPv6",
        ),
        (
            "udp6:53:127.0.0.1",
            "a udp6 port listens on IPv6; use udp for IPv4",
        ),
    ];
    for (description, says) in cases {
        let err = torsion_endpoints::parse_server(description)
            .err()
            .unwrap_or_else(|| panic!("{description} parsed"));
        assert!(err.to_string().contains(says), "{description}: {err}");
    }
}
