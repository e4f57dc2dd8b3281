//! Synthetic-stream tests of the four detectors: every attack shape is found with the
//! right entities, the benign shapes give nothing, sampled 1:100 versions still find the
//! attacks (flagged as lower bounds), replays are deterministic, and state stays bounded.

#![allow(
    clippy::too_many_arguments,
    clippy::field_reassign_with_default,
    clippy::similar_names,
    clippy::many_single_char_names,
    reason = "test builders and fixtures"
)]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "statistics over counts, times and bytes: f64/f32 precision is ample and every narrowing cast is of a clamped or rounded value"
)]

use std::net::{IpAddr, Ipv4Addr};

use super::{
    BeaconDetector, Category, DetectConfig, Detector, ExfilDetector, Finding, ScanDetector,
    VolumeDetector, config::AllowRule, config::ExfilConfig, engine,
};
use crate::decode::FlowRecord;

/// 2023-11-14 00:00 UTC.
const DAY0: u64 = 1_699_920_000_000;
const MIN: u64 = 60_000;
const HOUR: u64 = 3_600_000;
const SYN: u8 = 0x02;
const EST: u8 = 0x1b; // SYN|ACK|PSH|FIN

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    #[expect(clippy::cast_precision_loss, reason = "test randomness")]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[expect(clippy::too_many_arguments, reason = "a test record builder")]
fn rec(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
    flags: u8,
    bytes: u64,
    packets: u64,
    start: u64,
    end: u64,
) -> FlowRecord {
    let mut r = FlowRecord {
        src_addr: src,
        dst_addr: dst,
        src_port: sport,
        dst_port: dport,
        protocol: proto,
        tcp_flags: flags,
        start_ms: start,
        end_ms: end.max(start),
        ..FlowRecord::default()
    };
    r.set_counts(bytes, packets, 1);
    r
}

/// Packet sampling 1:`n`: each packet is kept with probability 1/n (binomial thinning);
/// records with no packet kept vanish; counts are scaled back by `n`.
fn sample(records: &[FlowRecord], n: u32, rng: &mut Rng) -> Vec<FlowRecord> {
    let p = 1.0 / f64::from(n);
    records
        .iter()
        .filter_map(|r| {
            let kept = if r.packets > 2000 {
                // Normal approximation for big flows.
                #[expect(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "test"
                )]
                let k = {
                    let mean = r.packets as f64 * p;
                    let sd = (mean * (1.0 - p)).sqrt();
                    let z = (rng.unit() + rng.unit() + rng.unit() - 1.5) * 2.0;
                    (mean + z * sd).round().max(0.0) as u64
                };
                k
            } else {
                (0..r.packets).filter(|_| rng.unit() < p).count() as u64
            };
            (kept > 0).then(|| {
                let mut s = *r;
                let raw_bytes = r.bytes * kept / r.packets.max(1);
                s.set_counts(raw_bytes, kept, n);
                s
            })
        })
        .collect()
}

/// Feeds records in end-time order, advancing the watermark every 5 s of event time.
fn run(det: &mut dyn Detector, records: &[FlowRecord]) -> Vec<Finding> {
    let mut recs = records.to_vec();
    recs.sort_by_key(|r| (r.end_ms, r.start_ms));
    let mut out = Vec::new();
    let mut next = 0;
    for r in &recs {
        if r.end_ms >= next {
            det.advance(r.end_ms, &mut out);
            next = r.end_ms - r.end_ms % 5000 + 5000;
        }
        det.observe(r);
    }
    det.finish(&mut out);
    out
}

fn of(findings: &[Finding], category: Category) -> Vec<&Finding> {
    findings.iter().filter(|f| f.category == category).collect()
}

/// What the report keeps: one finding per key, the highest score.
fn by_key(findings: &[Finding]) -> Vec<Finding> {
    let mut best: std::collections::BTreeMap<String, Finding> = std::collections::BTreeMap::new();
    for f in findings {
        let e = best.entry(f.key()).or_insert_with(|| f.clone());
        if f.score > e.score {
            *e = f.clone();
        }
    }
    best.into_values().collect()
}

fn check_finding(f: &Finding) {
    assert!((0.0..=1.0).contains(&f.score), "{f:?}");
    assert_eq!(f.severity, super::Severity::from_score(f.score));
    assert_eq!(f.mitre, f.category.mitre());
    assert!(f.last_seen_ms >= f.first_seen_ms);
    assert!(
        !f.summary.is_empty() && f.summary.ends_with('.'),
        "{}",
        f.summary
    );
    if f.sampled_lower_bound {
        assert!(f.summary.contains("at least"), "{}", f.summary);
    }
}

// ---------- background ----------

/// Diurnal web browsing: `hosts` internal clients, established TCP to a pool of popular
/// servers and a few rare ones, more by day than by night, plus DNS.
fn browsing(hosts: u8, hours: u64, rng: &mut Rng) -> Vec<FlowRecord> {
    let mut v = Vec::new();
    for h in 0..hours {
        let hour_of_day = h % 24;
        let rate = if (8..18).contains(&hour_of_day) {
            30
        } else {
            4
        };
        for host in 0..hosts {
            let client = v4(10, 0, 1, host + 1);
            for _ in 0..rate {
                let t = DAY0 + h * HOUR + rng.range(0, HOUR);
                let server = if rng.unit() < 0.9 {
                    v4(93, 184, 216, u8::try_from(rng.range(1, 40)).unwrap())
                } else {
                    v4(
                        151,
                        101,
                        u8::try_from(rng.range(1, 250)).unwrap(),
                        u8::try_from(rng.range(1, 250)).unwrap(),
                    )
                };
                let sport = u16::try_from(rng.range(32_768, 60_999)).unwrap();
                let down = rng.range(5_000, 3_000_000);
                let pk = down / 1400 + 3;
                let dur = rng.range(200, 20_000);
                v.push(rec(
                    client,
                    server,
                    sport,
                    443,
                    6,
                    EST,
                    pk * 60,
                    pk,
                    t,
                    t + dur,
                ));
                v.push(rec(
                    server,
                    client,
                    443,
                    sport,
                    6,
                    EST,
                    down,
                    pk,
                    t,
                    t + dur,
                ));
                v.push(rec(client, v4(10, 0, 0, 53), sport, 53, 17, 0, 70, 1, t, t));
            }
        }
    }
    v
}

// ---------- scans ----------

