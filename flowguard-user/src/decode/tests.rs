//! Decoder tests: one per template rule of DESIGN.md, times, and hostile input.
//!
//! Hostile-input tests assert the counter of the specific reason both in total and for
//! the exporter, and that nothing panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::encode::MessageBuilder;
use super::wire::set::{self, FieldSpec, VARIABLE_LENGTH};
use super::*;

const EXP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const EXP2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const NOW: u64 = 1_700_000_000_000;
const SECS: u32 = 1_700_000_000;

const fn f(id: u16, length: u16) -> FieldSpec {
    FieldSpec {
        id,
        length,
        enterprise: 0,
    }
}

/// src v4, dst v4, octetDeltaCount (4), packetDeltaCount (4): 16-byte records.
const SIMPLE: [FieldSpec; 4] = [f(8, 4), f(12, 4), f(1, 4), f(2, 4)];

fn simple(src: u8, bytes: u32, packets: u32) -> Vec<u8> {
    [
        &[10, 0, 0, src][..],
        &[10, 0, 1, 1],
        &bytes.to_be_bytes(),
        &packets.to_be_bytes(),
    ]
    .concat()
}

fn ipfix(domain: u32, build: impl FnOnce(&mut MessageBuilder)) -> Vec<u8> {
    let mut m = MessageBuilder::ipfix(SECS, 0, domain);
    build(&mut m);
    m.finish()
}

fn v9(source_id: u32, build: impl FnOnce(&mut MessageBuilder)) -> Vec<u8> {
    let mut m = MessageBuilder::v9(60_000, SECS, 0, source_id);
    build(&mut m);
    m.finish()
}

fn template(m: &mut MessageBuilder, ipfix: bool, id: u16, fields: &[FieldSpec]) {
    m.begin_set(if ipfix {
        set::IPFIX_TEMPLATE
    } else {
        set::V9_TEMPLATE
    });
    m.template(id, fields);
    m.end_set();
}

fn data(m: &mut MessageBuilder, id: u16, records: &[Vec<u8>]) {
    m.begin_set(id);
    for r in records {
        m.record(r);
    }
    m.end_set();
}

fn run(
    d: &mut Decoder,
    exporter: IpAddr,
    payload: &[u8],
) -> (Vec<FlowRecord>, Result<Summary, DecodeError>) {
    run_at(d, exporter, NOW, payload)
}

fn run_at(
    d: &mut Decoder,
    exporter: IpAddr,
    now: u64,
    payload: &[u8],
) -> (Vec<FlowRecord>, Result<Summary, DecodeError>) {
    let mut out = Vec::new();
    let r = d.decode_into(exporter, now, payload, &mut out);
    (out, r)
}

/// Asserts a counter in total and for the exporter.
macro_rules! assert_counted {
    ($d:expr, $exp:expr, $field:ident, $n:expr) => {{
        assert_eq!(
            $d.counters().$field,
            $n,
            "total {}: {:?}",
            stringify!($field),
            $d.counters()
        );
        let per = $d.exporter_counters($exp).expect("exporter has counters");
        assert_eq!(per.$field, $n, "exporter {}: {per:?}", stringify!($field));
    }};
}

// ---------------------------------------------------------------- template rules

#[test]
fn same_template_id_on_two_domains_is_two_templates() {
    let mut d = Decoder::default();
    // Domain 1: 256 = SIMPLE. Domain 2: 256 = packets first, then bytes, swapped.
    let swapped = [f(8, 4), f(12, 4), f(2, 4), f(1, 4)];
    let _ = run(&mut d, EXP, &ipfix(1, |m| template(m, true, 256, &SIMPLE)));
    let _ = run(&mut d, EXP, &ipfix(2, |m| template(m, true, 256, &swapped)));
    let (a, _) = run(
        &mut d,
        EXP,
        &ipfix(1, |m| data(m, 256, &[simple(1, 1000, 10)])),
    );
    let (b, _) = run(
        &mut d,
        EXP,
        &ipfix(2, |m| data(m, 256, &[simple(1, 1000, 10)])),
    );
    assert_eq!(
        (a[0].bytes, a[0].packets, a[0].observation_domain_id),
        (1000, 10, 1)
    );
    assert_eq!(
        (b[0].bytes, b[0].packets, b[0].observation_domain_id),
        (10, 1000, 2)
    );
    // Another exporter has no template 256 at all.
    let (c, _) = run(
        &mut d,
        EXP2,
        &ipfix(1, |m| data(m, 256, &[simple(1, 1000, 10)])),
    );
    assert!(c.is_empty());
    assert_counted!(d, EXP2, missing_template, 1);
    assert_eq!(d.cache_usage().templates, 2);
}

#[test]
fn v9_data_and_options_templates_share_one_id_space() {
    let mut d = Decoder::default();
    let p = v9(0, |m| {
        m.begin_set(set::V9_OPTIONS_TEMPLATE);
        m.options_template(300, &[f(1, 4)], &[f(34, 4)]);
        m.end_set();
    });
    let _ = run(&mut d, EXP, &p);
    // Redefining 300 as a data template replaces the options template.
    let _ = run(&mut d, EXP, &v9(0, |m| template(m, false, 300, &SIMPLE)));
    let (recs, r) = run(&mut d, EXP, &v9(0, |m| data(m, 300, &[simple(7, 100, 1)])));
    assert!(r.is_ok());
    assert_eq!(recs.len(), 1);
    assert_eq!(d.cache_usage().templates, 1);
    assert_eq!(d.counters().options_records, 0);
}

#[test]
fn v9_refresh_replaces_definition() {
    let mut d = Decoder::default();
    let _ = run(&mut d, EXP, &v9(0, |m| template(m, false, 256, &SIMPLE)));
    let _ = run(
        &mut d,
        EXP,
        &v9(0, |m| {
            template(m, false, 256, &[f(8, 4), f(12, 4), f(2, 4), f(1, 4)]);
        }),
    );
    let (recs, _) = run(&mut d, EXP, &v9(0, |m| data(m, 256, &[simple(1, 5, 6)])));
    assert_eq!((recs[0].bytes, recs[0].packets), (6, 5));
    // An identical refresh is only a touch: still one template, counted as received.
    let _ = run(
        &mut d,
        EXP,
        &v9(0, |m| {
            template(m, false, 256, &[f(8, 4), f(12, 4), f(2, 4), f(1, 4)]);
        }),
    );
    assert_eq!(d.cache_usage().templates, 1);
    assert_eq!(d.counters().templates, 3);
}

