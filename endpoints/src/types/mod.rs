//! The built-in endpoint types, one module each holding the type's spec, its parser and its
//! I/O: [`tcp`] (`tcp`, `tcp6`), [`unix`] (`unix`) and [`systemd`] (`systemd`, servers only).

use crate::spec::{ClientType, ServerType};

pub mod systemd;
pub(crate) mod tcp;
pub(crate) mod unix;

/// The built-in server types, for [`Registry::with_builtins`](crate::Registry::with_builtins).
pub(crate) fn server_types() -> Vec<Box<dyn ServerType>> {
    vec![
        Box::new(tcp::TcpServerType { v6: false }),
        Box::new(tcp::TcpServerType { v6: true }),
        Box::new(unix::UnixServerType),
        Box::new(systemd::SystemdServerType),
    ]
}

/// The built-in client types, for [`Registry::with_builtins`](crate::Registry::with_builtins).
pub(crate) fn client_types() -> Vec<Box<dyn ClientType>> {
    vec![
        Box::new(tcp::TcpClientType { v6: false }),
        Box::new(tcp::TcpClientType { v6: true }),
        Box::new(unix::UnixClientType),
    ]
}