#[test]
fn horizontal_scan_from_outside_is_found_with_trw_early() {
    let mut rng = Rng(1);
    let scanner = ip("203.0.113.66");
    let mut recs = browsing(10, 2, &mut rng);
    for i in 0..200u64 {
        let t = DAY0 + HOUR + i * 100;
        let dst = v4(
            10,
            2,
            u8::try_from(i / 250).unwrap(),
            u8::try_from(i % 250 + 1).unwrap(),
        );
        recs.push(rec(scanner, dst, 40_000, 22, 6, SYN, 60, 1, t, t));
    }
    let findings = run(&mut ScanDetector::new(&DetectConfig::default()), &recs);
    findings.iter().for_each(check_finding);
    let scans = of(&findings, Category::PortScan);
    assert!(
        scans.iter().all(|f| f.entities.src == Some(scanner)),
        "{scans:#?}"
    );
    let h = scans
        .iter()
        .find(|f| f.kind == "horizontal")
        .expect("horizontal");
    assert_eq!(h.entities.ports, vec![22]);
    assert!(!h.sampled_lower_bound);
    let trw = scans.iter().find(|f| f.kind == "trw").expect("trw");
    assert!(trw.first_seen_ms <= DAY0 + HOUR + 500);
}

#[test]
fn vertical_scan_is_found_with_the_target() {
    let (scanner, target) = (ip("10.0.0.7"), ip("10.0.0.9"));
    let recs: Vec<FlowRecord> = (1..=1000u16)
        .map(|p| {
            let t = DAY0 + u64::from(p) * 20;
            rec(scanner, target, 55_555, p, 6, SYN, 44, 1, t, t)
        })
        .collect();
    let findings = run(&mut ScanDetector::new(&DetectConfig::default()), &recs);
    let v = findings
        .iter()
        .find(|f| f.kind == "vertical")
        .expect("vertical");
    assert_eq!(
        (v.entities.src, v.entities.dst),
        (Some(scanner), Some(target))
    );
    assert!(v.entities.ports.len() >= 15);
}

#[test]
fn slow_scan_one_probe_per_30s_is_found_in_the_slow_window() {
    let scanner = ip("198.51.100.99");
    let recs: Vec<FlowRecord> = (0..120u64)
        .map(|i| {
            let t = DAY0 + i * 30_000;
            rec(
                scanner,
                v4(10, 3, 0, u8::try_from(i + 1).unwrap()),
                41_000,
                445,
                6,
                SYN,
                60,
                1,
                t,
                t,
            )
        })
        .collect();
    let findings = run(&mut ScanDetector::new(&DetectConfig::default()), &recs);
    let h = findings
        .iter()
        .find(|f| f.kind == "horizontal")
        .expect("slow horizontal");
    assert_eq!(h.entities.src, Some(scanner));
    assert_eq!(h.evidence["window_ms"], serde_json::json!(3_600_000));
}

#[test]
fn udp_scan_via_icmp_unreachable_and_trw_after_five_failures() {
    let scanner = ip("10.0.0.66");
    let mut recs = Vec::new();
    for i in 0..5u8 {
        let t = DAY0 + u64::from(i) * 1000;
        let target = v4(10, 9, 0, i + 1);
        let mut icmp = rec(target, scanner, 0, 0, 1, 0, 56, 1, t, t);
        icmp.icmp_type_code = 3 << 8 | 3;
        recs.push(icmp);
    }
    let findings = run(&mut ScanDetector::new(&DetectConfig::default()), &recs);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(
        (findings[0].kind.as_str(), findings[0].entities.src),
        ("trw", Some(scanner))
    );
}

#[test]
fn benign_browsing_and_dns_give_no_scan() {
    let mut rng = Rng(2);
    let recs = browsing(30, 26, &mut rng);
    let findings = run(&mut ScanDetector::new(&DetectConfig::default()), &recs);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn sampled_scan_is_found_as_a_lower_bound() {
    let mut rng = Rng(3);
    let scanner = ip("203.0.113.7");
    let mut recs = browsing(10, 2, &mut rng);
    for i in 0..5000u64 {
        let t = DAY0 + HOUR + i * 20;
        let dst = v4(
            10,
            4,
            u8::try_from(i / 250).unwrap(),
            u8::try_from(i % 250 + 1).unwrap(),
        );
        recs.push(rec(scanner, dst, 40_001, 3389, 6, SYN, 60, 1, t, t));
    }
    let recs = sample(&recs, 100, &mut rng);
    let findings = run(&mut ScanDetector::new(&DetectConfig::default()), &recs);
    findings.iter().for_each(check_finding);
    let scans = of(&findings, Category::PortScan);
    assert!(!scans.is_empty());
    assert!(
        scans
            .iter()
            .all(|f| f.entities.src == Some(scanner) && f.sampled_lower_bound),
        "{scans:#?}"
    );
    assert!(scans.iter().any(|f| f.kind == "horizontal"), "{scans:#?}");
}

// ---------- exfiltration ----------

/// A transfer of `total` bytes out over [start, start + dur), exported in records cut
/// every `active_ms`, with small inbound ACK records.
fn upload(
    host: IpAddr,
    peer: IpAddr,
    port: u16,
    total: u64,
    start: u64,
    dur: u64,
    active_ms: u64,
) -> Vec<FlowRecord> {
    let n = dur.div_ceil(active_ms);
    let mut v = Vec::new();
    for i in 0..n {
        let s = start + i * active_ms;
        let e = (s + active_ms).min(start + dur) - 1;
        let b = total / n;
        let flags = if i == 0 { EST } else { 0x18 };
        v.push(rec(host, peer, 50_123, port, 6, flags, b, b / 1400, s, e));
        v.push(rec(
            peer,
            host,
            port,
            50_123,
            6,
            flags,
            b / 1400 * 52 / 2,
            b / 2800,
            s,
            e,
        ));
    }
    v
}

#[test]
fn bulk_exfiltration_split_across_active_timeout_records_is_found() {
    let mut rng = Rng(4);
    let (host, peer) = (ip("10.0.1.5"), ip("198.51.100.7"));
    let mut recs = browsing(10, 8, &mut rng);
    recs.extend(upload(
        host,
        peer,
        443,
        520_000_000,
        DAY0 + 5 * HOUR + 10 * MIN,
        40 * MIN,
        MIN,
    ));
    let findings = run(&mut ExfilDetector::new(&DetectConfig::default()), &recs);
    findings.iter().for_each(check_finding);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!((f.entities.src, f.entities.dst), (Some(host), Some(peer)));
    assert_eq!(f.kind, "bulk");
    assert!(f.evidence["out_bytes"].as_f64().unwrap() >= 5e8);
    assert!(f.evidence["longest_connection_ms"].as_f64().unwrap() >= 39.0 * 60_000.0);
}

/// An upload that an exporter cuts every 10 min (its active timeout), from 25 min before
/// an hour's end to 15 min after it, with other traffic moving the watermark past the
/// hour between its records. Its second window reports the whole connection (40 min
/// long), not the part since the hour: the connection outlives the window's close.
#[test]
fn a_stitched_connection_outlives_the_window_close_between_its_records() {
    let mut rng = Rng(41);
    let (host, peer) = (ip("10.0.1.7"), ip("198.51.100.9"));
    let hour = DAY0 + 5 * HOUR;
    let mut recs = browsing(10, 8, &mut rng);
    // 20 MB before the hour (admitted, under `min_bytes`), 600 MB after it.
    for (i, bytes) in [10_000_000u64, 10_000_000, 300_000_000, 300_000_000]
        .into_iter()
        .enumerate()
    {
        let start = hour - 25 * MIN + i as u64 * 10 * MIN;
        let end = start + 10 * MIN - 1;
        recs.push(rec(
            host,
            peer,
            50_321,
            443,
            6,
            0x18,
            bytes,
            bytes / 1400,
            start,
            end,
        ));
        recs.push(rec(
            peer,
            host,
            443,
            50_321,
            6,
            0x10,
            bytes / 60,
            bytes / 2800,
            start,
            end,
        ));
    }
    let config = DetectConfig {
        exfil: ExfilConfig {
            active_timeout_ms: 10 * MIN,
            ..ExfilConfig::default()
        },
        ..DetectConfig::default()
    };
    let findings = exfil_findings(&config, &recs);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(
        (f.entities.src, f.entities.dst, f.kind.as_str()),
        (Some(host), Some(peer), "bulk")
    );
    assert!(
        f.first_seen_ms >= hour - 5 * MIN,
        "the second window's finding: {f:#?}"
    );
    assert!(
        evidence_f64(f, "longest_connection_ms") >= (40 * MIN - 1) as f64,
        "{f:#?}"
    );

    // An active timeout shorter than the exporter's loses the connection at the hour.
    let short = DetectConfig {
        exfil: ExfilConfig {
            active_timeout_ms: MIN,
            ..ExfilConfig::default()
        },
        ..DetectConfig::default()
    };
    let findings = exfil_findings(&short, &recs);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        evidence_f64(&findings[0], "longest_connection_ms") < (21 * MIN) as f64,
        "{:#?}",
        findings[0]
    );
}