fn v9_sampling_options(m: &mut MessageBuilder, id: u16, sampler: u16, interval: u32) {
    m.begin_set(id);
    m.record(
        &[
            &0u32.to_be_bytes()[..],
            &sampler.to_be_bytes(),
            &[2],
            &interval.to_be_bytes(),
        ]
        .concat(),
    );
    m.end_set();
}

fn v9_sampler_template(m: &mut MessageBuilder, id: u16) {
    m.begin_set(set::V9_OPTIONS_TEMPLATE);
    m.options_template(id, &[f(1, 4)], &[f(48, 2), f(49, 1), f(50, 4)]);
    m.end_set();
}

#[test]
fn v9_options_sampling_per_sampler_id() {
    let mut d = Decoder::default();
    // Data template with FLOW_SAMPLER_ID (48).
    let with_sampler = [f(8, 4), f(12, 4), f(1, 4), f(2, 4), f(48, 1)];
    let p = v9(7, |m| {
        v9_sampler_template(m, 260);
        template(m, false, 256, &with_sampler);
        v9_sampling_options(m, 260, 1, 100);
        v9_sampling_options(m, 260, 2, 1000);
        data(
            m,
            256,
            &[
                [simple(1, 10, 1), vec![1]].concat(),
                [simple(2, 10, 1), vec![2]].concat(),
            ],
        );
        data(m, 256, &[[simple(3, 10, 1), vec![9]].concat()]);
    });
    let (recs, r) = run(&mut d, EXP, &p);
    assert!(r.is_ok(), "{r:?}");
    let got: Vec<_> = recs
        .iter()
        .map(|r| (r.sampling_interval, r.bytes, r.raw_bytes, r.packets))
        .collect();
    // Sampler 9 is unknown and there is no default: unsampled.
    assert_eq!(
        got,
        vec![
            (100, 1000, 10, 100),
            (1000, 10_000, 10, 1000),
            (1, 10, 10, 1)
        ]
    );
    assert_eq!(d.sampling_interval(EXP, 7, Some(2)), Some(1000));
    assert_eq!(d.counters().options_records, 2);
}

#[test]
fn v9_options_sampling_interval_default_without_sampler_id() {
    let mut d = Decoder::default();
    // SAMPLING_INTERVAL 34 + SAMPLING_ALGORITHM 35, scope System, no sampler id.
    let p = v9(0, |m| {
        m.begin_set(set::V9_OPTIONS_TEMPLATE);
        m.options_template(257, &[f(1, 4)], &[f(34, 4), f(35, 1)]);
        m.end_set();
        m.begin_set(257);
        m.record(&[0, 0, 0, 0, 0, 0, 0, 64, 2]);
        m.end_set();
        template(m, false, 256, &SIMPLE);
        data(m, 256, &[simple(1, 10, 2)]);
    });
    let (recs, _) = run(&mut d, EXP, &p);
    assert_eq!(
        (recs[0].sampling_interval, recs[0].bytes, recs[0].packets),
        (64, 640, 128)
    );
    assert_eq!(d.sampling_interval(EXP, 0, None), Some(64));
}

#[test]
fn ipfix_sampling_packet_interval_and_space_with_selector_id() {
    let mut d = Decoder::default();
    let data_t = [f(8, 4), f(12, 4), f(1, 4), f(2, 4), f(302, 2)];
    let p = ipfix(5, |m| {
        m.begin_set(set::IPFIX_OPTIONS_TEMPLATE);
        m.options_template(400, &[f(302, 2)], &[f(305, 4), f(306, 4)]);
        m.end_set();
        // Selector 3: take 1, skip 99 → 1 in 100 (RFC 5477 §8.2.2 systematic count-based).
        m.begin_set(400);
        m.record(&[0, 3, 0, 0, 0, 1, 0, 0, 0, 99]);
        m.end_set();
        template(m, true, 256, &data_t);
        data(m, 256, &[[simple(1, 3, 1), vec![0, 3]].concat()]);
    });
    let (recs, r) = run(&mut d, EXP, &p);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        (recs[0].sampling_interval, recs[0].bytes, recs[0].raw_bytes),
        (100, 300, 3)
    );
}

#[test]
fn ipfix_sampler_random_interval_and_sampling_interval_in_data() {
    let mut d = Decoder::default();
    let p = ipfix(0, |m| {
        m.begin_set(set::IPFIX_OPTIONS_TEMPLATE);
        m.options_template(400, &[f(48, 1)], &[f(50, 4)]);
        m.end_set();
        m.begin_set(400);
        m.record(&[1, 0, 0, 0, 50]);
        m.end_set();
        // Data records that carry samplingInterval (34) themselves use it.
        template(
            m,
            true,
            256,
            &[f(8, 4), f(12, 4), f(1, 4), f(2, 4), f(34, 4)],
        );
        template(m, true, 257, &SIMPLE);
        data(
            m,
            256,
            &[[simple(1, 1, 1), 7u32.to_be_bytes().to_vec()].concat()],
        );
        data(m, 257, &[simple(1, 1, 1)]);
    });
    let (recs, _) = run(&mut d, EXP, &p);
    let got: Vec<_> = recs.iter().map(|r| r.sampling_interval).collect();
    // 257 names no sampler, and the domain has exactly one: it applies.
    assert_eq!(got, vec![7, 50]);
}

#[test]
fn v5_header_sampling() {
    let mut rec = vec![0u8; 48];
    rec[0..4].copy_from_slice(&[10, 0, 0, 1]);
    rec[16..20].copy_from_slice(&2u32.to_be_bytes());
    rec[20..24].copy_from_slice(&100u32.to_be_bytes());
    let mut p = vec![0, 5, 0, 1, 0, 0, 0x27, 0x10];
    p.extend_from_slice(&SECS.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&[3, 4, 0x80, 10]); // engine 3/4, mode 2, interval 10
    p.extend_from_slice(&rec);
    let mut d = Decoder::default();
    let (recs, r) = run(&mut d, EXP, &p);
    assert!(r.is_ok());
    assert_eq!(recs[0].observation_domain_id, 0x0304);
    assert_eq!(
        (recs[0].sampling_interval, recs[0].bytes, recs[0].packets),
        (10, 1000, 20)
    );
    assert_eq!((recs[0].raw_bytes, recs[0].raw_packets), (100, 2));
}

