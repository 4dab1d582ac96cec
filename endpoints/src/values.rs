//! Strict parsers for the values inside segments: decimal and octal numbers, seconds, IP
//! literals with an optional IPv6 `%scope`, `0`/`1` flags.
//!
//! Each returns a [`Bad`] on failure: the error kind and a reason phrase, which
//! [`Value`](crate::Value) turns into an [`EndpointError`](crate::EndpointError) with the
//! description and the parameter name around it.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use crate::error::ErrorKind;

/// Why a value is not acceptable: the kind and a phrase such as
/// `not a plain decimal number; expected a number from 0 to 65535`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bad {
    pub kind: ErrorKind,
    pub reason: String,
}

impl Bad {
    pub(crate) fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Bad {
            kind,
            reason: reason.into(),
        }
    }
}

/// Parses plain ASCII decimal digits (no sign, space, underscore or other digit) into a number
/// from `min` to `max`.
pub(crate) fn decimal_in(text: &str, min: u64, max: u64) -> Result<u64, Bad> {
    let expected = || format!("expected a number from {min} to {max}");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad::new(
            ErrorKind::InvalidNumber,
            format!(
                "not a plain decimal number (ASCII digits only); {}",
                expected()
            ),
        ));
    }
    let mut n: u64 = 0;
    for b in text.bytes() {
        n = match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
        {
            Some(n) => n,
            None => return Err(Bad::new(ErrorKind::OutOfRange, expected())),
        };
    }
    if n < min || n > max {
        return Err(Bad::new(ErrorKind::OutOfRange, expected()));
    }
    Ok(n)
}

/// Parses octal digits, with an optional `0o` prefix, into a number no larger than `max`.
pub(crate) fn octal_up_to(text: &str, max: u32) -> Result<u32, Bad> {
    let expected = || format!("expected octal digits such as 660 or 0o660, at most {max:o}");
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(Bad::new(
            ErrorKind::InvalidNumber,
            format!("not an octal number; {}", expected()),
        ));
    }
    let mut n: u32 = 0;
    for b in digits.bytes() {
        n = match n
            .checked_mul(8)
            .and_then(|n| n.checked_add(u32::from(b - b'0')))
        {
            Some(n) => n,
            None => return Err(Bad::new(ErrorKind::OutOfRange, expected())),
        };
    }
    if n > max {
        return Err(Bad::new(ErrorKind::OutOfRange, expected()));
    }
    Ok(n)
}

/// Parses decimal seconds with an optional fraction (`30`, `1.5`, `0.25`) into a duration.
/// Digits past nanoseconds are dropped.
pub(crate) fn seconds(text: &str) -> Result<Duration, Bad> {
    const EXPECTED: &str = "expected decimal seconds such as 30 or 1.5";
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return Err(Bad::new(
            ErrorKind::InvalidNumber,
            format!("not a plain decimal number of seconds; {EXPECTED}"),
        ));
    }
    let secs = decimal_in(whole, 0, u64::MAX).map_err(|_| {
        Bad::new(
            ErrorKind::OutOfRange,
            format!("too large; {EXPECTED}, below {}", u64::MAX),
        )
    })?;
    let mut nanos: u32 = 0;
    let fraction = fraction.unwrap_or_default().as_bytes();
    for i in 0..9 {
        let digit = fraction.get(i).map_or(0, |b| u32::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    Ok(Duration::new(secs, nanos))
}

/// Parses `0` or `1`.
pub(crate) fn flag(text: &str) -> Result<bool, Bad> {
    match text {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(Bad::new(ErrorKind::InvalidValue, "expected 0 or 1")),
    }
}

/// Parses an IP literal, IPv6 possibly followed by `%scope` (an interface name or number).
/// Host names are not accepted.
pub(crate) fn scoped_ip(text: &str) -> Result<(IpAddr, Option<String>), Bad> {
    if let Some((addr, scope)) = text.split_once('%') {
        let ip: Ipv6Addr = match addr.parse() {
            Ok(ip) => ip,
            Err(_) if addr.parse::<IpAddr>().is_ok() => {
                return Err(Bad::new(
                    ErrorKind::InvalidAddress,
                    "a %scope is only allowed on an IPv6 address",
                ));
            }
            Err(_) => {
                return Err(Bad::new(
                    ErrorKind::InvalidAddress,
                    "not an IP address (host names are not resolved here)",
                ));
            }
        };
        check_scope(scope)?;
        return Ok((IpAddr::V6(ip), Some(scope.to_owned())));
    }
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok((ip, None)),
        Err(_) => Err(Bad::new(
            ErrorKind::InvalidAddress,
            "not an IP address (host names are not resolved here)",
        )),
    }
}

/// A scope (zone) is an interface name or index: 1 to 64 ASCII letters, digits, `_`, `-`, `.`.
fn check_scope(scope: &str) -> Result<(), Bad> {
    let ok = !scope.is_empty()
        && scope.len() <= 64
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Bad::new(
            ErrorKind::InvalidAddress,
            "the %scope must be an interface name or number (ASCII letters, digits, _ - .)",
        ))
    }
}

/// Formats an IP address with its optional scope as `addr` or `addr%scope`.
pub(crate) fn format_scoped(ip: &IpAddr, scope: Option<&str>) -> String {
    match scope {
        Some(scope) => format!("{ip}%{scope}"),
        None => ip.to_string(),
    }
}

