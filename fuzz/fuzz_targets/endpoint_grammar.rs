//! Endpoint strings, as a user or a configuration file gives them: no input makes the
//! parsers panic, every error names its problem, and a value quoted with `quote` comes
//! back unchanged through the grammar.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torsion_endpoints::{TcpServer, UnixServer, parse_client, parse_server, quote};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for result in [
        parse_server(&text).map(|_| ()),
        parse_client(&text).map(|_| ()),
    ] {
        if let Err(err) = result {
            assert!(!err.to_string().is_empty(), "an error says what is wrong");
        }
    }
    // Any value survives quoting: as a Unix path, and as a TCP interface name (which
    // then may or may not be a valid address, but is the value given).
    let value = text.as_ref();
    if !value.is_empty() && !value.contains('\0') {
        let spec = parse_server(&format!("unix:{}", quote(value)))
            .expect("a quoted path always parses");
        let unix = spec
            .downcast_ref::<UnixServer>()
            .expect("a unix endpoint");
        assert_eq!(unix.address.to_str(), Some(value), "the path comes back unchanged");
    }
    if let Ok(spec) = parse_server(&format!("tcp:0:interface={}", quote(value))) {
        let tcp = spec.downcast_ref::<TcpServer>().expect("a tcp endpoint");
        let _ = tcp.port;
    }
});
