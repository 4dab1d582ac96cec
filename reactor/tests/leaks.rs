//! Descriptor and registration leaks. Alone in its own test binary: it counts this
//! process's open descriptors, which tests running in parallel would disturb.

mod common;

use common::{PATIENCE as LONG, reactor};

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use torsion_reactor::{factory_fn, testing::Sink};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn idle_and_resetting_peers_leave_no_slots_or_descriptors_behind() {
    let r = reactor();
    let port = r
        .listen_tcp("127.0.0.1:0".parse().unwrap(), factory_fn(|_| Sink))
        .unwrap();
    let addr: SocketAddr = port.local_addr().socket_addr().unwrap();
    r.iterate(Duration::ZERO).unwrap();
    let sources = r.registered_sources();
    let fds = open_fds();
    for round in 0..3 {
        let mut clients = Vec::new();
        for i in 0..50 {
            let c = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                // A reset mid-stream: unread data plus SO_LINGER 0 makes close send RST.
                socket2::SockRef::from(&c)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                (&c).write_all(&[round; 1000]).unwrap();
            }
            clients.push(c);
        }
        r.run_until(LONG, || r.open_connections() == 50).unwrap();
        drop(clients);
        r.run_until(LONG, || r.open_connections() == 0).unwrap();
    }
    assert_eq!(r.registered_sources(), sources, "no registration leaked");
    assert_eq!(open_fds(), fds, "no descriptor leaked");
    port.stop_listening();
    assert_eq!(r.registered_sources(), sources - 1);
}
