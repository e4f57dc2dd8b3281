//! `flowguard run` decoding on its workers: records from real export datagrams (built by the
//! project's encoder) sent across the lab, written with `--flows-out`, and templates that
//! survive a restart through `--template-dir`.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result};
use flowguard::decode::{
    Direction, FlowRecord,
    encode::{Encoder, EncoderConfig, Format},
};
use flowguard_e2e::{COLLECTOR_V4, COLLECTOR_V6, Collector, Lab, TempDir, require_root};

fn records(n: usize, v6: bool, base_ms: u64) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| {
            let (src, dst): (IpAddr, IpAddr) = if v6 {
                (
                    format!("2001:2::10:{i:x}").parse().unwrap(),
                    "2001:2::99".parse().unwrap(),
                )
            } else {
                (
                    format!("198.18.1.{}", i % 250 + 1).parse().unwrap(),
                    "198.18.9.9".parse().unwrap(),
                )
            };
            let mut r = FlowRecord {
                src_addr: src,
                dst_addr: dst,
                src_port: 1024 + u16::try_from(i).unwrap(),
                dst_port: 443,
                protocol: 6,
                tcp_flags: 0x1b,
                direction: Direction::Ingress,
                start_ms: base_ms + i as u64 * 10,
                end_ms: base_ms + i as u64 * 10 + 5000,
                input_interface: 3,
                output_interface: 4,
                ..FlowRecord::default()
            };
            r.set_counts(1000 + i as u64, 1 + i as u64 % 7, 1);
            r
        })
        .collect()
}

/// (src, dst, ports, bytes, packets, start, end) of a record, for comparison.
type Key = (String, String, u16, u16, u64, u64, u64, u64);

fn key_of(r: &FlowRecord) -> Key {
    (
        r.src_addr.to_string(),
        r.dst_addr.to_string(),
        r.src_port,
        r.dst_port,
        r.raw_bytes,
        r.raw_packets,
        r.start_ms,
        r.end_ms,
    )
}

fn keys_from_ndjson(path: &std::path::Path) -> Result<Vec<Key>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let addr = |a: &str, b: &str| {
            v.get(a)
                .or_else(|| v.get(b))
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .context("address")
        };
        let n = |k: &str| v[k].as_u64().with_context(|| format!("{k} in {line}"));
        out.push((
            addr("sourceIPv4Address", "sourceIPv6Address")?,
            addr("destinationIPv4Address", "destinationIPv6Address")?,
            u16::try_from(n("sourceTransportPort")?)?,
            u16::try_from(n("destinationTransportPort")?)?,
            n("octetDeltaCount")?,
            n("packetDeltaCount")?,
            n("flowStartMilliseconds")?,
            n("flowEndMilliseconds")?,
        ));
    }
    out.sort();
    Ok(out)
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn xdp_workers_decode_v5_v9_and_ipfix_to_flows_out() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("live-decode");
    let flows = dir.join("flows.ndjson");
    let mut collector = Collector::start(
        &lab,
        &[
            "--iface",
            &lab.collector_if,
            "--workers",
            "2",
            "--port",
            "2055,4739,9995",
            "--flows-out",
            flows.to_str().unwrap(),
            "--stats-interval",
            "0",
        ],
        dir.join("log"),
        9995,
    )?;
    let base = now_ms() - 60_000;
    let mut expected = Vec::new();
    for (format, port, v6, domain) in [
        (Format::V5, 9995u16, false, 0u32),
        (Format::V9, 2055, false, 1),
        (Format::V9, 2055, false, 2),
        (Format::Ipfix, 4739, false, 3),
        (Format::Ipfix, 4739, true, 4),
    ] {
        let recs = records(100, v6, base);
        let mut config = EncoderConfig::new(format);
        config.observation_domain_id = domain;
        let mut encoder = Encoder::new(config);
        let mut packets = Vec::new();
        encoder.encode(&recs, now_ms(), &mut packets);
        let socket = lab.exporter_socket(v6)?;
        let dst: SocketAddr = if v6 {
            (COLLECTOR_V6, port).into()
        } else {
            (COLLECTOR_V4, port).into()
        };
        for p in &packets {
            socket.send_to(p, dst)?;
            std::thread::sleep(Duration::from_micros(300));
        }
        expected.extend(recs.iter().map(key_of));
    }
    std::thread::sleep(Duration::from_millis(500));
    let status = collector.stop(15)?;
    assert!(status.success(), "{}", collector.log_text());
    expected.sort();
    let got = keys_from_ndjson(&flows)?;
    assert_eq!(
        got.len(),
        expected.len(),
        "record count: {}",
        collector.log_text()
    );
    assert_eq!(got, expected, "every record decoded exactly");
    Ok(())
}

#[test]
fn templates_survive_a_restart_of_flowguard_run() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("persist");
    let templates = dir.join("templates");
    let base = now_ms() - 60_000;
    let recs = records(48, false, base);
    let mut config = EncoderConfig::new(Format::Ipfix);
    config.observation_domain_id = 42;
    config.records_per_packet = 24;
    config.template_refresh_packets = 1_000;
    let mut encoder = Encoder::new(config);
    let mut packets = Vec::new();
    encoder.encode(&recs, now_ms(), &mut packets);
    assert_eq!(
        packets.len(),
        2,
        "first packet has the template, the second only data"
    );

    let run = |name: &str, with_dir: bool, send: &[Vec<u8>]| -> Result<Vec<Key>> {
        let out = dir.join(&format!("{name}.ndjson"));
        let mut args = vec![
            "--capture",
            "socket",
            "--workers",
            "2",
            "--port",
            "4739",
            "--flows-out",
            out.to_str().unwrap(),
            "--stats-interval",
            "0",
        ];
        if with_dir {
            args.extend(["--template-dir", templates.to_str().unwrap()]);
        }
        let mut c = Collector::start(&lab, &args, dir.join(&format!("{name}.log")), 4739)?;
        let socket = lab.exporter_socket(false)?;
        for p in send {
            socket.send_to(p, (COLLECTOR_V4, 4739))?;
        }
        std::thread::sleep(Duration::from_millis(400));
        let status = c.stop(15)?;
        assert!(status.success(), "{name}: {}", c.log_text());
        keys_from_ndjson(&out)
    };
    // First run learns the template (and decodes the first 24 records).
    let first = run("first", true, &packets[..1])?;
    assert_eq!(first.len(), 24);
    assert!(
        std::fs::read_dir(&templates)?.count() >= 1,
        "snapshot written at exit"
    );
    // Without the snapshot, data alone waits for a template that never comes.
    let cold = run("cold", false, &packets[1..])?;
    assert!(cold.is_empty(), "no template, no records: {cold:?}");
    // With it, the restarted collector decodes the data-only packet at once.
    let warm = run("warm", true, &packets[1..])?;
    let mut want: Vec<Key> = recs[24..].iter().map(key_of).collect();
    want.sort();
    assert_eq!(warm, want, "records decoded with the persisted template");
    Ok(())
}