/// A host uploads about 10 MB an hour for six hours, then 300 MB to a new peer; its first
/// record of the next hour arrives before that window is closed and scored. The baseline
/// is the six earlier windows, not the scored one as well.
#[test]
fn the_scored_window_is_not_part_of_its_hosts_baseline() {
    let (host, usual, new) = (ip("10.0.1.8"), ip("198.51.100.20"), ip("203.0.113.21"));
    let upload = |peer, bytes: u64, start: u64| {
        let end = start + 5 * MIN;
        [
            rec(
                host,
                peer,
                50_400,
                443,
                6,
                EST,
                bytes,
                bytes / 1400,
                start,
                end,
            ),
            rec(
                peer,
                host,
                443,
                50_400,
                6,
                EST,
                bytes / 60,
                bytes / 2800,
                start,
                end,
            ),
        ]
    };
    let history = [
        10_000_000u64,
        12_000_000,
        8_000_000,
        11_000_000,
        9_000_000,
        10_000_000,
    ];
    let mut recs = Vec::new();
    for (h, &bytes) in (0u64..).zip(&history) {
        recs.extend(upload(usual, bytes, DAY0 + h * HOUR + 10 * MIN));
    }
    recs.extend(upload(new, 300_000_000, DAY0 + 6 * HOUR + 10 * MIN));
    // The host's next record, ending 30 s into the next hour (within the allowed
    // lateness, 120 s, so before the hour is closed), and
    // another host's, which closes the hour.
    recs.extend(upload(usual, 100_000, DAY0 + 7 * HOUR + 30_000 - 5 * MIN));
    recs.push(rec(
        ip("10.0.1.9"),
        usual,
        50_500,
        443,
        6,
        EST,
        5_000,
        10,
        DAY0 + 7 * HOUR + 5 * MIN,
        DAY0 + 7 * HOUR + 6 * MIN,
    ));
    let findings = exfil_findings(&DetectConfig::default(), &recs);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!((f.entities.src, f.entities.dst), (Some(host), Some(new)));
    assert!(
        (evidence_f64(f, "baseline_windows") - 6.0).abs() < 1e-9,
        "six earlier windows: {f:#?}"
    );
    let hist: Vec<f64> = history
        .iter()
        .map(|&b| f64::from(super::seasonal::log10p(b)))
        .collect();
    let (med, mad) = super::stats::median_mad(&hist, &mut Vec::new());
    let z = super::stats::robust_z((300_000_000f64 + 1.0).log10(), med, mad, 0.05);
    assert!(
        (evidence_f64(f, "robust_z") - z).abs() < 1e-3,
        "z {z}: {f:#?}"
    );
}

#[test]
fn slow_exfiltration_over_hours_is_found() {
    let mut rng = Rng(5);
    let (host, peer) = (ip("10.0.1.6"), ip("203.0.113.200"));
    let mut recs = browsing(10, 12, &mut rng);
    recs.extend(upload(
        host,
        peer,
        8443,
        600_000_000,
        DAY0 + 2 * HOUR,
        8 * HOUR,
        MIN,
    ));
    let findings = run(&mut ExfilDetector::new(&DetectConfig::default()), &recs);
    findings.iter().for_each(check_finding);
    assert!(!findings.is_empty());
    assert!(
        findings
            .iter()
            .all(|f| f.entities.src == Some(host) && f.entities.dst == Some(peer)),
        "{findings:#?}"
    );
    assert!(findings.iter().any(|f| f.kind == "slow"), "{findings:#?}");
}

