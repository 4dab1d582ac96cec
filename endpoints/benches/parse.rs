//! Endpoint description parsing: `parse_server` / `parse_client` on typical descriptions.
//! Each iteration parses one description and drops the result. Throughput is in parses.
//!
//! `cargo bench -p torsion-endpoints --bench parse`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use torsion_endpoints::{parse_client, parse_server};

const SERVERS: &[&str] = &[
    "tcp:8000",
    "tcp:port=8000:interface=127.0.0.1",
    "unix:/run/chat.sock:mode=660",
    r"tcp6:8080:interface=\:\:1",
];

const CLIENTS: &[&str] = &[
    "tcp:host=example.org:port=80:timeout=10",
    r"tcp6:\:\:1:8080:bindAddress=[\:\:1]\:5000",
];

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("endpoint_parse");
    group.throughput(Throughput::Elements(1));
    for &description in SERVERS {
        parse_server(description).unwrap();
        group.bench_with_input(
            BenchmarkId::new("server", description),
            description,
            |b, d| b.iter(|| parse_server(black_box(d)).unwrap()),
        );
    }
    for &description in CLIENTS {
        parse_client(description).unwrap();
        group.bench_with_input(
            BenchmarkId::new("client", description),
            description,
            |b, d| b.iter(|| parse_client(black_box(d)).unwrap()),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = parse
}
criterion_main!(benches);