/// Checks a host name or IP literal for a client: not empty; an IP literal (IPv6 with an
/// optional `%scope`), or a name made of letters, digits, `-`, `.` and `_` (non-ASCII letters
/// are allowed for internationalised names). Returns the IP when it is a literal.
pub(crate) fn host(text: &str) -> Result<Option<IpAddr>, Bad> {
    if text.is_empty() {
        return Err(Bad::new(
            ErrorKind::InvalidAddress,
            "empty; expected a host name or IP address",
        ));
    }
    if let Ok((ip, _)) = scoped_ip(text) {
        return Ok(Some(ip));
    }
    if text.contains(':') || text.contains('%') {
        return Err(Bad::new(
            ErrorKind::InvalidAddress,
            "not a valid IPv6 address (write it without brackets, with each : escaped as \\:)",
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(Bad::new(
            ErrorKind::InvalidAddress,
            format!(
                "not a host name or IP address (it contains {:?}); \
                 expected a name such as example.org or an address such as 192.0.2.1",
                c
            ),
        ));
    }
    Ok(None)
}

/// Formats seconds as the shortest decimal that reads back to the same duration.
pub(crate) fn format_seconds(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return d.as_secs().to_string();
    }
    let fraction = format!("{nanos:09}");
    format!("{}.{}", d.as_secs(), fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_strict() {
        assert_eq!(decimal_in("80", 0, 65535), Ok(80));
        assert_eq!(decimal_in("080", 0, 65535), Ok(80));
        assert_eq!(decimal_in("0", 0, 65535), Ok(0));
        assert_eq!(decimal_in("65535", 0, 65535), Ok(65535));
        for bad in [
            "", " 80", "80 ", "+80", "-1", "8_000", "８０", "0x50", "1e3",
        ] {
            assert_eq!(
                decimal_in(bad, 0, 65535).unwrap_err().kind,
                ErrorKind::InvalidNumber,
                "{bad:?}"
            );
        }
        assert_eq!(
            decimal_in("65536", 0, 65535).unwrap_err().kind,
            ErrorKind::OutOfRange
        );
        assert_eq!(
            decimal_in("99999999999999999999999", 0, u64::MAX)
                .unwrap_err()
                .kind,
            ErrorKind::OutOfRange
        );
        assert_eq!(
            decimal_in("0", 1, 10).unwrap_err().kind,
            ErrorKind::OutOfRange
        );
    }

    #[test]
    fn octal_accepts_optional_prefix() {
        assert_eq!(octal_up_to("660", 0o777), Ok(0o660));
        assert_eq!(octal_up_to("0660", 0o777), Ok(0o660));
        assert_eq!(octal_up_to("0o660", 0o777), Ok(0o660));
        assert_eq!(octal_up_to("0", 0o777), Ok(0));
        for bad in ["", "0o", "8", "0x1f", "66 ", "-1", "0O660"] {
            assert_eq!(
                octal_up_to(bad, 0o777).unwrap_err().kind,
                ErrorKind::InvalidNumber,
                "{bad:?}"
            );
        }
        assert_eq!(
            octal_up_to("1000", 0o777).unwrap_err().kind,
            ErrorKind::OutOfRange
        );
        assert_eq!(
            octal_up_to("77777777777777", 0o777).unwrap_err().kind,
            ErrorKind::OutOfRange
        );
    }

    #[test]
    fn seconds_allow_a_fraction() {
        assert_eq!(seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(seconds("0.000000001"), Ok(Duration::from_nanos(1)));
        assert_eq!(seconds("0.0000000019"), Ok(Duration::from_nanos(1)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        for bad in [
            "", ".5", "5.", "1.2.3", "-1", "inf", "NaN", "1e3", " 1", "1,5",
        ] {
            assert_eq!(
                seconds(bad).unwrap_err().kind,
                ErrorKind::InvalidNumber,
                "{bad:?}"
            );
        }
        assert_eq!(
            seconds("99999999999999999999").unwrap_err().kind,
            ErrorKind::OutOfRange
        );
    }

    #[test]
    fn seconds_format_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(30),
            Duration::from_millis(1500),
            Duration::from_nanos(1),
            Duration::new(7, 120_000_000),
        ] {
            assert_eq!(seconds(&format_seconds(d)), Ok(d));
        }
        assert_eq!(format_seconds(Duration::from_millis(1500)), "1.5");
    }

    #[test]
    fn flags_are_zero_or_one() {
        assert_eq!(flag("0"), Ok(false));
        assert_eq!(flag("1"), Ok(true));
        for bad in ["", "2", "true", "yes", "01"] {
            assert_eq!(flag(bad).unwrap_err().kind, ErrorKind::InvalidValue);
        }
    }

    #[test]
    fn scoped_ips() {
        assert_eq!(
            scoped_ip("fe80::1%eth0"),
            Ok(("fe80::1".parse().expect("ip"), Some("eth0".to_owned())))
        );
        assert_eq!(scoped_ip("::1"), Ok(("::1".parse().expect("ip"), None)));
        assert_eq!(
            scoped_ip("127.0.0.1"),
            Ok(("127.0.0.1".parse().expect("ip"), None))
        );
        for bad in [
            "",
            "localhost",
            "1.2.3.4%eth0",
            "fe80::1%",
            "fe80::1%a b",
            "[::1]",
            "01.2.3.4",
        ] {
            assert_eq!(
                scoped_ip(bad).unwrap_err().kind,
                ErrorKind::InvalidAddress,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(host("example.org"), Ok(None));
        assert_eq!(host("bücher.example"), Ok(None));
        assert_eq!(host("_srv.example"), Ok(None));
        assert!(matches!(host("::1"), Ok(Some(_))));
        assert!(matches!(host("fe80::1%2"), Ok(Some(_))));
        for bad in ["", "[::1]", "a b", "a/b", "1:2", "host%eth0", "a@b"] {
            assert_eq!(
                host(bad).unwrap_err().kind,
                ErrorKind::InvalidAddress,
                "{bad:?}"
            );
        }
    }
}