#[test]
fn options_template_and_data_in_one_packet_either_order() {
    for data_first in [false, true] {
        let mut d = Decoder::default();
        let p = v9(0, |m| {
            if data_first {
                v9_sampling_options(m, 260, 1, 10);
                v9_sampler_template(m, 260);
            } else {
                v9_sampler_template(m, 260);
                v9_sampling_options(m, 260, 1, 10);
            }
        });
        let (_, r) = run(&mut d, EXP, &p);
        assert!(r.is_ok());
        assert_eq!(
            d.sampling_interval(EXP, 0, Some(1)),
            Some(10),
            "data_first={data_first}"
        );
        assert_eq!(d.counters().pending_replayed, u64::from(data_first));
    }
}

#[test]
fn template_and_data_in_one_packet_either_order() {
    for data_first in [false, true] {
        let mut d = Decoder::default();
        let p = ipfix(0, |m| {
            if data_first {
                data(m, 256, &[simple(1, 10, 1), simple(2, 20, 2)]);
                template(m, true, 256, &SIMPLE);
            } else {
                template(m, true, 256, &SIMPLE);
                data(m, 256, &[simple(1, 10, 1), simple(2, 20, 2)]);
            }
        });
        let (recs, r) = run(&mut d, EXP, &p);
        let s = r.unwrap();
        assert_eq!(recs.len(), 2, "data_first={data_first}");
        assert_eq!(s.records, 2);
        assert_eq!(s.replayed, u32::from(data_first));
        assert_eq!(d.cache_usage().pending_bytes, 0);
    }
}

#[test]
fn ipfix_withdrawal_one_and_all() {
    let mut d = Decoder::default();
    let _ = run(
        &mut d,
        EXP,
        &ipfix(0, |m| {
            m.begin_set(set::IPFIX_TEMPLATE);
            m.template(256, &SIMPLE);
            m.template(257, &SIMPLE);
            m.template(258, &SIMPLE);
            m.end_set();
            m.begin_set(set::IPFIX_OPTIONS_TEMPLATE);
            m.options_template(400, &[f(302, 2)], &[f(305, 4)]);
            m.end_set();
        }),
    );
    assert_eq!(d.cache_usage().templates, 4);
    // Withdraw 256 only (field count 0).
    let _ = run(&mut d, EXP, &ipfix(0, |m| template(m, true, 256, &[])));
    assert_eq!(d.cache_usage().templates, 3);
    let (recs, _) = run(&mut d, EXP, &ipfix(0, |m| data(m, 256, &[simple(1, 1, 1)])));
    assert!(recs.is_empty());
    assert_counted!(d, EXP, missing_template, 1);
    // Withdraw all data templates (id 2): the options template stays.
    let _ = run(
        &mut d,
        EXP,
        &ipfix(0, |m| template(m, true, set::IPFIX_TEMPLATE, &[])),
    );
    assert_eq!(d.cache_usage().templates, 1);
    // Withdraw all options templates (id 3 in set 3).
    let _ = run(
        &mut d,
        EXP,
        &ipfix(0, |m| {
            m.begin_set(set::IPFIX_OPTIONS_TEMPLATE);
            m.template(set::IPFIX_OPTIONS_TEMPLATE, &[]);
            m.end_set();
        }),
    );
    assert_eq!(d.cache_usage().templates, 0);
    assert_counted!(d, EXP, template_withdrawals, 3);
}

#[test]
fn template_ttl_expiry() {
    let cfg = DecoderConfig {
        template_ttl_ms: 10_000,
        ..DecoderConfig::default()
    };
    let mut d = Decoder::new(cfg);
    let _ = run_at(
        &mut d,
        EXP,
        NOW,
        &ipfix(0, |m| template(m, true, 256, &SIMPLE)),
    );
    let (recs, _) = run_at(
        &mut d,
        EXP,
        NOW + 9_000,
        &ipfix(0, |m| data(m, 256, &[simple(1, 1, 1)])),
    );
    assert_eq!(recs.len(), 1);
    // Past the TTL without refresh: dropped at the next sweep, data waits again.
    let (recs, _) = run_at(
        &mut d,
        EXP,
        NOW + 20_000,
        &ipfix(0, |m| data(m, 256, &[simple(1, 1, 1)])),
    );
    assert!(recs.is_empty());
    assert_counted!(d, EXP, templates_expired, 1);
    assert_eq!(d.cache_usage().templates, 0);
}

#[test]
fn variable_length_and_enterprise_fields() {
    let mut d = Decoder::default();
    let fields = [
        f(8, 4),
        FieldSpec {
            id: 1,
            length: VARIABLE_LENGTH,
            enterprise: 29305,
        }, // enterprise, var
        f(82, VARIABLE_LENGTH), // interfaceName
        FieldSpec {
            id: 12,
            length: 4,
            enterprise: 9,
        }, // NOT an IPv4 address
        f(1, 4),
    ];
    let rec_short = [
        &[10, 0, 0, 1][..],
        &[2, 0xaa, 0xbb],
        &[3, b'e', b't', b'h'],
        &[1, 1, 1, 1],
        &500u32.to_be_bytes(),
    ]
    .concat();
    let long = vec![b'x'; 300];
    let rec_long = [
        &[10, 0, 0, 2][..],
        &[0],
        &[255, 1, 44],
        &long,
        &[1, 1, 1, 1],
        &7u32.to_be_bytes(),
    ]
    .concat();
    let p = ipfix(0, |m| {
        template(m, true, 256, &fields);
        data(m, 256, &[rec_short, rec_long]);
    });
    let (recs, r) = run(&mut d, EXP, &p);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].src_addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(recs[0].bytes, 500);
    assert_eq!(recs[0].dst_addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(
        (recs[1].src_addr, recs[1].bytes),
        (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 7)
    );
}

#[test]
fn unknown_elements_skipped_and_set_padding() {
    let mut d = Decoder::default();
    let fields = [f(8, 4), f(999, 3), f(12, 4), f(1, 4), f(5000, 1)];
    let rec = [
        &[10, 0, 0, 1][..],
        &[9, 9, 9],
        &[10, 0, 0, 2],
        &42u32.to_be_bytes(),
        &[9],
    ]
    .concat();
    // Two 16-byte records, then 10 zero bytes that the builder pads to 12: padding
    // shorter than a record (RFC 7011 §3.3.1).
    let p = v9(0, |m| {
        template(m, false, 256, &fields);
        m.begin_set(256);
        m.record(&rec);
        m.record(&rec);
        m.raw(&[0; 10]);
        m.end_set();
    });
    let (recs, r) = run(&mut d, EXP, &p);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].dst_addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(recs[1].bytes, 42);
}

