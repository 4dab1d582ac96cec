//! Addresses of datagram ports: from what the OS reports to an [`Address`], and from an
//! `Address` a user gives to what the OS needs, checked at the call (the wrong family,
//! port 0, a datagram larger than UDP can carry, an unnamed Unix peer).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use socket2::{SockAddr, Socket};

use crate::error::{Error, ErrorKind};
use crate::net::protocol::Address;

/// The largest UDP payload over IPv4: 65,535 − 20 (IP header) − 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;
/// The largest UDP payload over IPv6 (without jumbograms): 65,535 − 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;

/// What kind of socket a port has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Udp4,
    Udp6,
    Unix,
}

/// An IPv4-mapped IPv6 address (what a dual-stack socket reports for an IPv4 peer) as the
/// plain IPv4 address it stands for.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// The address the OS reported, as delivered to a protocol.
pub(crate) fn from_sockaddr(addr: &SockAddr, family: Family) -> Address {
    if let Some(inet) = addr.as_socket() {
        return Address::Udp(unmapped(inet));
    }
    if family == Family::Unix || addr.is_unix() {
        if let Some(path) = addr.as_pathname() {
            return Address::Unix(Some(path.to_path_buf()));
        }
        if let Some(name) = addr.as_abstract_namespace() {
            return Address::UnixAbstract(name.to_vec());
        }
        return Address::Unix(None);
    }
    Address::Other(format!("(an address of family {})", addr.family()))
}

/// The port's own address.
pub(crate) fn local_of(socket: &Socket, family: Family) -> Address {
    match socket.local_addr() {
        Ok(addr) => match addr.as_socket() {
            Some(inet) => Address::Udp(inet),
            None => from_sockaddr(&addr, family),
        },
        Err(_) => Address::Other("(unknown)".into()),
    }
}

