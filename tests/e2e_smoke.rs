//! The CI-sized end-to-end run: `flowguard replay` in the exporter namespace sends realistic
//! v9 and IPFIX exports at a modest fixed rate; flowguard collects them on each capture
//! path. Every record sent must be decoded (zero loss), and the decoded records must equal
//! the ones the exports were built from.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use anyhow::{Context as _, Result};
use flowguard::{
    capture::pcap::PcapWriter,
    decode::{
        Direction, FlowRecord,
        encode::{Encoder, EncoderConfig, Format},
    },
};
use flowguard_e2e::{
    COLLECTOR_V4, Collector, EXPORTER_V4, Lab, TempDir, flowguard_bin, require_root,
};

fn records(n: usize, salt: u16) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| {
            let i = u16::try_from(i).unwrap();
            let mut r = FlowRecord {
                src_addr: std::net::IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
                dst_addr: std::net::IpAddr::from([203, 0, 113, (i % 200) as u8]),
                src_port: 20_000 + i,
                dst_port: 443 + salt,
                protocol: 6,
                tcp_flags: 0x1b,
                direction: Direction::Ingress,
                start_ms: 1_780_000_000_000 + u64::from(i),
                end_ms: 1_780_000_010_000 + u64::from(i),
                ..FlowRecord::default()
            };
            r.set_counts(1000 + u64::from(i), 1 + u64::from(i % 9), 1);
            r
        })
        .collect()
}

/// Writes exports of `recs` (v9 on 2055, IPFIX on 4739) to a pcap; returns their keys.
fn exports(path: &std::path::Path) -> Result<Vec<(String, u16, u64, u64)>> {
    let mut w = PcapWriter::new(std::io::BufWriter::new(std::fs::File::create(path)?))?;
    let mut keys = Vec::new();
    let mut t = 1_000_000_000u64;
    for (format, port, salt) in [(Format::V9, 2055u16, 0u16), (Format::Ipfix, 4739, 1)] {
        let recs = records(4000, salt);
        let mut config = EncoderConfig::new(format);
        config.records_per_packet = 24;
        config.observation_domain_id = u32::from(salt) + 1;
        let mut packets = Vec::new();
        Encoder::new(config).encode(&recs, 1_780_000_020_000, &mut packets);
        let src: SocketAddr = (EXPORTER_V4, 5000 + salt).into();
        for p in &packets {
            w.udp(t, src, (COLLECTOR_V4, port).into(), p)?;
            t += 1_000_000;
        }
        keys.extend(
            recs.iter()
                .map(|r| (r.src_addr.to_string(), r.dst_port, r.raw_bytes, r.start_ms)),
        );
    }
    w.finish()?;
    keys.sort();
    Ok(keys)
}

fn decoded_keys(flows: &std::path::Path) -> Result<Vec<(String, u16, u64, u64)>> {
    let mut keys = Vec::new();
    for line in std::fs::read_to_string(flows)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        keys.push((
            v["sourceIPv4Address"].as_str().context("src")?.to_owned(),
            u16::try_from(v["destinationTransportPort"].as_u64().context("port")?)?,
            v["octetDeltaCount"].as_u64().context("bytes")?,
            v["flowStartMilliseconds"].as_u64().context("start")?,
        ));
    }
    keys.sort();
    Ok(keys)
}

/// The collector `pid` restarted itself onto transparent huge pages when the kernel's
/// THP mode lets a process ask for them (`madvise`), and only then
/// (`flowguard::hugepages`): the tunable is in its environment. (Whether glibc has
/// advised a mapping yet depends on how far its heap has grown, so that is not asserted.)
fn assert_heap_pages(pid: u32) -> Result<()> {
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .context("the kernel's THP mode")?;
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let env: Vec<String> = environ
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let restarted = env.iter().any(|v| v == "FLOWGUARD_HUGE_PAGES=1");
    if mode.contains("[madvise]") {
        assert!(
            restarted,
            "THP mode {mode:?}: flowguard did not restart: {env:?}"
        );
        assert!(
            env.iter()
                .any(|v| v.starts_with("GLIBC_TUNABLES=") && v.ends_with("glibc.malloc.hugetlb=1")),
            "{env:?}"
        );
    } else {
        assert!(!restarted, "THP mode {mode:?}: no restart is due");
    }
    Ok(())
}

#[test]
fn replayed_exports_are_decoded_without_loss_on_both_capture_paths() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("smoke");
    let pcap = dir.join("exports.pcap");
    let expected = exports(&pcap)?;
    for mode in ["xdp", "socket"] {
        let flows = dir.join(&format!("{mode}.ndjson"));
        let stats = dir.join(&format!("{mode}.json"));
        let mut args = vec![
            "--capture",
            mode,
            "--workers",
            "2",
            "--port",
            "2055,4739",
            "--flows-out",
            flows.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
            "--stats-interval",
            "0",
        ];
        if mode == "xdp" {
            args.extend(["--iface", lab.collector_if.as_str()]);
        }
        let mut collector = Collector::start(&lab, &args, dir.join(&format!("{mode}.log")), 4739)?;
        assert_heap_pages(collector.child.id())?;
        // ~340 packets at 2,000 packets/s: well under a minute, far below any limit.
        let out = lab
            .in_exporter(flowguard_bin())
            .args([
                "replay",
                "--read",
                pcap.to_str().unwrap(),
                "--to",
                &format!("{COLLECTOR_V4}:2055"),
                "--keep-ports",
            ])
            .args(["--port", "2055,4739", "--rate", "2000"])
            .stdout(Stdio::null())
            .output()?;
        assert!(
            out.status.success(),
            "replay: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            said.contains(&format!("{} records", expected.len())),
            "replay reports what it sent: {said}"
        );
        std::thread::sleep(Duration::from_millis(500));
        let status = collector.stop(15)?;
        assert!(status.success(), "{mode}: {}", collector.log_text());
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        assert_eq!(
            s["decode"]["records"].as_u64(),
            Some(expected.len() as u64),
            "{mode}: zero loss: {s}"
        );
        assert_eq!(s["socket_kernel_drops"].as_u64(), Some(0), "{mode}: {s}");
        assert_eq!(
            decoded_keys(&flows)?,
            expected,
            "{mode}: decoded records equal the ones exported"
        );
    }
    Ok(())
}
