//! Scenario tests: determinism, pcap round trips through the real decoder, ground truth
//! and the properties the detection-quality test relies on.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::capture::pcap::{PcapCounters, PcapFile};
use crate::decode::{Decoder, DecoderConfig, FlowRecord};
use crate::detect::Category;

use super::*;

fn short(format: ScenarioFormat, sampling: u32, hours: f64) -> ScenarioConfig {
    ScenarioConfig {
        hours,
        format,
        sampling,
        ..ScenarioConfig::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fg-scenario-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every record in the pcap, decoded in file order through one decoder.
fn decode_pcap(path: &Path) -> (Vec<FlowRecord>, u64) {
    let file = PcapFile::open(path).unwrap();
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut out = Vec::new();
    let mut errors = 0;
    let mut counters = PcapCounters::default();
    file.for_each_datagram(&[2055, 4739], &mut counters, |p| {
        if decoder
            .decode_into(
                p.exporter.ip(),
                p.received_ns / 1_000_000,
                p.payload,
                &mut out,
            )
            .is_err()
        {
            errors += 1;
        }
    })
    .unwrap();
    (out, errors)
}

#[test]
fn deterministic_for_a_seed() {
    let cfg = short(ScenarioFormat::Ipfix, 1, 1.0);
    let a = generate(&cfg);
    let b = generate(&cfg);
    assert_eq!(a.records, b.records);
    assert_eq!(a.batches, b.batches);
    assert_eq!(a.truth, b.truth);
    let pa: Vec<Vec<u8>> = a.datagrams().into_iter().map(|d| d.payload).collect();
    let pb: Vec<Vec<u8>> = b.datagrams().into_iter().map(|d| d.payload).collect();
    assert_eq!(pa, pb);
    let c = generate(&ScenarioConfig { seed: 2, ..cfg });
    assert_ne!(a.records, c.records, "another seed, another scenario");
}

/// Writes the pcap and decodes it back: the very same records, in the same order.
fn round_trip(format: ScenarioFormat, sampling: u32, hours: f64) -> (Scenario, Vec<FlowRecord>) {
    let s = generate(&short(format, sampling, hours));
    let dir = tmp(&format!("{format:?}-{sampling}"));
    let path = dir.join("exports.pcap");
    let n = s.write_pcap(&path).unwrap();
    assert_eq!(n, s.batches.len(), "one datagram per batch");
    let (decoded, errors) = decode_pcap(&path);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(errors, 0);
    assert_eq!(decoded.len(), s.records.len(), "{format:?} 1:{sampling}");
    for (i, (d, r)) in decoded.iter().zip(&s.records).enumerate() {
        assert_eq!(d, r, "{format:?} record {i}");
    }
    (s, decoded)
}

#[test]
fn v9_pcap_decodes_to_the_generated_records() {
    let (s, _) = round_trip(ScenarioFormat::V9, 1, 2.0);
    assert!(s.records.len() > 10_000);
    assert!(s.records.iter().any(|r| r.src_addr.is_ipv6()));
    assert!(
        s.records
            .iter()
            .any(|r| r.exporter.to_string() == "198.18.0.3")
    );
}

#[test]
fn ipfix_pcap_decodes_to_the_generated_records() {
    round_trip(ScenarioFormat::Ipfix, 1, 2.0);
}

#[test]
fn v5_pcap_decodes_to_the_generated_records() {
    let (s, _) = round_trip(ScenarioFormat::V5, 1, 1.0);
    assert!(s.records.iter().all(|r| r.src_addr.is_ipv4()));
}

#[test]
fn sampled_output_announces_the_interval_and_thins() {
    for format in [ScenarioFormat::V9, ScenarioFormat::Ipfix] {
        let unsampled = generate(&short(format, 1, 2.0));
        let (s, decoded) = round_trip(format, 100, 2.0);
        assert!(decoded.iter().all(|r| r.sampling_interval == 100));
        assert!(decoded.iter().all(|r| r.packets == r.raw_packets * 100));
        assert!(
            s.records.len() * 3 < unsampled.records.len(),
            "{} of {}",
            s.records.len(),
            unsampled.records.len()
        );
    }
}

#[test]
fn ground_truth_lists_every_attack_with_its_records() {
    let cfg = ScenarioConfig::default();
    let s = generate(&ScenarioConfig {
        hours: 6.0,
        ..cfg.clone()
    });
    let a = &cfg.attacks;
    let want: BTreeSet<&str> = a
        .scans
        .iter()
        .map(|x| x.id.as_str())
        .chain(a.beacons.iter().map(|x| x.id.as_str()))
        .chain(a.exfiltrations.iter().map(|x| x.id.as_str()))
        .chain(a.floods.iter().map(|x| x.id.as_str()))
        .collect();
    let got: BTreeSet<&str> = s.truth.attacks.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(want, got);
    for t in &s.truth.attacks {
        assert!(t.records > 0, "{}", t.id);
        assert!(
            t.observable,
            "{}: unsampled, everything is observable",
            t.id
        );
        assert_eq!(t.observed_units, t.sent_units, "{}", t.id);
        assert!(t.start_ms >= s.truth.start_ms && t.end_ms <= s.truth.end_ms + 60_000);
        assert!(t.src.is_some() || t.dst.is_some());
    }
    let by = |id: &str| s.truth.attacks.iter().find(|t| t.id == id).unwrap();
    let kinds: BTreeSet<&str> = s.truth.attacks.iter().map(|t| t.kind.as_str()).collect();
    for k in [
        "horizontal_scan",
        "slow_horizontal_scan",
        "vertical_scan",
        "slow_vertical_scan",
        "beacon",
        "exfiltration",
        "slow_exfiltration",
        "flood",
    ] {
        assert!(kinds.contains(k), "{k}");
    }
    // Scans: ≥ 60 hosts / ≥ 100 ports; slow ones last ≥ 40 min.
    assert!(by("scan-horizontal").params["probes"].as_u64().unwrap() >= 60);
    assert!(by("scan-vertical").ports.len() >= 100);
    for id in ["scan-horizontal-slow", "scan-vertical-slow"] {
        let t = by(id);
        assert!(t.end_ms - t.start_ms >= 40 * 60_000, "{id}");
    }
    // Exfiltration: ≥ 500 MB in many active-timeout records of one connection.
    for id in ["exfil-fast", "exfil-slow"] {
        let t = by(id);
        assert!(t.true_bytes >= 500_000_000, "{id}");
        let ports: BTreeSet<u16> = s
            .records
            .iter()
            .zip(&s.labels)
            .filter(|(r, l)| **l == Label::Attack(index(&s, id)) && Some(r.src_addr) == t.src)
            .map(|(r, _)| r.src_port)
            .collect();
        assert_eq!(ports.len(), 1, "{id}: one connection");
        assert!(t.records >= 2 * 20, "{id}: {} records", t.records);
    }
    // Beacons: 10 s to 1 h, TCP and UDP, ~20% of beats missing.
    let beacons: Vec<&AttackTruth> = s
        .truth
        .attacks
        .iter()
        .filter(|t| t.category == Category::Beaconing)
        .collect();
    let intervals: Vec<f64> = beacons
        .iter()
        .map(|t| t.params["interval_s"].as_f64().unwrap())
        .collect();
    assert!(intervals.contains(&10.0) && intervals.contains(&3600.0));
    for t in &beacons {
        let sched = t.params["beats_scheduled"].as_f64().unwrap();
        let sent = t.params["beats_sent"].as_f64().unwrap();
        assert!((sent / sched - 0.8).abs() < 0.1, "{}: {sent}/{sched}", t.id);
    }
    // Floods: ≥ 5× the victim's baseline for ≥ 10 s.
    for t in s
        .truth
        .attacks
        .iter()
        .filter(|t| t.category == Category::Volumetric)
    {
        assert!(t.params["ratio_pps"].as_f64().unwrap() >= 5.0, "{}", t.id);
        assert!(t.params["ratio_bps"].as_f64().unwrap() >= 5.0, "{}", t.id);
        assert!(t.end_ms - t.start_ms >= 10_000);
        assert!(t.params["baseline_pps"].as_f64().unwrap() > 0.0, "{}", t.id);
    }
    // The file round-trips.
    let text = serde_json::to_string(&s.truth).unwrap();
    let back: GroundTruth = serde_json::from_str(&text).unwrap();
    assert_eq!(back.records, s.truth.records);
    let ids = |g: &GroundTruth| g.attacks.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&back), ids(&s.truth));
}