#[test]
fn allow_listed_nightly_backup_and_browsing_give_no_exfiltration() {
    let mut rng = Rng(6);
    let (host, vault) = (ip("10.0.1.20"), ip("203.0.113.50"));
    let mut recs = browsing(20, 30, &mut rng);
    for night in 0..2 {
        recs.extend(upload(
            host,
            vault,
            22,
            3_000_000_000,
            DAY0 + night * 24 * HOUR + HOUR,
            2 * HOUR,
            MIN,
        ));
    }
    let mut config = DetectConfig::default();
    config.allow.push(AllowRule {
        comment: "nightly backup".into(),
        src: Some("10.0.1.20/32".parse().unwrap()),
        dst: Some("203.0.113.50/32".parse().unwrap()),
        dst_port: Some(22),
        daily_window_utc_minutes: Some([0, 240]),
        ..AllowRule::default()
    });
    // Allow rules apply where records are routed to the detectors.
    let routed = |recs: &[FlowRecord]| {
        let router = engine::Router::new(&config, 1);
        let kept: Vec<FlowRecord> = recs
            .iter()
            .filter(|r| router.route(r).is_some())
            .copied()
            .collect();
        run(&mut ExfilDetector::new(&config), &kept)
    };
    let findings = routed(&recs);
    assert!(findings.is_empty(), "{findings:#?}");
    // The same backup at noon is not covered by the window.
    recs.extend(upload(
        host,
        vault,
        22,
        3_000_000_000,
        DAY0 + 12 * HOUR,
        2 * HOUR,
        MIN,
    ));
    let findings = routed(&recs);
    assert_eq!(
        of(&findings, Category::Exfiltration).len(),
        1,
        "{findings:#?}"
    );
}

#[test]
fn sampled_exfiltration_is_found_as_a_lower_bound() {
    let mut rng = Rng(7);
    let (host, peer) = (ip("10.0.1.8"), ip("198.51.100.70"));
    let mut recs = browsing(10, 6, &mut rng);
    recs.extend(upload(
        host,
        peer,
        443,
        700_000_000,
        DAY0 + 3 * HOUR,
        30 * MIN,
        MIN,
    ));
    let recs = sample(&recs, 100, &mut rng);
    let findings = run(&mut ExfilDetector::new(&DetectConfig::default()), &recs);
    findings.iter().for_each(check_finding);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].entities.dst, Some(peer));
    assert!(findings[0].sampled_lower_bound);
}

// ---------- beaconing ----------

/// A beacon: period `period_ms`, uniform jitter ±`jitter` (fraction), `missing` share
/// of beats dropped, 1–3 packets per connection, over [start, start + dur).
fn beacon(
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    period_ms: u64,
    jitter: f64,
    missing: f64,
    start: u64,
    dur: u64,
    rng: &mut Rng,
) -> Vec<FlowRecord> {
    let mut v = Vec::new();
    let mut t = start;
    while t < start + dur {
        #[expect(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "test"
        )]
        let step = (period_ms as f64 * (1.0 + jitter * (2.0 * rng.unit() - 1.0))) as u64;
        t += step.max(1);
        if rng.unit() < missing {
            continue;
        }
        let pk = rng.range(1, 4);
        let sport = u16::try_from(rng.range(32_768, 60_999)).unwrap();
        v.push(rec(src, dst, sport, port, 6, 0x1a, pk * 120, pk, t, t + 40));
    }
    v
}

fn beacon_findings(records: &[FlowRecord]) -> Vec<Finding> {
    let findings = run(&mut BeaconDetector::new(&DetectConfig::default()), records);
    findings.iter().for_each(check_finding);
    findings
}

#[test]
fn beacons_from_10s_to_1h_with_jitter_and_missing_beats_are_found() {
    for (i, (period, hours)) in [(10_000, 6), (60_000, 6), (300_000, 6), (3_600_000, 12)]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng(10 + i as u64);
        let (src, dst) = (
            v4(10, 0, 2, 10 + u8::try_from(i).unwrap()),
            v4(192, 0, 2, 10 + u8::try_from(i).unwrap()),
        );
        let mut recs = browsing(8, hours, &mut rng);
        recs.extend(beacon(
            src,
            dst,
            443,
            period,
            0.5,
            0.2,
            DAY0,
            hours * HOUR,
            &mut rng,
        ));
        let findings = beacon_findings(&recs);
        assert!(!findings.is_empty(), "period {period}: nothing found");
        assert!(
            findings
                .iter()
                .all(|f| f.entities.src == Some(src) && f.entities.dst == Some(dst)),
            "period {period}: {findings:#?}"
        );
    }
}

#[test]
fn ntp_saas_keepalives_and_browsing_give_no_beacon() {
    let mut rng = Rng(20);
    let mut recs = browsing(20, 8, &mut rng);
    let ntp = ip("162.159.200.1");
    let saas = ip("52.1.2.3");
    for h in 0..40u8 {
        let host = v4(10, 0, 3, h + 1);
        let offset = rng.range(0, 60_000);
        for i in 0..(8 * 3600 / 64) {
            let t = DAY0 + offset + i * 64_000;
            recs.push(rec(host, ntp, 123, 123, 17, 0, 76, 1, t, t));
        }
        let offset = rng.range(0, 30_000);
        for i in 0..(8 * 3600 / 30) {
            let t = DAY0 + offset + i * 30_000;
            recs.push(rec(
                host,
                saas,
                40_000 + u16::from(h),
                443,
                6,
                0x18,
                120,
                2,
                t,
                t + 5,
            ));
        }
    }
    let findings = beacon_findings(&recs);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn sampled_beacon_is_found_as_a_lower_bound() {
    let mut rng = Rng(21);
    let (src, dst) = (ip("10.0.2.50"), ip("192.0.2.99"));
    let mut recs = browsing(8, 6, &mut rng);
    recs.extend(beacon(
        src,
        dst,
        8080,
        10_000,
        0.1,
        0.2,
        DAY0,
        6 * HOUR,
        &mut rng,
    ));
    let recs = sample(&recs, 100, &mut rng);
    let findings = beacon_findings(&recs);
    assert!(!findings.is_empty());
    assert!(
        findings.iter().all(|f| f.entities.src == Some(src)
            && f.entities.dst == Some(dst)
            && f.sampled_lower_bound),
        "{findings:#?}"
    );
}

// ---------- volumetric ----------

/// Steady UDP service traffic to `victim` (about 100 packets/s from 20 clients).
fn service(victim: IpAddr, from: u64, to: u64, rng: &mut Rng) -> Vec<FlowRecord> {
    let mut v = Vec::new();
    let mut t = from;
    while t < to {
        for c in 0..20u8 {
            let pk = rng.range(3, 8);
            v.push(rec(
                v4(10, 0, 5, c + 1),
                victim,
                40_000,
                53,
                17,
                0,
                pk * 90,
                pk,
                t,
                t + 900,
            ));
        }
        t += 1000;
    }
    v
}

fn flood(victim: IpAddr, sources: u32, pps: u64, from: u64, dur: u64) -> Vec<FlowRecord> {
    let mut v = Vec::new();
    let per_sec_per_source = pps / u64::from(sources);
    for s in 0..sources {
        let src = IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + s));
        let mut t = from;
        while t < from + dur {
            let pk = per_sec_per_source.max(1) * 10;
            v.push(rec(
                src,
                victim,
                123,
                40_000,
                17,
                0,
                pk * 468,
                pk,
                t,
                t + 9_999,
            ));
            t += 10_000;
        }
    }
    v
}