/// Whether `a` and `b` name the same peer (a TCP-flavoured or IPv4-mapped address of the
/// same IP and port counts as the same).
pub(crate) fn same_peer(a: &Address, b: &Address) -> bool {
    match (a.socket_addr(), b.socket_addr()) {
        (Some(x), Some(y)) => unmapped(x) == unmapped(y),
        _ => a == b,
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// What the OS needs to send a `size`-byte datagram to `to` from a port of `family` bound
/// to `local()` (asked only for an error message), or why it cannot be sent.
pub(crate) fn destination(
    to: &Address,
    family: Family,
    v6_only: bool,
    size: usize,
    local: &dyn Fn() -> Address,
) -> Result<SockAddr, Error> {
    match family {
        Family::Udp4 | Family::Udp6 => {
            let Some(inet) = to.socket_addr() else {
                return Err(invalid(format!(
                    "cannot send to {to}: the UDP port {} sends to IP addresses only",
                    local()
                )));
            };
            if inet.port() == 0 {
                return Err(invalid(format!(
                    "cannot send to {inet}: port 0 is not a destination"
                )));
            }
            let inet = unmapped(inet);
            let sock = match (family, inet) {
                (Family::Udp4, SocketAddr::V6(_)) => {
                    return Err(invalid(format!(
                        "cannot send to {inet}: the UDP port {} is IPv4 (listen on an \
                         IPv6 address such as [::]:0 to reach IPv6)",
                        local()
                    )));
                }
                (Family::Udp6, SocketAddr::V4(v4)) if v6_only => {
                    return Err(invalid(format!(
                        "cannot send to {v4}: the UDP port {} is IPv6-only",
                        local()
                    )));
                }
                (Family::Udp6, SocketAddr::V4(v4)) => {
                    SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
                }
                (_, addr) => addr,
            };
            let max = if inet.is_ipv4() {
                MAX_UDP_PAYLOAD_V4
            } else {
                MAX_UDP_PAYLOAD_V6
            };
            if size > max {
                return Err(invalid(format!(
                    "cannot send a {size}-byte datagram to {inet}: the largest UDP payload \
                     over {} is {max} bytes",
                    if inet.is_ipv4() { "IPv4" } else { "IPv6" }
                )));
            }
            Ok(SockAddr::from(sock))
        }
        Family::Unix => {
            let path: OsString = match to {
                Address::Unix(Some(path)) => path.clone().into_os_string(),
                Address::UnixAbstract(name) => {
                    let mut bytes = vec![0u8];
                    bytes.extend_from_slice(name);
                    OsString::from_vec(bytes)
                }
                Address::Unix(None) => {
                    return Err(invalid(format!(
                        "cannot send to an unnamed Unix socket from {}: the sender did not \
                         bind a name, so there is no address to answer",
                        local()
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "cannot send to {other}: the Unix datagram port {} sends to \
                         socket paths only",
                        local()
                    )));
                }
            };
            SockAddr::unix(Path::new(&path))
                .map_err(|e| invalid(format!("cannot send to {to}: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn udp(s: &str) -> Address {
        Address::Udp(s.parse().unwrap())
    }

    #[test]
    fn destinations_are_checked_at_the_call() {
        let local = udp("0.0.0.0:5000");
        let local = &|| local.clone();
        let kind = |r: Result<SockAddr, Error>| r.map(|_| ()).map_err(|e| e.kind());
        assert_eq!(
            kind(destination(
                &udp("127.0.0.1:9"),
                Family::Udp4,
                false,
                10,
                &local
            )),
            Ok(())
        );
        assert_eq!(
            kind(destination(
                &udp("127.0.0.1:0"),
                Family::Udp4,
                false,
                10,
                &local
            )),
            Err(ErrorKind::InvalidInput)
        );
        assert_eq!(
            kind(destination(
                &udp("[::1]:9"),
                Family::Udp4,
                false,
                10,
                &local
            )),
            Err(ErrorKind::InvalidInput)
        );
        assert_eq!(
            kind(destination(
                &udp("127.0.0.1:9"),
                Family::Udp4,
                false,
                65_508,
                &local
            )),
            Err(ErrorKind::InvalidInput)
        );
        let path = Address::Unix(Some(PathBuf::from("/tmp/x")));
        assert_eq!(
            kind(destination(&path, Family::Udp4, false, 1, local)),
            Err(ErrorKind::InvalidInput)
        );
        let mapped = destination(&udp("127.0.0.1:9"), Family::Udp6, false, 1, local).unwrap();
        assert_eq!(
            mapped.as_socket(),
            Some("[::ffff:127.0.0.1]:9".parse().unwrap())
        );
        assert_eq!(
            kind(destination(
                &udp("127.0.0.1:9"),
                Family::Udp6,
                true,
                1,
                &local
            )),
            Err(ErrorKind::InvalidInput)
        );
        let err = destination(&Address::Unix(None), Family::Unix, false, 1, local).unwrap_err();
        assert!(err.to_string().contains("unnamed"), "{err}");
        let abs = destination(
            &Address::UnixAbstract(b"x".to_vec()),
            Family::Unix,
            false,
            1,
            &local,
        )
        .unwrap();
        assert_eq!(abs.as_abstract_namespace(), Some(&b"x"[..]));
    }

    #[test]
    fn reported_addresses_are_unmapped_and_compared_by_ip_and_port() {
        let mapped = SockAddr::from("[::ffff:10.0.0.1]:53".parse::<SocketAddr>().unwrap());
        assert_eq!(from_sockaddr(&mapped, Family::Udp6), udp("10.0.0.1:53"));
        assert!(same_peer(
            &udp("10.0.0.1:53"),
            &Address::Tcp("10.0.0.1:53".parse().unwrap())
        ));
        assert!(!same_peer(&udp("10.0.0.1:53"), &udp("10.0.0.1:54")));
        let unix = SockAddr::unix("/tmp/s").unwrap();
        assert_eq!(
            from_sockaddr(&unix, Family::Unix),
            Address::Unix(Some(PathBuf::from("/tmp/s")))
        );
    }
}