#[test]
fn data_before_template_waits_and_replays_later() {
    let mut d = Decoder::default();
    let (recs, r) = run(&mut d, EXP, &v9(3, |m| data(m, 256, &[simple(1, 10, 1)])));
    assert!(recs.is_empty());
    assert_eq!(r.unwrap().pending, 1);
    assert_counted!(d, EXP, pending_buffered, 1);
    // The template for another domain does not release it.
    let _ = run(&mut d, EXP, &v9(4, |m| template(m, false, 256, &SIMPLE)));
    assert_eq!(d.cache_usage().pending_sets, 1);
    let (recs, r) = run(&mut d, EXP, &v9(3, |m| template(m, false, 256, &SIMPLE)));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].observation_domain_id, 3);
    assert_eq!(r.unwrap().replayed, 1);
    assert_counted!(d, EXP, pending_replayed, 1);
    assert_eq!(d.cache_usage().pending_bytes, 0);
}

#[test]
fn pending_data_expires_and_is_counted() {
    let cfg = DecoderConfig {
        pending_timeout_ms: 5_000,
        ..DecoderConfig::default()
    };
    let mut d = Decoder::new(cfg);
    let _ = run_at(
        &mut d,
        EXP,
        NOW,
        &v9(0, |m| data(m, 256, &[simple(1, 10, 1)])),
    );
    let _ = run_at(&mut d, EXP, NOW + 10_000, &v9(0, |_| {}));
    assert_counted!(d, EXP, pending_expired, 1);
    let (recs, _) = run_at(
        &mut d,
        EXP,
        NOW + 10_000,
        &v9(0, |m| template(m, false, 256, &SIMPLE)),
    );
    assert!(recs.is_empty());
    assert_eq!(d.cache_usage().pending_bytes, 0);
}

#[test]
fn pending_overflow_per_domain_and_total() {
    let cfg = DecoderConfig {
        max_pending_bytes_per_domain: 40,
        max_pending_bytes_total: 60,
        ..DecoderConfig::default()
    };
    let mut d = Decoder::new(cfg);
    let p = |dom| v9(dom, |m| data(m, 256, &[simple(1, 10, 1)])); // 16-byte set body
    for _ in 0..3 {
        let _ = run(&mut d, EXP, &p(1));
    }
    assert_counted!(d, EXP, pending_overflow, 1); // 16 + 16 fit in 40, the third does not
    let _ = run(&mut d, EXP, &p(2));
    let (_, r) = run(&mut d, EXP, &p(2)); // total would be 64 > 60
    assert_eq!(r, Err(DecodeError::PendingOverflow { template_id: 256 }));
    assert_counted!(d, EXP, pending_overflow, 2);
    assert_eq!(d.cache_usage().pending_bytes, 48);
}

#[test]
fn snapshot_round_trip_keeps_templates_and_sampling() {
    let mut d = Decoder::default();
    let with_sampler = [f(8, 4), f(12, 4), f(1, 4), f(2, 4), f(48, 1)];
    let _ = run(
        &mut d,
        EXP,
        &v9(7, |m| {
            v9_sampler_template(m, 260);
            template(m, false, 256, &with_sampler);
            v9_sampling_options(m, 260, 1, 100);
        }),
    );
    let _ = run(
        &mut d,
        EXP2,
        &ipfix(1, |m| {
            template(m, true, 300, &[f(8, 4), f(82, VARIABLE_LENGTH), f(1, 4)]);
        }),
    );
    let mut buf = Vec::new();
    d.save_snapshot(&mut buf).unwrap();

    let mut restarted = Decoder::default();
    let loaded = restarted.load_snapshot(&buf[..]).unwrap();
    assert_eq!(loaded.templates, 3);
    assert_eq!(loaded.rejected, 0);
    let (recs, r) = run(
        &mut restarted,
        EXP,
        &v9(7, |m| data(m, 256, &[[simple(1, 10, 1), vec![1]].concat()])),
    );
    assert!(r.is_ok());
    assert_eq!((recs[0].sampling_interval, recs[0].bytes), (100, 1000));
    let (recs, _) = run(
        &mut restarted,
        EXP2,
        &ipfix(1, |m| {
            data(m, 300, &[vec![10, 0, 0, 9, 1, b'a', 0, 0, 0, 5]]);
        }),
    );
    assert_eq!(recs[0].bytes, 5);

    // Another format or version is refused.
    let bad = String::from_utf8(buf)
        .unwrap()
        .replace("\"version\":1", "\"version\":99");
    assert!(matches!(
        Decoder::default().load_snapshot(bad.as_bytes()),
        Err(SnapshotError::Unsupported { .. })
    ));
    assert!(matches!(
        Decoder::default().load_snapshot(&b"{"[..]),
        Err(SnapshotError::Json(_))
    ));
}

#[test]
fn per_exporter_counters_are_separate() {
    let mut d = Decoder::default();
    let _ = run(&mut d, EXP, &[0, 7, 0, 0]);
    let _ = run(&mut d, EXP2, &ipfix(0, |m| template(m, true, 256, &SIMPLE)));
    assert_eq!(d.exporter_counters(EXP).unwrap().bad_version, 1);
    assert_eq!(d.exporter_counters(EXP2).unwrap().bad_version, 0);
    assert_eq!(d.exporter_counters(EXP2).unwrap().templates, 1);
    assert_eq!(d.counters().packets, 2);
    let mut merged = DecodeCounters::default();
    for (_, c) in d.exporters() {
        merged.merge(c);
    }
    assert_eq!(&merged, d.counters());
}