#[test]
fn flood_at_five_times_baseline_for_ten_seconds_is_found() {
    let mut rng = Rng(30);
    let victim = ip("10.0.6.1");
    let mut recs = service(victim, DAY0, DAY0 + HOUR, &mut rng);
    recs.extend(browsing(10, 1, &mut rng));
    recs.extend(flood(victim, 500, 20_000, DAY0 + 40 * MIN, 20_000));
    let findings = by_key(&run(
        &mut VolumeDetector::new(&DetectConfig::default()),
        &recs,
    ));
    findings.iter().for_each(check_finding);
    let vol = of(&findings, Category::Volumetric);
    assert_eq!(vol.len(), 1, "{vol:#?}");
    assert_eq!(
        (vol[0].kind.as_str(), vol[0].entities.dst),
        ("victim", Some(victim))
    );
    assert!(vol[0].evidence["peak_ratio"].as_f64().unwrap() >= 5.0);
}

/// A reflection flood exported as one 60 s record per reflector (UDP from port 53), to a
/// victim whose other inbound traffic is sparse: the victim's next record, 110 s
/// after the flood ends, pushes the whole episode through the series' ring in one pass, opening and
/// closing the alert before any watermark step. It must still be reported.
#[test]
fn flood_opened_and_closed_in_one_pass_is_still_reported() {
    let victim = ip("10.0.6.5");
    let mut recs = Vec::new();
    for i in 0..120u64 {
        let t = DAY0 + i * 170_000;
        recs.push(rec(
            ip("198.51.100.7"),
            victim,
            40_000,
            443,
            6,
            0x02,
            60,
            1,
            t,
            t,
        ));
    }
    // Right after the victim's 64th record; its 65th comes 170 s later.
    let t0 = DAY0 + 64 * 170_000 + 1_000;
    for s in 0..200u32 {
        let src = IpAddr::V4(Ipv4Addr::from(0xc633_6480 + s));
        recs.push(rec(
            src,
            victim,
            53,
            34_000,
            17,
            0,
            6_000 * 1200,
            6_000,
            t0,
            t0 + 60_000,
        ));
    }
    // Driven as `DetectShard` drives it: the watermark trails the latest end by the
    // allowed lateness.
    recs.sort_by_key(|r| (r.end_ms, r.start_ms));
    let config = DetectConfig::default();
    let mut det = VolumeDetector::new(&config);
    let mut out = Vec::new();
    for r in &recs {
        det.observe(r);
        det.advance(r.end_ms - config.allowed_lateness_ms, &mut out);
    }
    det.finish(&mut out);
    let findings = by_key(&out);
    findings.iter().for_each(check_finding);
    let vol = of(&findings, Category::Volumetric);
    assert_eq!(vol.len(), 1, "{vol:#?}");
    assert_eq!(
        (vol[0].kind.as_str(), vol[0].entities.dst),
        ("victim", Some(victim))
    );
}

/// An internal flood exported 1:100 sampled whose records reach the detector 250 s after
/// they end, later than the allowed lateness (an IPFIX collector replays data sets it
/// held for a template that had expired on a quiet exporter), while a busy host keeps the
/// watermark moving and the victim's on-time queries close its slots. The flood must
/// still be found, once, as the victim's; a late replay of normal traffic gives nothing.
#[test]
fn flood_arriving_after_the_allowed_lateness_is_found() {
    let mut rng = Rng(34);
    let victim = ip("10.0.0.53");
    let attacker = ip("10.0.1.50");
    let busy = ip("10.0.6.9");
    let t0 = DAY0 + 40 * MIN;
    let delay = 250_000;
    let sampled = |mut r: FlowRecord, raw_bytes: u64, raw_packets: u64| {
        r.set_counts(raw_bytes, raw_packets, 100);
        r
    };
    // (arrival, record)
    let mut arrivals: Vec<(u64, FlowRecord)> = Vec::new();
    for r in service(busy, DAY0, DAY0 + HOUR, &mut rng) {
        // The busy host's records from the flood's minutes come late with it.
        let late = (t0 - MIN..t0 + 4 * MIN).contains(&r.end_ms);
        let at = r.end_ms + if late { delay } else { 0 };
        arrivals.push((at, r));
    }
    for i in 0..60u64 {
        let t = DAY0 + i * MIN + rng.range(0, 30_000);
        let q = rec(ip("10.0.1.20"), victim, 40_000, 53, 17, 0, 70, 1, t, t);
        arrivals.push((t, sampled(q, 70, 1)));
    }
    for _ in 0..40 {
        let start = t0 + rng.range(0, 500);
        let raw = rng.range(110, 190);
        let f = rec(
            attacker,
            victim,
            50_000,
            53,
            17,
            0,
            0,
            1,
            start,
            t0 + 30_000,
        );
        arrivals.push((f.end_ms + delay, sampled(f, raw * 90, raw)));
    }
    arrivals.sort_by_key(|(at, r)| (*at, r.end_ms));
    // Driven as `DetectShard` drives it.
    let config = DetectConfig::default();
    let mut det = VolumeDetector::new(&config);
    let mut out = Vec::new();
    let mut max_end = 0;
    for (_, r) in &arrivals {
        det.observe(r);
        if r.end_ms > max_end {
            max_end = r.end_ms;
            det.advance(max_end - config.allowed_lateness_ms, &mut out);
        }
    }
    det.finish(&mut out);
    assert!(det.late_records() >= 40, "{}", det.late_records());
    let findings = by_key(&out);
    findings.iter().for_each(check_finding);
    let vol = of(&findings, Category::Volumetric);
    assert_eq!(vol.len(), 1, "{vol:#?}");
    let f = vol[0];
    assert_eq!(
        (f.kind.as_str(), f.entities.src, f.entities.dst),
        ("victim", Some(attacker), Some(victim)),
        "{f:#?}"
    );
    assert!(f.sampled_lower_bound);
    assert!(
        f.first_seen_ms <= t0 + 10_000 && f.last_seen_ms >= t0 + 30_000,
        "{f:#?}"
    );
}

