//! Services over endpoints: [`ServerService`] listens on a server endpoint while it runs
//! and drains its connections when it stops; [`ClientService`] keeps one connection up
//! through a client endpoint, reconnecting with backoff (Twisted's
//! `StreamServerEndpointService` and `ClientService`). Both are
//! [`Service`](torsion_reactor::Service)s, to be put in a
//! [`MultiService`](torsion_reactor::MultiService) tree and run with
//! [`Reactor::run_service`](torsion_reactor::Reactor::run_service).

mod client;
mod server;

pub use client::{ClientService, DEFAULT_CLIENT_BACKOFF_FACTOR, DEFAULT_CLIENT_BACKOFF_MAX};
pub use server::{DEFAULT_DRAIN_TIMEOUT, ServerService};