#[test]
fn limits_exporters_domains_samplers_fields() {
    let cfg = DecoderConfig {
        max_exporters: 1,
        max_domains_per_exporter: 1,
        max_samplers_per_domain: 1,
        max_fields_per_template: 4,
        ..DecoderConfig::default()
    };
    let mut d = Decoder::new(cfg);
    let _ = run(&mut d, EXP, &v9(0, |m| template(m, false, 256, &SIMPLE)));
    let (_, r) = run(&mut d, EXP2, &v9(0, |_| {}));
    assert_eq!(r, Err(DecodeError::ExporterLimit));
    assert_eq!(d.counters().exporter_limit, 1);
    let (_, r) = run(&mut d, EXP, &v9(1, |m| template(m, false, 256, &SIMPLE)));
    assert_eq!(
        r,
        Err(DecodeError::DomainLimit {
            observation_domain_id: 1
        })
    );
    assert_counted!(d, EXP, domain_limit, 1);
    let (_, r) = run(
        &mut d,
        EXP,
        &v9(0, |m| template(m, false, 257, &[f(8, 4); 5])),
    );
    assert_eq!(
        r,
        Err(DecodeError::TemplateTooManyFields {
            template_id: 257,
            field_count: 5
        })
    );
    assert_counted!(d, EXP, template_too_many_fields, 1);
    let (_, r) = run(
        &mut d,
        EXP,
        &v9(0, |m| {
            v9_sampler_template(m, 260);
            v9_sampling_options(m, 260, 1, 10);
            v9_sampling_options(m, 260, 2, 20);
        }),
    );
    assert_eq!(r, Err(DecodeError::SamplerLimit));
    assert_counted!(d, EXP, sampler_limit, 1);
}

// ---------------------------------------------------------------- times

#[test]
fn v9_times_from_sysuptime_including_wrap() {
    let mut d = Decoder::default();
    let fields = [f(8, 4), f(22, 4), f(21, 4)];
    // sysUpTime 5_000 ms; first switched 4_294_966_296 (1 s before the wrap) → 6 s ago.
    let rec = [
        &[10, 0, 0, 1][..],
        &4_294_966_296u32.to_be_bytes(),
        &4_000u32.to_be_bytes(),
    ]
    .concat();
    let mut m = MessageBuilder::v9(5_000, SECS, 0, 0);
    template(&mut m, false, 256, &fields);
    data(&mut m, 256, &[rec]);
    let (recs, _) = run(&mut d, EXP, &m.finish());
    let export = u64::from(SECS) * 1000;
    assert_eq!(recs[0].start_ms, export - 6_000);
    assert_eq!(recs[0].end_ms, export - 1_000);
}

/// Template fields, one data record, expected (start, end).
type TimeCase = (Vec<FieldSpec>, Vec<u8>, (u64, u64));

#[test]
fn ipfix_time_variants() {
    let export = u64::from(SECS) * 1000;
    let ntp = ie::unix_ms_to_ntp(export - 1234);
    let cases: Vec<TimeCase> = vec![
        (
            vec![f(150, 4), f(151, 4)],
            [(SECS - 2).to_be_bytes(), (SECS - 1).to_be_bytes()].concat(),
            (export - 2000, export - 1000),
        ),
        (
            vec![f(152, 8), f(153, 8)],
            [(export - 5).to_be_bytes(), export.to_be_bytes()].concat(),
            (export - 5, export),
        ),
        (
            vec![f(154, 8), f(155, 8)],
            [ntp.to_be_bytes(), ntp.to_be_bytes()].concat(),
            (export - 1234, export - 1234),
        ),
        (
            vec![f(156, 8), f(157, 8)],
            [ntp.to_be_bytes(), ntp.to_be_bytes()].concat(),
            (export - 1234, export - 1234),
        ),
        (
            vec![f(158, 4), f(159, 4)],
            [3_000_000u32.to_be_bytes(), 1_000u32.to_be_bytes()].concat(),
            (export - 3000, export - 1),
        ),
        // sysUpTime with systemInitTimeMilliseconds in the record itself.
        (
            vec![f(22, 4), f(21, 4), f(160, 8)],
            [
                &100u32.to_be_bytes()[..],
                &200u32.to_be_bytes(),
                &(export - 10_000).to_be_bytes(),
            ]
            .concat(),
            (export - 9_900, export - 9_800),
        ),
    ];
    for (i, (fields, rec, want)) in cases.into_iter().enumerate() {
        let mut d = Decoder::default();
        let p = ipfix(0, |m| {
            template(m, true, 256, &fields);
            data(m, 256, &[rec]);
        });
        let (recs, r) = run(&mut d, EXP, &p);
        assert!(r.is_ok(), "case {i}: {r:?}");
        assert_eq!((recs[0].start_ms, recs[0].end_ms), want, "case {i}");
    }
}

#[test]
fn ipfix_sysuptime_with_init_from_options_or_fallback() {
    let export = u64::from(SECS) * 1000;
    let mut d = Decoder::default();
    // No systemInitTimeMilliseconds known yet: export time, counted.
    let p = ipfix(0, |m| {
        template(m, true, 256, &[f(22, 4), f(21, 4)]);
        data(
            m,
            256,
            &[[100u32.to_be_bytes(), 200u32.to_be_bytes()].concat()],
        );
    });
    let (recs, _) = run(&mut d, EXP, &p);
    assert_eq!((recs[0].start_ms, recs[0].end_ms), (export, export));
    assert_counted!(d, EXP, uptime_without_init, 1);
    // Options data with 160 (scope observationDomainId 149).
    let p = ipfix(0, |m| {
        m.begin_set(set::IPFIX_OPTIONS_TEMPLATE);
        m.options_template(400, &[f(149, 4)], &[f(160, 8)]);
        m.end_set();
        m.begin_set(400);
        m.record(&[&0u32.to_be_bytes()[..], &(export - 60_000).to_be_bytes()].concat());
        m.end_set();
        data(
            m,
            256,
            &[[100u32.to_be_bytes(), 200u32.to_be_bytes()].concat()],
        );
    });
    let (recs, _) = run(&mut d, EXP, &p);
    assert_eq!(
        (recs[0].start_ms, recs[0].end_ms),
        (export - 59_900, export - 59_800)
    );
}