fn index(s: &Scenario, id: &str) -> usize {
    s.truth.attacks.iter().position(|t| t.id == id).unwrap()
}

#[test]
fn attacks_are_unambiguous_and_the_background_is_allowed_where_it_must_be() {
    let s = generate(&short(ScenarioFormat::V9, 1, 6.0));
    // No benign record touches an external attack endpoint.
    let mut external: BTreeSet<IpAddr> = BTreeSet::new();
    for t in &s.truth.attacks {
        for a in [t.src, t.dst].into_iter().flatten() {
            if !flow::is_internal(a) {
                external.insert(a);
            }
        }
    }
    for (r, l) in s.records.iter().zip(&s.labels) {
        if let Label::Benign(k) = l {
            assert!(
                !external.contains(&r.src_addr) && !external.contains(&r.dst_addr),
                "{k:?} touches an attack endpoint: {r:?}"
            );
        }
    }
    // Attacks are separated in time where they share a category.
    let dc = s.detect_config();
    let mut backup = 0;
    for (r, l) in s.records.iter().zip(&s.labels) {
        let allowed = dc.allowed(r);
        match l {
            Label::Benign(BenignKind::Backup) => {
                assert!(allowed, "backup outside its window: {r:?}");
                backup += r.bytes;
            }
            Label::Benign(BenignKind::CdnSync) => assert!(allowed),
            Label::Benign(BenignKind::DnsUpstream) => assert!(allowed, "{r:?}"),
            _ => assert!(!allowed, "{l:?} allow-listed: {r:?}"),
        }
    }
    assert!(backup >= 10_000_000_000, "tens of GB: {backup}");
    // Many internal hosts, and each prevalent service has many of them.
    let hosts: BTreeSet<IpAddr> = s
        .records
        .iter()
        .flat_map(|r| [r.src_addr, r.dst_addr])
        .filter(|a| flow::is_internal(*a) && a.is_ipv4() && a.to_string().starts_with("10.0.1."))
        .collect();
    assert!(hosts.len() >= 100, "{}", hosts.len());
    for kind in ["ntp", "saas_poll", "saas_push"] {
        let b = s.truth.benign.iter().find(|b| b.kind == kind).unwrap();
        assert!(b.internal_hosts >= 30, "{kind}: {}", b.internal_hosts);
        assert!(!b.allow_listed);
    }
    // Records are in export order, and no record ends after its packet's export time.
    for b in &s.batches {
        for r in &s.records[b.records.clone()] {
            assert!(r.end_ms <= b.export_ms, "{r:?} after {}", b.export_ms);
        }
    }
    assert!(
        s.batches
            .windows(2)
            .all(|w| w[0].export_ms <= w[1].export_ms)
    );
    let sizes: Vec<usize> = s.batches.iter().map(|b| b.records.len()).collect();
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    assert!(mean >= 10, "mean records per packet {mean}");
}

