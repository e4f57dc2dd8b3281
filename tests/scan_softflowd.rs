//! Real traffic through a real exporter: an nmap-style SYN scan (horizontal and vertical)
//! amid ordinary TCP sessions is written as a packet capture, softflowd turns it into IPFIX
//! inside a test namespace, and `flowguard analyze` must rank the scanners first and flag
//! nothing else.

use std::{net::Ipv4Addr, path::Path, process::Command};

use anyhow::{Context as _, Result};
use flowguard::capture::pcap::PcapWriter;
use flowguard_e2e::{Lab, TempDir, export_with_softflowd, flowguard_bin, require_root};

/// External scanners and hosts live in 198.19.0.0/16, the site in 198.18.0.0/16 (both in
/// the RFC 2544 benchmarking range).
const HORIZONTAL_SCANNER: Ipv4Addr = Ipv4Addr::new(198, 19, 66, 6);
const VERTICAL_SCANNER: Ipv4Addr = Ipv4Addr::new(198, 19, 66, 7);

struct Writer {
    pcap: PcapWriter<std::io::BufWriter<std::fs::File>>,
    t_us: u64,
}

impl Writer {
    /// One TCP segment; `flags` is (syn, ack, rst, fin, psh).
    fn tcp(
        &mut self,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        flags: (bool, bool, bool, bool, bool),
        payload: usize,
    ) -> Result<()> {
        let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .tcp(src.1, dst.1, 1000, 64_000);
        if flags.0 {
            b = b.syn();
        }
        if flags.1 {
            b = b.ack(1);
        }
        if flags.2 {
            b = b.rst();
        }
        if flags.3 {
            b = b.fin();
        }
        if flags.4 {
            b = b.psh();
        }
        let data = vec![0x42u8; payload];
        let mut frame = Vec::with_capacity(b.size(data.len()));
        b.write(&mut frame, &data)?;
        self.t_us += 2_000;
        self.pcap
            .frame(1_780_000_000_000_000_000 + self.t_us * 1000, &frame)?;
        Ok(())
    }

    /// A SYN probe: closed ports answer RST+ACK, open ones SYN+ACK and get an RST back.
    fn probe(&mut self, scanner: Ipv4Addr, target: Ipv4Addr, port: u16, open: bool) -> Result<()> {
        let sport = 40_000 + port % 1000;
        self.tcp(
            (scanner, sport),
            (target, port),
            (true, false, false, false, false),
            0,
        )?;
        if open {
            self.tcp(
                (target, port),
                (scanner, sport),
                (true, true, false, false, false),
                0,
            )?;
            self.tcp(
                (scanner, sport),
                (target, port),
                (false, false, true, false, false),
                0,
            )
        } else {
            self.tcp(
                (target, port),
                (scanner, sport),
                (false, true, true, false, false),
                0,
            )
        }
    }

    /// A complete HTTPS-like session.
    fn session(&mut self, client: Ipv4Addr, server: Ipv4Addr, sport: u16) -> Result<()> {
        let (c, s) = ((client, sport), (server, 443));
        self.tcp(c, s, (true, false, false, false, false), 0)?;
        self.tcp(s, c, (true, true, false, false, false), 0)?;
        self.tcp(c, s, (false, true, false, false, false), 0)?;
        for _ in 0..4 {
            self.tcp(c, s, (false, true, false, false, true), 300)?;
            self.tcp(s, c, (false, true, false, false, true), 1400)?;
        }
        self.tcp(c, s, (false, true, false, true, false), 0)?;
        self.tcp(s, c, (false, true, false, true, false), 0)
    }
}

fn traffic(path: &Path) -> Result<()> {
    let mut w = Writer {
        pcap: PcapWriter::new(std::io::BufWriter::new(std::fs::File::create(path)?))?,
        t_us: 0,
    };
    for round in 0..200u16 {
        // Ordinary browsing by 20 internal hosts, interleaved with the scans.
        let client = Ipv4Addr::new(198, 18, 1, u8::try_from(round % 20 + 1)?);
        let server = Ipv4Addr::new(198, 19, 1, u8::try_from(round % 7 + 1)?);
        w.session(client, server, 50_000 + round)?;
        // Horizontal: port 22 on 200 hosts, a few of them open.
        let target = Ipv4Addr::new(198, 18, 20, u8::try_from(round % 250 + 1)?);
        w.probe(HORIZONTAL_SCANNER, target, 22, round % 40 == 0)?;
        // Vertical: 200 ports on one host, 80 and 443 open.
        let port = round + 1;
        w.probe(
            VERTICAL_SCANNER,
            Ipv4Addr::new(198, 18, 20, 50),
            port,
            port == 80 || port == 443,
        )?;
    }
    w.pcap.finish()?;
    Ok(())
}

#[test]
fn softflowd_ipfix_of_a_syn_scan_ranks_the_scanners_first() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("scan-softflowd");
    let capture = dir.join("traffic.pcap");
    traffic(&capture)?;
    let port = 4739;
    let (exports, exported) = export_with_softflowd(&lab, &dir.0, &capture, 10, port)?;
    assert!(exported > 800, "softflowd exported {exported} records");
    let config = dir.join("detect.json");
    std::fs::write(&config, r#"{"home_nets": ["198.18.0.0/16"]}"#)?;
    let report_path = dir.join("report.json");
    let out = Command::new(flowguard_bin())
        .args([
            "analyze",
            "--no-progress",
            "--port",
            &port.to_string(),
            "--read",
        ])
        .arg(&exports)
        .arg("--detect-config")
        .arg(&config)
        .arg("--output")
        .arg(&report_path)
        .output()?;
    assert!(
        out.status.success(),
        "analyze: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report_path)?)?;
    let entities = report["entities"].as_array().context("entities")?;
    let ranked: Vec<&str> = entities
        .iter()
        .filter_map(|e| e["entity"].as_str())
        .collect();
    eprintln!("ranking: {ranked:?}");
    let scanners = [HORIZONTAL_SCANNER.to_string(), VERTICAL_SCANNER.to_string()];
    assert!(
        scanners.iter().any(|s| ranked.first() == Some(&s.as_str())),
        "a scanner ranks first: {ranked:?}"
    );
    for s in &scanners {
        let e = entities
            .iter()
            .find(|e| e["entity"].as_str() == Some(s))
            .with_context(|| format!("{s} not reported: {ranked:?}"))?;
        assert!(
            e["categories"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "port_scan")),
            "{s} reported as a port scan: {e}"
        );
    }
    let vertical = entities
        .iter()
        .find(|e| e["entity"].as_str() == Some(scanners[1].as_str()))
        .context("vertical")?;
    assert!(
        vertical["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["entities"]["dst"] == "198.18.20.50")),
        "the vertical scan names its target: {vertical}"
    );
    assert_eq!(
        ranked.len(),
        2,
        "nothing but the scanners is flagged: {ranked:?}"
    );
    Ok(())
}