#[test]
fn single_source_flood_names_the_source() {
    let mut rng = Rng(31);
    let victim = ip("10.0.6.2");
    let mut recs = service(victim, DAY0, DAY0 + HOUR, &mut rng);
    recs.extend(flood(victim, 1, 30_000, DAY0 + 30 * MIN, 60_000));
    let findings = by_key(&run(
        &mut VolumeDetector::new(&DetectConfig::default()),
        &recs,
    ));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].entities.dst, Some(victim));
    assert_eq!(
        findings[0].entities.src,
        Some(ip("203.0.113.0")),
        "{findings:#?}"
    );
}

#[test]
fn downloads_backups_and_browsing_give_no_flood() {
    let mut rng = Rng(32);
    let victim = ip("10.0.6.3");
    let mut recs = service(victim, DAY0, DAY0 + 6 * HOUR, &mut rng);
    recs.extend(browsing(30, 6, &mut rng));
    // A 2 GB download in one minute and a CDN sync: established TCP data.
    recs.extend(upload(
        ip("151.101.1.1"),
        ip("10.0.1.30"),
        443,
        2_000_000_000,
        DAY0 + 2 * HOUR,
        MIN,
        10_000,
    ));
    recs.extend(upload(
        ip("10.0.1.31"),
        ip("23.1.1.1"),
        443,
        5_000_000_000,
        DAY0 + 3 * HOUR,
        10 * MIN,
        MIN,
    ));
    let findings = run(&mut VolumeDetector::new(&DetectConfig::default()), &recs);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn sampled_flood_is_found_as_a_lower_bound() {
    let mut rng = Rng(33);
    let victim = ip("10.0.6.4");
    let mut recs = service(victim, DAY0, DAY0 + HOUR, &mut rng);
    recs.extend(flood(victim, 300, 30_000, DAY0 + 40 * MIN, 30_000));
    let recs = sample(&recs, 100, &mut rng);
    let findings = by_key(&run(
        &mut VolumeDetector::new(&DetectConfig::default()),
        &recs,
    ));
    findings.iter().for_each(check_finding);
    let vol = of(&findings, Category::Volumetric);
    assert_eq!(vol.len(), 1, "{vol:#?}");
    assert_eq!(vol[0].entities.dst, Some(victim));
    assert!(vol[0].sampled_lower_bound);
}

// ---------- all together ----------

fn mixed(seed: u64) -> Vec<FlowRecord> {
    let mut rng = Rng(seed);
    let mut recs = browsing(15, 7, &mut rng);
    for i in 0..300u64 {
        let t = DAY0 + HOUR + i * 200;
        recs.push(rec(
            ip("203.0.113.66"),
            v4(10, 2, 0, u8::try_from(i % 250 + 1).unwrap()),
            40_000,
            u16::try_from(22 + i / 250).unwrap(),
            6,
            SYN,
            60,
            1,
            t,
            t,
        ));
    }
    recs.extend(upload(
        ip("10.0.1.5"),
        ip("198.51.100.7"),
        443,
        600_000_000,
        DAY0 + 5 * HOUR,
        30 * MIN,
        MIN,
    ));
    recs.extend(beacon(
        ip("10.0.2.10"),
        ip("192.0.2.10"),
        443,
        60_000,
        0.3,
        0.2,
        DAY0,
        7 * HOUR,
        &mut rng,
    ));
    recs.extend(service(ip("10.0.6.1"), DAY0, DAY0 + 2 * HOUR, &mut rng));
    recs.extend(flood(ip("10.0.6.1"), 200, 20_000, DAY0 + 90 * MIN, 30_000));
    recs
}

fn all_detectors(config: &DetectConfig) -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(ScanDetector::new(config)),
        Box::new(ExfilDetector::new(config)),
        Box::new(BeaconDetector::new(config)),
        Box::new(VolumeDetector::new(config)),
    ]
}

#[test]
fn every_detector_fires_once_on_a_mixed_stream_and_replays_are_identical() {
    let recs = mixed(40);
    let go = || {
        let mut all = Vec::new();
        for mut d in all_detectors(&DetectConfig::default()) {
            all.extend(run(d.as_mut(), &recs));
        }
        all
    };
    let findings = go();
    assert_eq!(
        serde_json::to_string(&findings).unwrap(),
        serde_json::to_string(&go()).unwrap()
    );
    for c in [
        Category::PortScan,
        Category::Exfiltration,
        Category::Beaconing,
        Category::Volumetric,
    ] {
        assert!(!of(&findings, c).is_empty(), "{c:?} missing: {findings:#?}");
    }
}

// ---------- bounded state ----------

#[test]
fn millions_of_distinct_keys_stay_within_the_cap() {
    let mut config = DetectConfig::default();
    config.max_keys_per_detector = 20_000;
    let mut dets = all_detectors(&config);
    let mut out = Vec::new();
    let n: u32 = 2_500_000;
    for i in 0..n {
        let t = DAY0 + u64::from(i);
        // A distinct internal host, external peer and scanner every record.
        let internal = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let external = IpAddr::V4(Ipv4Addr::from(0x2000_0000 + i));
        let r = rec(internal, external, 40_000, 80, 6, SYN, 60, 1, t, t);
        let r2 = rec(external, internal, 443, 40_000, 17, 0, 300, 1, t, t);
        for d in &mut dets {
            d.observe(&r);
            d.observe(&r2);
        }
        if i % 100_000 == 0 {
            for d in &mut dets {
                d.advance(t, &mut out);
            }
        }
    }
    for d in &dets {
        let bytes = d.state_bytes();
        assert!(bytes < 64 << 20, "{}: {bytes} bytes", d.name());
        assert!(
            d.evictions() >= u64::from(n) - 100_000,
            "{}: {} evictions",
            d.name(),
            d.evictions()
        );
    }
}

// ---------- daily habits (periodic baselines) ----------

const DAY: u64 = 24 * HOUR;