#[test]
fn dual_stack_workstations_read_like_their_ipv4_address() {
    assert_eq!(
        background::workstation_v6("10.0.1.35".parse().unwrap()),
        "fd00:0:0:1::35".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        background::workstation(25),
        "10.0.1.35".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn config_files_override_parts_and_flags_override_files() {
    let c: ScenarioConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, ScenarioConfig::default());
    let text = serde_json::to_string(&ScenarioConfig::default()).unwrap();
    let back: ScenarioConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ScenarioConfig::default());
    let dir = tmp("config");
    let path = dir.join("c.json");
    std::fs::write(
        &path,
        r#"{"sampling": 10, "attacks": {"floods": []}, "background": {"workstations": 50}}"#,
    )
    .unwrap();
    let args = ScenarioArgs {
        out: dir.clone(),
        format: Some(ScenarioFormat::Ipfix),
        sampling: None,
        hours: Some(1.0),
        seed: Some(9),
        start_unix_secs: None,
        config: Some(path),
        print_config: false,
    };
    let c = args.config().unwrap();
    assert_eq!(c.sampling, 10);
    assert_eq!(c.format, ScenarioFormat::Ipfix);
    assert_eq!(c.seed, 9);
    assert!(c.attacks.floods.is_empty());
    assert_eq!(c.attacks.beacons, AttackConfig::default().beacons);
    assert_eq!(c.background.workstations, 50);
    std::fs::write(dir.join("bad.json"), r#"{"sampling": 0}"#).unwrap();
    let bad = ScenarioArgs {
        config: Some(dir.join("bad.json")),
        ..args
    };
    assert!(bad.config().is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_writes_the_three_files() {
    let dir = tmp("run");
    let args = ScenarioArgs {
        out: dir.clone(),
        format: Some(ScenarioFormat::Ipfix),
        sampling: Some(100),
        hours: Some(0.5),
        seed: None,
        start_unix_secs: None,
        config: None,
        print_config: true,
    };
    run(&args).unwrap();
    let truth: GroundTruth =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground_truth.json")).unwrap())
            .unwrap();
    assert_eq!(truth.schema, GROUND_TRUTH_SCHEMA);
    assert_eq!(truth.sampling, 100);
    let dc: DetectConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("detect_config.json")).unwrap())
            .unwrap();
    assert_eq!(dc.allow.len(), 4);
    let (decoded, errors) = decode_pcap(&dir.join("exports.pcap"));
    assert_eq!(errors, 0);
    assert_eq!(decoded.len(), truth.records);
    assert!(dir.join("scenario_config.json").exists());
    std::fs::remove_dir_all(&dir).ok();
}
