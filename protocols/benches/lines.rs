//! Line-parsing throughput of `LineDecoder`, in bytes per second.
//!
//! About 1 MiB of `\r\n`-terminated lines is pushed in 64 KiB pieces (a
//! typical read size), pulling every line after each push, as a protocol
//! adapter does. Short lines (40 bytes with the delimiter) measure the
//! per-line cost; long lines (8 KiB) measure the delimiter search. The `strip_cr`
//! variant splits on `\n` and drops a `\r` before it (the chat server's setting); the
//! `adapter` one goes through the `Lines` protocol adapter and a `LineReceiver`
//! callback, as a server does.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use torsion_protocols::{LineControl, LineDecoder, LineEvent, LineReceiver, Lines};
use torsion_reactor::Protocol;
use torsion_reactor::testing::StringTransport;

const TOTAL: usize = 1 << 20;
const READ: usize = 64 * 1024;

/// About `TOTAL` bytes of lines of `line_len` bytes, delimiter included.
fn input(line_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(TOTAL + line_len);
    let mut n = 0u32;
    while out.len() + line_len <= TOTAL {
        let start = out.len();
        out.extend((0..line_len - 2).map(|i| b'a' + ((i as u32 + n) % 26) as u8));
        out[start] = b'A' + (n % 26) as u8;
        out.extend_from_slice(b"\r\n");
        n += 1;
    }
    out
}

fn parse(data: &[u8], max_length: usize) -> usize {
    parse_with(LineDecoder::new().with_max_length(max_length), data)
}

fn parse_with(mut dec: LineDecoder, data: &[u8]) -> usize {
    let mut lines = 0;
    for piece in data.chunks(READ) {
        dec.push(piece);
        while let Some(event) = dec.next_event() {
            if let LineEvent::Line(line) = event {
                black_box(&line);
                lines += 1;
            }
        }
    }
    lines
}

fn lines(c: &mut Criterion) {
    let mut group = c.benchmark_group("lines");
    for (name, line_len) in [("short_40B", 40), ("long_8KiB", 8 * 1024)] {
        let data = input(line_len);
        let expected = data.len() / line_len;
        assert_eq!(parse(&data, 16_384), expected);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse(black_box(&data), 16_384)));
    }
    // Byte-at-a-time feeding of one 256 KiB line: the worst case for a
    // parser that rescans its buffer.
    let mut line = vec![b'x'; 256 * 1024];
    line.extend_from_slice(b"\r\n");
    group.throughput(Throughput::Bytes(line.len() as u64));
    group.bench_function("one_byte_reads_256KiB_line", |b| {
        b.iter(|| {
            let mut dec = LineDecoder::new().with_max_length(1 << 20);
            let mut got = 0;
            for byte in black_box(&line).chunks(1) {
                dec.push(byte);
                if let Some(LineEvent::Line(l)) = dec.next_event() {
                    got = l.len();
                }
            }
            got
        })
    });
    // `\n` with `\r` stripping, on the same `\r\n` input.
    let data = input(40);
    let expected = data.len() / 40;
    let crlf_or_lf = || LineDecoder::new().with_delimiter(b"\n").with_strip_cr(true);
    assert_eq!(parse_with(crlf_or_lf(), &data), expected);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("short_40B_strip_cr", |b| {
        b.iter(|| parse_with(crlf_or_lf(), black_box(&data)))
    });
    // Through the protocol adapter and a receiver callback.
    group.bench_function("adapter_short_40B", |b| {
        let t = StringTransport::new();
        let transport = t.transport();
        b.iter(|| {
            let mut p = Lines::new(Count(0));
            p.connection_made(&transport);
            for piece in black_box(&data).chunks(READ) {
                p.data_received(&transport, piece);
            }
            assert_eq!(p.receiver().0, expected);
        })
    });
    group.finish();
}

/// Counts lines.
struct Count(usize);

impl LineReceiver for Count {
    fn line_received(&mut self, _: &mut LineControl<'_>, line: &[u8]) {
        black_box(line);
        self.0 += 1;
    }
}

criterion_group!(benches, lines);
criterion_main!(benches);