/// A host's quiet background over `days` days: three small HTTPS exchanges an hour with
/// web servers, none big enough to give its pair state.
fn quiet_background(host: IpAddr, days: u64, rng: &mut Rng) -> Vec<FlowRecord> {
    let mut v = Vec::new();
    for h in 0..days * 24 {
        for _ in 0..3 {
            let t = DAY0 + h * HOUR + rng.range(0, HOUR - MIN);
            let server = v4(93, 184, 216, u8::try_from(rng.range(1, 40)).unwrap());
            let sport = u16::try_from(rng.range(32_768, 60_999)).unwrap();
            let up = rng.range(20_000, 80_000);
            let pk = up / 1400 + 3;
            v.push(rec(host, server, sport, 443, 6, EST, up, pk, t, t + 2_000));
            v.push(rec(
                server,
                host,
                443,
                sport,
                6,
                EST,
                up * 4,
                pk,
                t,
                t + 2_000,
            ));
        }
    }
    v
}

/// Six days of `host`'s quiet background, and every night `n` (0–5) an upload of
/// `bytes(n)` to `vault` from 02:00 UTC for 30 minutes.
fn nightly_job(host: IpAddr, vault: IpAddr, bytes: impl Fn(u64) -> u64) -> Vec<FlowRecord> {
    let mut rng = Rng(50);
    let mut recs = quiet_background(host, 6, &mut rng);
    for night in 0..6 {
        let start = DAY0 + night * DAY + 2 * HOUR;
        recs.extend(upload(host, vault, 443, bytes(night), start, 30 * MIN, MIN));
    }
    recs
}

/// (day, UTC hour) of the start of every exfiltration episode reported for `host`.
fn reported_slots(findings: &[Finding], host: IpAddr) -> Vec<(u64, u64)> {
    let mut slots: Vec<(u64, u64)> = of(findings, Category::Exfiltration)
        .into_iter()
        .filter(|f| f.entities.src == Some(host))
        .map(|f| {
            let t = f.first_seen_ms - DAY0;
            (t / DAY, t % DAY / HOUR)
        })
        .collect();
    slots.dedup();
    slots
}

fn exfil_findings(config: &DetectConfig, recs: &[FlowRecord]) -> Vec<Finding> {
    let findings = run(&mut ExfilDetector::new(config), recs);
    findings.iter().for_each(check_finding);
    findings
}

fn evidence_f64(f: &Finding, key: &str) -> f64 {
    f.evidence
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("no {key}: {f:#?}"))
}

#[test]
fn a_nightly_upload_is_reported_until_learned_then_not() {
    let (host, vault) = (ip("10.0.1.40"), ip("203.0.113.80"));
    let recs = nightly_job(host, vault, |_| 700_000_000);
    let findings = exfil_findings(&DetectConfig::default(), &recs);
    // Nights 0–2 are reported; from night 3 the 02:00 hour has three earlier active
    // days and the same volume is the host's habit.
    assert_eq!(
        reported_slots(&findings, host),
        vec![(0, 2), (1, 2), (2, 2)],
        "{findings:#?}"
    );
    // Night 2 shows the habit being learned: two earlier nights, not yet enough.
    let night2 = findings
        .iter()
        .find(|f| f.first_seen_ms >= DAY0 + 2 * DAY)
        .unwrap();
    assert_eq!(night2.evidence["periodic_days"], serde_json::json!(2.0));
    assert_eq!(night2.evidence["periodic_hour_utc"], serde_json::json!(2.0));
    assert_eq!(night2.evidence["periodic_damped"], serde_json::json!(false));
    let usual = evidence_f64(night2, "periodic_baseline_bytes");
    assert!((usual / 7e8 - 1.0).abs() < 0.01, "{usual}");
    // Without the daily profile every night is reported: the rolling baseline alone
    // does not learn it.
    let mut off = DetectConfig::default();
    off.exfil.periodic_min_days = 0;
    let findings = exfil_findings(&off, &recs);
    assert_eq!(
        reported_slots(&findings, host),
        (0..6).map(|d| (d, 2)).collect::<Vec<_>>(),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .all(|f| !f.evidence.contains_key("periodic_days"))
    );
}

#[test]
fn a_learned_host_uploading_at_an_unusual_hour_is_still_reported() {
    let (host, vault) = (ip("10.0.1.40"), ip("203.0.113.80"));
    let mut recs = nightly_job(host, vault, |_| 700_000_000);
    recs.extend(upload(
        host,
        vault,
        443,
        700_000_000,
        DAY0 + 5 * DAY + 14 * HOUR,
        30 * MIN,
        MIN,
    ));
    let findings = exfil_findings(&DetectConfig::default(), &recs);
    assert_eq!(
        reported_slots(&findings, host),
        vec![(0, 2), (1, 2), (2, 2), (5, 14)],
        "{findings:#?}"
    );
    let noon = findings
        .iter()
        .find(|f| f.first_seen_ms >= DAY0 + 5 * DAY + 14 * HOUR)
        .unwrap();
    assert_eq!(noon.evidence["periodic_hour_utc"], serde_json::json!(14.0));
    assert_eq!(noon.evidence["periodic_days"], serde_json::json!(0.0));
    assert_eq!(noon.evidence["periodic_damped"], serde_json::json!(false));
}

#[test]
fn a_learned_nightly_upload_growing_tenfold_is_still_reported() {
    let (host, vault) = (ip("10.0.1.40"), ip("203.0.113.80"));
    let recs = nightly_job(host, vault, |night| {
        if night == 5 {
            7_000_000_000
        } else {
            700_000_000
        }
    });
    let findings = exfil_findings(&DetectConfig::default(), &recs);
    assert_eq!(
        reported_slots(&findings, host),
        vec![(0, 2), (1, 2), (2, 2), (5, 2)],
        "{findings:#?}"
    );
    // The analyst sees the habit it went beyond.
    let last = findings
        .iter()
        .find(|f| f.first_seen_ms >= DAY0 + 5 * DAY)
        .unwrap();
    assert_eq!(last.evidence["periodic_days"], serde_json::json!(5.0));
    assert_eq!(last.evidence["periodic_damped"], serde_json::json!(false));
    let usual = evidence_f64(last, "periodic_baseline_bytes");
    assert!((usual / 7e8 - 1.0).abs() < 0.01, "{usual}");
    assert!(
        last.summary.contains("10.0× its daily habit at 02:00 UTC"),
        "{}",
        last.summary
    );
}