#[test]
fn icmp_type_code_variants() {
    let mut d = Decoder::default();
    let p = ipfix(0, |m| {
        template(m, true, 256, &[f(27, 16), f(28, 16), f(4, 1), f(139, 2)]);
        template(
            m,
            true,
            257,
            &[f(8, 4), f(12, 4), f(4, 1), f(176, 1), f(177, 1)],
        );
        let v6 = [
            &Ipv6Addr::LOCALHOST.octets()[..],
            &Ipv6Addr::LOCALHOST.octets(),
            &[58],
            &[128, 0],
        ]
        .concat();
        data(m, 256, &[v6]);
        data(m, 257, &[vec![10, 0, 0, 1, 10, 0, 0, 2, 1, 3, 1]]);
    });
    let (recs, _) = run(&mut d, EXP, &p);
    assert_eq!(recs[0].icmp_type_code, 0x8000);
    assert_eq!(recs[0].src_addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(recs[1].icmp_type_code, 0x0301);
}

// ---------------------------------------------------------------- hostile input

#[test]
fn hostile_truncated_header_and_wrong_versions() {
    let mut d = Decoder::default();
    for p in [
        &[][..],
        &[0][..],
        &[0, 9, 0, 1][..],
        &[0, 10, 0, 16, 0][..],
        &[0, 5, 0, 0][..],
    ] {
        assert!(matches!(
            run(&mut d, EXP, p).1,
            Err(DecodeError::TruncatedHeader { .. })
        ));
    }
    assert_counted!(d, EXP, truncated_header, 5);
    for v in [0u16, 1, 4, 6, 8, 11, 0xffff] {
        let mut p = v9(0, |_| {});
        p[0..2].copy_from_slice(&v.to_be_bytes());
        assert_eq!(
            run(&mut d, EXP, &p).1,
            Err(DecodeError::BadVersion { version: v })
        );
    }
    assert_counted!(d, EXP, bad_version, 7);
    // IPFIX length longer than the datagram, and shorter than the header.
    let mut p = ipfix(0, |m| template(m, true, 256, &SIMPLE));
    p[3] = p[3].wrapping_add(1);
    assert!(matches!(
        run(&mut d, EXP, &p).1,
        Err(DecodeError::MessageLength { .. })
    ));
    p[2..4].copy_from_slice(&8u16.to_be_bytes());
    assert!(matches!(
        run(&mut d, EXP, &p).1,
        Err(DecodeError::MessageLength { .. })
    ));
    assert_counted!(d, EXP, message_length, 2);
}

#[test]
fn hostile_truncated_sets() {
    let mut d = Decoder::default();
    let full = v9(0, |m| {
        template(m, false, 256, &SIMPLE);
        data(m, 256, &[simple(1, 1, 1), simple(2, 2, 2)]);
    });
    // Cut the datagram inside the data set: the template set still decodes.
    let (recs, r) = run(&mut d, EXP, &full[..full.len() - 5]);
    assert!(recs.is_empty());
    assert!(
        matches!(r, Err(DecodeError::TruncatedSet { set_id: 256, .. })),
        "{r:?}"
    );
    assert_eq!(d.cache_usage().templates, 1);
    // Cut inside a set header.
    let only_template = v9(0, |m| template(m, false, 256, &SIMPLE));
    let mut cut = only_template.clone();
    cut.extend_from_slice(&[1, 0]);
    assert!(matches!(
        run(&mut d, EXP, &cut).1,
        Err(DecodeError::TruncatedSet { set_id: 0, .. })
    ));
    assert_counted!(d, EXP, truncated_set, 2);
    // v5 count past the end: present records are decoded, the shortfall counted.
    let mut p = vec![0, 5, 0, 3];
    p.extend_from_slice(&[0; 20]);
    p.extend_from_slice(&[0; 48 * 2 + 10]);
    let (recs, r) = run(&mut d, EXP, &p);
    assert_eq!(recs.len(), 2);
    assert_eq!(
        r,
        Err(DecodeError::TruncatedRecords {
            count: 3,
            present: 2
        })
    );
    assert_counted!(d, EXP, truncated_records, 1);
}

#[test]
fn hostile_set_length_shorter_than_header() {
    let mut d = Decoder::default();
    for len in [0u16, 1, 3] {
        let mut m = MessageBuilder::ipfix(SECS, 0, 0);
        m.raw(&[1, 0]);
        m.raw(&len.to_be_bytes());
        m.raw(&[0; 8]);
        let (_, r) = run(&mut d, EXP, &m.finish());
        assert_eq!(
            r,
            Err(DecodeError::BadSetLength {
                set_id: 256,
                length: len
            })
        );
    }
    assert_counted!(d, EXP, bad_set_length, 3);
}

#[test]
fn hostile_template_with_65535_fields() {
    // Declared 65,535 fields with a handful present: refused before any allocation.
    let mut m = MessageBuilder::v9(0, SECS, 0, 0);
    m.begin_set(set::V9_TEMPLATE);
    m.raw(&[1, 0, 0xff, 0xff]);
    m.raw(&[0, 8, 0, 4, 0, 12, 0, 4]);
    m.end_set();
    let p = m.finish();
    let mut d = Decoder::default();
    let (_, r) = run(&mut d, EXP, &p);
    assert_eq!(
        r,
        Err(DecodeError::TemplateTooManyFields {
            template_id: 256,
            field_count: 65535
        })
    );
    assert_counted!(d, EXP, template_too_many_fields, 1);
    // With the limit lifted to the maximum, the fields are simply not there.
    let mut d = Decoder::new(DecoderConfig {
        max_fields_per_template: u16::MAX,
        ..DecoderConfig::default()
    });
    let (_, r) = run(&mut d, EXP, &p);
    assert_eq!(r, Err(DecodeError::TemplateTruncated { template_id: 256 }));
    assert_counted!(d, EXP, template_truncated, 1);
    // A real 65,535-field template cannot fit a datagram; one of 16,000 fields in a
    // (locally built) 64 KB message is accepted only up to the limit.
    let mut m = MessageBuilder::ipfix(SECS, 0, 0);
    m.begin_set(set::IPFIX_TEMPLATE);
    m.template(256, &vec![f(999, 1); 16_000]);
    m.end_set();
    let mut d = Decoder::default();
    assert!(matches!(
        run(&mut d, EXP, &m.finish()).1,
        Err(DecodeError::TemplateTooManyFields { .. })
    ));
    assert_eq!(d.cache_usage().templates, 0);
}

#[test]
fn hostile_zero_length_fields() {
    let mut d = Decoder::default();
    // All fields zero-length: rejected (records would be 0 bytes: an endless loop).
    let (_, r) = run(
        &mut d,
        EXP,
        &ipfix(0, |m| template(m, true, 256, &[f(8, 0), f(1, 0)])),
    );
    assert_eq!(
        r,
        Err(DecodeError::ZeroLengthField {
            template_id: 256,
            field_id: 8
        })
    );
    assert_eq!(d.cache_usage().templates, 0);
    // One zero-length field among others: ignored, the template works, still counted.
    let p = ipfix(0, |m| {
        template(m, true, 257, &[f(8, 4), f(12, 0), f(1, 4)]);
        data(m, 257, &[vec![10, 0, 0, 1, 0, 0, 0, 9]]);
    });
    let (recs, r) = run(&mut d, EXP, &p);
    assert_eq!(
        r,
        Err(DecodeError::ZeroLengthField {
            template_id: 257,
            field_id: 12
        })
    );
    assert_eq!(recs[0].bytes, 9);
    assert_counted!(d, EXP, zero_length_field, 2);
    // A zero-length data set body and an empty data set are harmless.
    let (recs, r) = run(&mut d, EXP, &ipfix(0, |m| m.begin_set(257)));
    assert!(recs.is_empty() && r.is_ok());
}

#[test]
fn hostile_field_length_past_end() {
    let mut d = Decoder::default();
    // Variable-length field claiming 255+u16 = 60,000 bytes.
    let p = ipfix(0, |m| {
        template(m, true, 256, &[f(8, 4), f(82, VARIABLE_LENGTH)]);
        data(
            m,
            256,
            &[
                vec![10, 0, 0, 1, 1, b'a'],
                vec![10, 0, 0, 2, 255, 0xea, 0x60, 1, 2],
            ],
        );
    });
    let (recs, r) = run(&mut d, EXP, &p);
    assert_eq!(recs.len(), 1);
    assert_eq!(r, Err(DecodeError::FieldPastEnd { template_id: 256 }));
    // A fixed template whose record is longer than the data set: not padding (non-zero).
    let p = ipfix(0, |m| {
        template(m, true, 257, &[f(8, 4), f(999, 1000)]);
        data(m, 257, &[vec![10, 0, 0, 1, 5, 5, 5, 5]]);
    });
    let (recs, r) = run(&mut d, EXP, &p);
    assert!(recs.is_empty());
    assert_eq!(r, Err(DecodeError::FieldPastEnd { template_id: 257 }));
    assert_counted!(d, EXP, field_past_end, 2);
}

#[test]
fn hostile_flood_of_100000_templates_stays_within_cap() {
    let cfg = DecoderConfig {
        max_templates_per_exporter: 1000,
        max_template_bytes_per_exporter: 256 << 10,
        ..DecoderConfig::default()
    };
    let mut d = Decoder::new(cfg.clone());
    let mut sent = 0u32;
    // 100,000 distinct (domain, template id) pairs, 50 per packet.
    let mut domain = 0u32;
    while sent < 100_000 {
        let p = ipfix(domain, |m| {
            m.begin_set(set::IPFIX_TEMPLATE);
            for i in 0..50u16 {
                m.template(256 + i, &SIMPLE);
            }
            m.end_set();
        });
        let _ = run(&mut d, EXP, &p);
        sent += 50;
        domain = (domain + 1) % 200;
        let u = d.cache_usage();
        assert!(u.templates <= cfg.max_templates_per_exporter, "{u:?}");
        assert!(
            u.template_bytes <= cfg.max_template_bytes_per_exporter,
            "{u:?}"
        );
    }
    let u = d.cache_usage();
    assert_eq!(d.counters().templates, 100_000);
    assert_counted!(d, EXP, templates_evicted, 100_000 - u.templates as u64);
    assert!(d.counters().template_limit > 0);
    assert_eq!(
        d.exporter_counters(EXP).unwrap().template_limit,
        d.counters().template_limit
    );
    // The newest templates survive: the last packet's data decodes.
    let last = (domain + 199) % 200;
    let (recs, _) = run(
        &mut d,
        EXP,
        &ipfix(last, |m| data(m, 300, &[simple(1, 1, 1)])),
    );
    assert_eq!(recs.len(), 1);
}

#[test]
fn hostile_invalid_template_ids_and_reserved_sets() {
    let mut d = Decoder::default();
    let (_, r) = run(&mut d, EXP, &ipfix(0, |m| template(m, true, 255, &SIMPLE)));
    assert_eq!(r, Err(DecodeError::InvalidTemplateId { template_id: 255 }));
    assert_counted!(d, EXP, invalid_template_id, 1);
    let (_, r) = run(
        &mut d,
        EXP,
        &ipfix(0, |m| data(m, 100, &[vec![1, 2, 3, 4]])),
    );
    assert!(r.is_ok());
    assert_counted!(d, EXP, unknown_set_id, 1);
}

#[test]
fn never_panics_on_mutations_of_valid_packets() {
    // A cheap deterministic stand-in for the fuzzers: flip, cut and splice bytes.
    let mut enc = encode::Encoder::new(encode::EncoderConfig::new(encode::Format::Ipfix));
    let rec = FlowRecord {
        src_addr: Ipv4Addr::new(1, 2, 3, 4).into(),
        sampling_interval: 10,
        ..FlowRecord::default()
    };
    let mut packets = Vec::new();
    enc.encode(&[rec; 5], NOW, &mut packets);
    let mut enc9 = encode::Encoder::new(encode::EncoderConfig::new(encode::Format::V9));
    enc9.encode(&[rec; 5], NOW, &mut packets);
    let mut d = Decoder::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20_000usize {
        let mut p = packets[round % packets.len()].clone();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = usize::try_from(seed % p.len() as u64).unwrap();
        p[at] = seed.to_be_bytes()[3];
        if round % 3 == 0 {
            p.truncate(at.max(1));
        }
        let _ = run(&mut d, EXP, &p);
    }
    assert!(d.counters().errors() > 0);
}

// ---------------------------------------------------------------- layer-2 sections and quirks

#[test]
fn zero_addresses_do_not_override_and_icmp_from_dst_port() {
    let mut d = Decoder::default();
    // Both v4 and v6 fields, the unused pair zeroed (seen from real exporters).
    let fields = [
        f(8, 4),
        f(27, 16),
        f(12, 4),
        f(28, 16),
        f(4, 1),
        f(7, 2),
        f(11, 2),
    ];
    let rec = [
        &[10, 0, 0, 1][..],
        &[0; 16],
        &[10, 0, 0, 2],
        &[0; 16],
        &[1],
        &[0, 0],
        &[8, 0],
    ]
    .concat();
    let p = ipfix(0, |m| {
        template(m, true, 256, &fields);
        data(m, 256, &[rec]);
    });
    let (recs, _) = run(&mut d, EXP, &p);
    assert_eq!(recs[0].src_addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(recs[0].dst_addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(recs[0].icmp_type_code, 0x0800);
}

#[test]
fn data_link_frame_section_fills_addresses() {
    // Ethernet, one VLAN tag, IPv4/UDP 10.1.1.1:53 → 10.2.2.2:4000, 120-byte frame.
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&[0x81, 0x00, 0, 10, 0x08, 0x00]);
    frame.extend_from_slice(&[
        0x45, 0, 0, 100, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 1, 1, 10, 2, 2, 2,
    ]);
    frame.extend_from_slice(&[0, 53, 0x0f, 0xa0]);
    // Same packet carried over MPLS (two labels) with a pseudowire control word.
    let mut mpls = vec![0u8; 12];
    mpls.extend_from_slice(&[0x88, 0x47, 0, 1, 0, 64, 0, 2, 1, 64, 0, 0, 0, 0]);
    mpls.extend_from_slice(&frame);
    let fields = [f(10, 4), f(312, 2), f(315, VARIABLE_LENGTH)];
    for section in [frame, mpls] {
        let mut d = Decoder::default();
        let len = u8::try_from(section.len()).unwrap();
        let rec = [&[0, 0, 0, 3][..], &120u16.to_be_bytes(), &[len], &section].concat();
        let p = ipfix(0, |m| {
            template(m, true, 256, &fields);
            data(m, 256, &[rec]);
        });
        let (recs, r) = run(&mut d, EXP, &p);
        assert!(r.is_ok(), "{r:?}");
        let r = recs[0];
        assert_eq!(
            (r.src_addr, r.dst_addr),
            (
                IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1)),
                IpAddr::V4(Ipv4Addr::new(10, 2, 2, 2))
            )
        );
        assert_eq!((r.protocol, r.src_port, r.dst_port), (17, 53, 4000));
        assert_eq!((r.bytes, r.packets, r.input_interface), (120, 1, 3));
    }
    assert_eq!(ie::parse_frame(&[0; 13]), None);
}

