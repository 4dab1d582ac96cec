//! Property tests of the PROXY protocol codec: what is encoded parses back the same, at
//! every split point of the input and byte by byte; the bytes after a header are kept;
//! garbage and corrupted headers give errors, never panics.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;
use torsion_endpoints::haproxy::{
    Command, DEFAULT_MAX_HEADER_LEN, HeaderReader, ProxiedAddresses, ProxiedTransport, ProxyHeader,
    Tlv, V2_SIGNATURE, Version, parse_header, tlv,
};

fn inet_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| {
                (
                    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), p)),
                    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(b), q)),
                )
            }),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| {
                (
                    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), p, 0, 0)),
                    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(b), q, 0, 0)),
                )
            }),
        // Addresses whose text forms are special: IPv4-mapped, loopback, unspecified.
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| {
            let mapped = Ipv4Addr::from(a).to_ipv6_mapped();
            (
                SocketAddr::V6(SocketAddrV6::new(mapped, p, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)),
            )
        }),
    ]
}

/// A Unix address as the header keeps it: at most 108 bytes, not ending in NUL (padding).
fn unix_address() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=108).prop_map(|mut v| {
        while v.last() == Some(&0) {
            v.pop();
        }
        v
    })
}

fn transport() -> impl Strategy<Value = ProxiedTransport> {
    prop_oneof![
        Just(ProxiedTransport::Stream),
        Just(ProxiedTransport::Datagram)
    ]
}

fn v1_header() -> impl Strategy<Value = ProxyHeader> {
    prop_oneof![
        Just(ProxyHeader::unknown(Version::V1)),
        inet_pair().prop_map(|(s, d)| ProxyHeader::v1(s, d)),
    ]
}

fn v2_header() -> impl Strategy<Value = ProxyHeader> {
    let addresses = prop_oneof![
        Just(ProxiedAddresses::Unknown),
        (transport(), inet_pair()).prop_map(|(transport, (source, destination))| {
            ProxiedAddresses::Inet {
                transport,
                source,
                destination,
            }
        }),
        (transport(), unix_address(), unix_address()).prop_map(
            |(transport, source, destination)| ProxiedAddresses::Unix {
                transport,
                source,
                destination,
            }
        ),
    ];
    let tlvs = prop::collection::vec(
        (
            any::<u8>().prop_filter("the CRC32C TLV is checked", |k| *k != tlv::CRC32C),
            prop::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(kind, value)| Tlv { kind, value }),
        0..5,
    );
    let command = prop_oneof![Just(Command::Local), Just(Command::Proxy)];
    (command, addresses, tlvs, any::<bool>()).prop_map(|(command, addresses, tlvs, crc)| {
        let header = ProxyHeader {
            version: Version::V2,
            command,
            addresses,
            tlvs,
        };
        if crc { header.with_crc32c() } else { header }
    })
}

fn header() -> impl Strategy<Value = ProxyHeader> {
    prop_oneof![v1_header(), v2_header()]
}

/// What parsing `header`'s encoding must give: the header, with a CRC32C TLV's value
/// filled in.
fn expected(header: &ProxyHeader, encoded: &[u8]) -> ProxyHeader {
    let mut h = header.clone();
    if let Some(t) = h.tlvs.iter_mut().find(|t| t.kind == tlv::CRC32C) {
        let (parsed, _) = parse_header(encoded, usize::MAX)
            .expect("parses")
            .expect("complete");
        t.value = parsed.tlv(tlv::CRC32C).expect("the checksum").to_vec();
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoding_parses_back(h in header(), after in prop::collection::vec(any::<u8>(), 0..32)) {
        let encoded = h.encode().expect("encodable");
        if h.version == Version::V1 {
            prop_assert!(encoded.len() <= 107);
        }
        let mut input = encoded.clone();
        input.extend_from_slice(&after);
        let parsed = parse_header(&input, DEFAULT_MAX_HEADER_LEN).expect("valid");
        prop_assert_eq!(parsed, Some((expected(&h, &encoded), encoded.len())));
    }

    #[test]
    fn every_split_point_parses_the_same(
        h in header(),
        after in prop::collection::vec(any::<u8>(), 0..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let encoded = h.encode().expect("encodable");
        let mut input = encoded.clone();
        input.extend_from_slice(&after);
        let want = expected(&h, &encoded);
        let k = cut.index(encoded.len()); // inside the header: the first piece is short
        let mut reader = HeaderReader::new();
        prop_assert_eq!(reader.feed(&input[..k]).expect("a valid prefix"), None);
        prop_assert_eq!(reader.buffered(), k);
        let (parsed, used) = reader.feed(&input[k..]).expect("valid").expect("complete");
        prop_assert_eq!(parsed, want);
        prop_assert_eq!(&input[k + used..], &after[..], "the bytes after the header are kept");
    }

    #[test]
    fn byte_by_byte(h in header(), after in prop::collection::vec(any::<u8>(), 1..8)) {
        let encoded = h.encode().expect("encodable");
        let mut input = encoded.clone();
        input.extend_from_slice(&after);
        let mut reader = HeaderReader::new();
        let mut done = None;
        for (i, b) in input.iter().enumerate() {
            if let Some((parsed, used)) = reader.feed(std::slice::from_ref(b)).expect("valid") {
                prop_assert_eq!(used, 1);
                done = Some((parsed, i + 1));
                break;
            }
        }
        prop_assert_eq!(done, Some((expected(&h, &encoded), encoded.len())));
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), cut in any::<prop::sample::Index>()) {
        let _ = parse_header(&bytes, DEFAULT_MAX_HEADER_LEN);
        let mut reader = HeaderReader::new();
        let k = if bytes.is_empty() { 0 } else { cut.index(bytes.len()) };
        if let Ok(None) = reader.feed(&bytes[..k]) {
            let _ = reader.feed(&bytes[k..]);
        }
    }

    #[test]
    fn garbage_after_a_signature_never_panics(
        v2 in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = if v2 { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
        bytes.extend_from_slice(&tail);
        if let Ok(Some((_, used))) = parse_header(&bytes, DEFAULT_MAX_HEADER_LEN) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn corrupted_headers_never_panic(h in header(), at in any::<prop::sample::Index>(), x in 1..=255u8) {
        let mut bytes = h.encode().expect("encodable");
        let i = at.index(bytes.len());
        bytes[i] ^= x;
        if let Ok(Some((_, used))) = parse_header(&bytes, DEFAULT_MAX_HEADER_LEN) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn a_v1_line_without_crlf_is_refused_by_its_108th_byte(fill in prop::collection::vec(0x20..0x7fu8, 120)) {
        let mut bytes = b"PROXY UNKNOWN ".to_vec();
        bytes.extend_from_slice(&fill);
        let err = parse_header(&bytes[..107], DEFAULT_MAX_HEADER_LEN).expect_err("too long");
        prop_assert_eq!(err.kind(), torsion_endpoints::haproxy::HeaderErrorKind::TooLong);
    }
}