#[test]
fn another_host_without_a_habit_is_reported_at_the_learned_hour() {
    let (host, other, vault) = (ip("10.0.1.40"), ip("10.0.1.41"), ip("203.0.113.80"));
    let mut recs = nightly_job(host, vault, |_| 700_000_000);
    recs.extend(upload(
        other,
        vault,
        443,
        700_000_000,
        DAY0 + 5 * DAY + 2 * HOUR,
        30 * MIN,
        MIN,
    ));
    let findings = exfil_findings(&DetectConfig::default(), &recs);
    assert_eq!(
        reported_slots(&findings, host),
        vec![(0, 2), (1, 2), (2, 2)],
        "{findings:#?}"
    );
    assert_eq!(
        reported_slots(&findings, other),
        vec![(5, 2)],
        "{findings:#?}"
    );
    let f = findings
        .iter()
        .find(|f| f.entities.src == Some(other))
        .unwrap();
    assert!(!f.evidence.contains_key("periodic_days"), "{f:#?}");
}

#[test]
fn a_three_hour_nightly_job_is_learned_for_bulk_and_slow() {
    // 250 MB an hour from 01:00 to 04:00: every window is a bulk candidate, and the
    // third makes a slow run of 750 MB.
    let (host, vault) = (ip("10.0.1.42"), ip("203.0.113.81"));
    let mut rng = Rng(51);
    let mut recs = quiet_background(host, 6, &mut rng);
    for night in 0..6 {
        let start = DAY0 + night * DAY + HOUR;
        recs.extend(upload(host, vault, 443, 750_000_000, start, 3 * HOUR, MIN));
    }
    let findings = exfil_findings(&DetectConfig::default(), &recs);
    assert_eq!(
        reported_slots(&findings, host),
        vec![(0, 1), (1, 1), (2, 1)],
        "{findings:#?}"
    );
    // Nights 3–5 give neither a bulk window nor a slow run (without the slow run's
    // damping they come back as `slow`). Without the profile every night is reported.
    let mut off = DetectConfig::default();
    off.exfil.periodic_min_days = 0;
    let findings = exfil_findings(&off, &recs);
    assert_eq!(
        reported_slots(&findings, host),
        (0..6).map(|d| (d, 1)).collect::<Vec<_>>(),
        "{findings:#?}"
    );
}

/// A detector that ignores what routing tells it ([`super::Sides`]) and checks home
/// networks and shard ownership itself, as on its own.
struct SelfChecking(Box<dyn Detector + Send>);

impl Detector for SelfChecking {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn observe(&mut self, record: &FlowRecord) {
        self.0.observe(record);
    }
    fn advance(&mut self, watermark_ms: u64, out: &mut Vec<Finding>) {
        self.0.advance(watermark_ms, out);
    }
    fn finish(&mut self, out: &mut Vec<Finding>) {
        self.0.finish(out);
    }
    fn state_bytes(&self) -> usize {
        self.0.state_bytes()
    }
    fn evictions(&self) -> u64 {
        self.0.evictions()
    }
}

fn self_checking(config: &DetectConfig, shard: super::ShardId) -> Vec<Box<dyn Detector + Send>> {
    super::standard_detectors(config, shard)
        .into_iter()
        .map(|d| Box::new(SelfChecking(d)) as Box<dyn Detector + Send>)
        .collect()
}

#[test]
fn routed_sides_give_the_same_findings_as_detectors_checking_for_themselves() {
    for sampling in [1, 10] {
        let scenario = crate::scenario::generate(&crate::scenario::ScenarioConfig {
            hours: 2.0,
            sampling,
            ..crate::scenario::ScenarioConfig::default()
        });
        let config = scenario.detect_config();
        for shards in [1, 3] {
            let findings = |factory: engine::DetectorFactory| {
                let mut e = engine::DetectEngine::new(&config, shards, factory);
                for r in &scenario.records {
                    e.observe(r);
                }
                e.finish().0
            };
            let routed = findings(super::standard_detectors);
            assert!(
                routed.len() >= 5,
                "1:{sampling}, {shards} shards: only {} findings",
                routed.len()
            );
            assert_eq!(
                routed,
                findings(self_checking),
                "1:{sampling}, {shards} shards"
            );
        }
    }
}

/// The old way of feeding a shard: every record to every detector at once, the watermark
/// checked after each record. A shard collects runs of records ([`engine::BATCH`]) and
/// hands them to its detectors one detector after another; the findings must not change.
#[test]
fn runs_of_records_give_the_same_findings_as_one_record_at_a_time() {
    let scenario = crate::scenario::generate(&crate::scenario::ScenarioConfig {
        hours: 2.0,
        ..crate::scenario::ScenarioConfig::default()
    });
    let config = scenario.detect_config();
    let router = engine::Router::new(&config, 1);
    let shard = super::ShardId { index: 0, count: 1 };
    let routed: Vec<engine::Routed> = scenario
        .records
        .iter()
        .filter_map(|r| {
            router.route(r).map(|route| engine::Routed {
                record: *r,
                sides: route.sides(0),
            })
        })
        .collect();

    // Each record to every detector in turn; the watermark checked every `every` records.
    let one_at_a_time = |every: usize| {
        let mut out = Vec::new();
        let mut detectors = super::standard_detectors(&config, shard);
        let (mut max_end, mut watermark) = (0u64, 0u64);
        for run in routed.chunks(every) {
            for r in run {
                for d in &mut detectors {
                    d.observe_routed(&r.record, r.sides);
                }
                max_end = max_end.max(r.record.end_ms);
            }
            let target = max_end.saturating_sub(config.allowed_lateness_ms);
            if target >= watermark + engine::WATERMARK_STEP_MS {
                watermark = target - target % engine::WATERMARK_STEP_MS;
                for d in &mut detectors {
                    d.advance(watermark, &mut out);
                }
            }
        }
        for d in &mut detectors {
            d.finish(&mut out);
        }
        out
    };

    let expected = one_at_a_time(1);
    assert!(expected.len() >= 5, "{} findings", expected.len());
    let mut e = engine::DetectEngine::new(&config, 1, super::standard_detectors);
    for r in &scenario.records {
        e.observe(r);
    }
    assert_eq!(e.finish().0, expected, "offline: runs cut by the watermark");

    // The live path: runs as a worker sends them (here 7 records), the watermark moved
    // after each.
    let mut live = engine::DetectShard::new(&config, super::standard_detectors, shard);
    let mut found = Vec::new();
    let mut max_end = 0;
    for run in routed.chunks(7) {
        max_end = run.iter().map(|r| r.record.end_ms).fold(max_end, u64::max);
        live.observe_batch(run);
        live.advance_to(
            max_end.saturating_sub(config.allowed_lateness_ms),
            &mut found,
        );
    }
    live.finish(&mut found);
    assert_eq!(found, one_at_a_time(7), "live runs of 7");
}