// ---------------------------------------------------------------- conformance vectors

/// UDP payloads of an Ethernet pcap, with source address and capture time.
fn pcap_payloads(path: &std::path::Path) -> Vec<(IpAddr, u64, Vec<u8>)> {
    use pcap_parser::traits::PcapReaderIterator;
    use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};
    let data = std::fs::read(path).unwrap();
    let mut reader = LegacyPcapReader::new(65536, &data[..]).unwrap();
    let mut out = Vec::new();
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                let item = match block {
                    PcapBlockOwned::Legacy(b) => {
                        Some((u64::from(b.ts_sec) * 1000, b.data.to_vec()))
                    }
                    _ => None,
                };
                reader.consume(offset);
                let Some((ts, frame)) = item else { continue };
                let Ok(p) = etherparse::SlicedPacket::from_ethernet(&frame) else {
                    continue;
                };
                let src: IpAddr = match &p.net {
                    Some(etherparse::NetSlice::Ipv4(h)) => h.header().source_addr().into(),
                    Some(etherparse::NetSlice::Ipv6(h)) => h.header().source_addr().into(),
                    _ => continue,
                };
                if let Some(etherparse::TransportSlice::Udp(u)) = &p.transport {
                    out.push((src, ts, u.payload().to_vec()));
                }
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader.refill().unwrap(),
            Err(e) => panic!("{}: {e:?}", path.display()),
        }
    }
    out
}

