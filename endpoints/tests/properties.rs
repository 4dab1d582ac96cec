//! Property tests: `quote` round-trips any value through the grammar, canonical descriptions
//! parse back, and no input makes either parser panic.

use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use torsion_endpoints::{
    Args, EndpointError, ParamSpec, ParamValue, Registry, ServerSpec, ServerType, TcpServer,
    UnixClient, UnixServer, parse_client, parse_server, quote,
};

/// Strings rich in the grammar's special characters, plus arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[:=\\\\a/ü%\\[\\] .0-9]{0,24}",
        prop::collection::vec(
            prop::sample::select(vec![":", "=", "\\", "a", "é", "∂"]),
            0..16
        )
        .prop_map(|v| v.concat()),
    ]
}

/// A valid Unix socket path: anything but empty or holding NUL.
fn path() -> impl Strategy<Value = String> {
    text().prop_filter("a socket path is non-empty without NUL", |p| {
        !p.is_empty() && !p.contains('\0')
    })
}

/// A type that keeps any strings, to test the grammar alone.
#[derive(Debug)]
struct Echo {
    a: Option<String>,
    b: Option<String>,
}

impl ServerSpec for Echo {
    fn type_name(&self) -> &str {
        "echo"
    }
    fn params(&self) -> Vec<(String, ParamValue)> {
        Vec::new()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct EchoType;

impl ServerType for EchoType {
    fn name(&self) -> &str {
        "echo"
    }
    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(&[ParamSpec::positional("a"), ParamSpec::keyword("b")])?;
        Ok(Box::new(Echo {
            a: b.get("a").map(|v| v.as_str().to_owned()),
            b: b.get("b").map(|v| v.as_str().to_owned()),
        }))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn quoted_unix_path_round_trips(p in path()) {
        let q = quote(&p);
        for description in [
            format!("unix:{q}"),
            format!("unix:address={q}"),
            format!("unix:{q}:mode=600"),
            format!("mode=600:unix:{q}"),
        ] {
            let spec = parse_server(&description).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let unix = spec.downcast_ref::<UnixServer>().expect("a unix server");
            prop_assert_eq!(unix.address.to_str(), Some(p.as_str()), "{}", description);
        }
        for description in [format!("unix:{q}"), format!("unix:path={q}:timeout=1")] {
            let spec = parse_client(&description).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let unix = spec.downcast_ref::<UnixClient>().expect("a unix client");
            prop_assert_eq!(unix.path.to_str(), Some(p.as_str()), "{}", description);
        }
    }

    #[test]
    fn quoted_values_round_trip(a in text(), b in text()) {
        let mut registry = Registry::empty();
        registry.register_server(EchoType);
        let description = format!("echo:b={}:{}", quote(&b), quote(&a));
        let spec = registry
            .parse_server(&description)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let echo = spec.downcast_ref::<Echo>().expect("an echo");
        prop_assert_eq!(echo.a.as_deref(), Some(a.as_str()));
        prop_assert_eq!(echo.b.as_deref(), Some(b.as_str()));
    }

    #[test]
    fn canonical_tcp_servers_parse_back(
        port in any::<u16>(),
        backlog in 1..=i32::MAX as u32,
        reuseport in any::<bool>(),
        ipv6only in any::<Option<bool>>(),
        v6 in any::<bool>(),
        bits in any::<u128>(),
    ) {
        let interface = if v6 {
            IpAddr::V6(Ipv6Addr::from(bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(bits as u32))
        };
        let spec = TcpServer {
            port,
            interface,
            scope: None,
            backlog,
            reuseport,
            ipv6only: if v6 { ipv6only } else { None },
        };
        let parsed = parse_server(&spec.to_string())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.downcast_ref::<TcpServer>(), Some(&spec));
    }

    #[test]
    fn canonical_unix_servers_parse_back(
        p in path(),
        mode in 0..=0o777u32,
        backlog in 1..=1000u32,
        lockfile in any::<bool>(),
    ) {
        let spec = UnixServer { address: p.into(), mode, backlog, lockfile };
        let parsed = parse_server(&spec.to_string())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.downcast_ref::<UnixServer>(), Some(&spec));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A bounded fuzz run: nothing makes the parsers panic, and every outcome can be shown.
    #[test]
    fn parsers_never_panic(
        prefix in prop::sample::select(vec![
            "", "tcp:", "tcp6:", "unix:", "systemd:", "TCP:", "ssl:", "tcp:80:", "tcp6:80:",
            "unix:/tmp/s:", "systemd:INET:", "tcp:host=h:",
        ]),
        rest in text(),
    ) {
        let description = format!("{prefix}{rest}");
        match parse_server(&description) {
            Ok(spec) => {
                let _ = (spec.type_name(), spec.params(), format!("{spec:?}"));
            }
            Err(e) => {
                prop_assert_eq!(e.input(), description.as_str());
                prop_assert!(!e.to_string().contains('\n'));
            }
        }
        match parse_client(&description) {
            Ok(spec) => {
                let _ = (spec.type_name(), spec.params(), format!("{spec:?}"));
            }
            Err(e) => {
                prop_assert_eq!(e.input(), description.as_str());
                prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }
}