#[test]
#[expect(clippy::too_many_lines, reason = "a table of expected results")]
fn akvorado_vectors_decode_without_errors() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/akvorado");
    if !dir.is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "conformance vectors missing at {}",
            dir.display()
        );
        eprintln!("skipping: {} not found", dir.display());
        return;
    }
    // (files in order, records, a sampling interval seen, options records)
    let groups: &[(&[&str], usize, u32, u64)] = &[
        (&["netflow-template.pcap", "netflow-data.pcap"], 4, 1, 0),
        (&["netflow-nfv5.pcap"], 29, 1, 0),
        (
            &[
                "netflow-samplingrate-template.pcap",
                "netflow-samplingrate-data.pcap",
            ],
            6,
            2048,
            0,
        ),
        (
            &[
                "netflow-multiplesamplingrates-options-template.pcap",
                "netflow-multiplesamplingrates-options-data.pcap",
                "netflow-multiplesamplingrates-template.pcap",
                "netflow-multiplesamplingrates-data.pcap",
            ],
            12,
            4000,
            2,
        ),
        (
            &["netflow-options-template.pcap", "netflow-options-data.pcap"],
            0,
            1,
            4,
        ),
        (
            &[
                "netflow-ipfixprobe-templates.pcap",
                "netflow-ipfixprobe-data.pcap",
            ],
            4,
            1,
            0,
        ),
        (
            &["netflow-icmp-template.pcap", "netflow-icmp-data.pcap"],
            4,
            1,
            0,
        ),
        (
            &[
                "netflow-juniper-cpid-template.pcap",
                "netflow-juniper-cpid-data.pcap",
            ],
            1,
            1,
            0,
        ),
        (&["netflow-nat.pcap"], 9, 1, 0),
        (&["netflow-physicalinterfaces.pcap"], 8, 1000, 1),
        (&["netflow-data+templates.pcap"], 21, 100, 1),
        (&["netflow-mpls.pcap"], 2, 10, 1),
        (
            &[
                "netflow-ipfix-srv6-template.pcap",
                "netflow-ipfix-srv6-data.pcap",
            ],
            1,
            1,
            0,
        ),
        (
            &[
                "netflow-datalink-template.pcap",
                "netflow-datalink-data.pcap",
            ],
            1,
            1,
            0,
        ),
        (
            &[
                "netflow-ethernet-over-mpls-with-control-word-template.pcap",
                "netflow-ethernet-over-mpls-with-control-word-data.pcap",
            ],
            10,
            1,
            0,
        ),
    ];
    for (files, want, interval, options) in groups {
        let mut d = Decoder::default();
        let mut recs = Vec::new();
        for file in *files {
            for (src, ts, payload) in pcap_payloads(&dir.join(file)) {
                let r = d.decode_into(src, ts, &payload, &mut recs);
                assert!(r.is_ok(), "{file}: {r:?}");
            }
        }
        assert_eq!(recs.len(), *want, "{files:?}");
        assert_eq!(d.counters().errors(), 0, "{files:?}: {:?}", d.counters());
        assert_eq!(d.counters().options_records, *options, "{files:?}");
        if *want > 0 {
            assert!(
                recs.iter().any(|r| r.sampling_interval == *interval),
                "{files:?}"
            );
            assert!(
                recs.iter()
                    .all(|r| !r.src_addr.is_unspecified() || r.protocol == 0),
                "{files:?}"
            );
        }
    }
}
