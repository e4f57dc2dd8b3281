//! End-to-end tests of the capture path: the real flowguard binary, native XDP on a veth in a
//! namespace lab, real datagrams from the other side.
//!
//! Every test needs root and fails (never skips) without it.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

use anyhow::Result;
use flowguard_e2e::{
    COLLECTOR_V4, COLLECTOR_V6, Collector, Lab, Logged, TempDir, export_payload, read_packet_log,
    require_root, wait_for,
};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
const SIGINT: i32 = 2;

/// One datagram the test sent, and what it should look like on arrival.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sent {
    exporter: IpAddr,
    src_port: u16,
    dst_port: u16,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Sent {
    // Compact: failures print hundreds of these.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sum = self
            .payload
            .iter()
            .fold(0u32, |a, b| a.rotate_left(5) ^ u32::from(*b));
        write!(
            f,
            "{}:{}->{} len={} sum={sum:08x}",
            self.exporter,
            self.src_port,
            self.dst_port,
            self.payload.len()
        )
    }
}

/// The shard the kernel programs must have chosen, from the shared rule.
fn expected_shard(exporter: IpAddr, payload: &[u8], n: u32) -> usize {
    let mut bytes = [0u8; 16];
    match exporter {
        IpAddr::V4(a) => bytes[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => bytes = a.octets(),
    }
    let words = flowguard_ebpf::exporter_words(&bytes);
    let domain = flowguard_ebpf::observation_domain(payload);
    flowguard_ebpf::shard_of(flowguard_ebpf::shard_hash(words, domain), n) as usize
}

fn send(socket: &UdpSocket, dst: SocketAddr, payload: &[u8], log: &mut Vec<Sent>) -> Result<()> {
    socket.send_to(payload, dst)?;
    let local = socket.local_addr()?;
    log.push(Sent {
        exporter: local.ip(),
        src_port: local.port(),
        dst_port: dst.port(),
        payload: payload.to_vec(),
    });
    // A little pacing keeps the default socket buffers of the test side from overflowing.
    std::thread::sleep(Duration::from_micros(200));
    Ok(())
}

fn stats(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("stats json written"))
        .expect("stats json")
}

fn xdp_counter(stats: &serde_json::Value, name: &str) -> u64 {
    stats["xdp"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("xdp counter {name} missing: {stats}"))
}

fn sorted(v: impl IntoIterator<Item = Sent>) -> Vec<Sent> {
    let mut v: Vec<Sent> = v.into_iter().collect();
    v.sort();
    v
}

fn as_sent(l: &Logged) -> Sent {
    Sent {
        exporter: l.exporter,
        src_port: l.src_port,
        dst_port: l.dst_port,
        payload: l.payload.clone(),
    }
}

/// Number of IP packets a UDP payload of `len` bytes becomes on a 1500-byte MTU link.
fn ipv4_fragments(len: usize) -> u64 {
    // Each fragment carries up to 1480 bytes of the UDP datagram (header included).
    (len + 8).div_ceil(1480) as u64
}
/// The fewest IPv6 fragments (1500-byte MTU: 1452 bytes after the fragment header, rounded
/// down to a multiple of 8).
fn ipv6_fragments(len: usize) -> u64 {
    (len + 8).div_ceil(1448) as u64
}

#[test]
fn xdp_steers_each_datagram_to_its_shard_and_every_packet_is_counted() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("steer");
    let plog = dir.join("plog");
    let stats_path = dir.join("stats.json");
    let other = lab.collector_socket(9999)?;
    other.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut collector = Collector::start(
        &lab,
        &[
            "--iface",
            &lab.collector_if,
            "--xdp-mode",
            "native",
            "--workers",
            "2",
            "--port",
            "2055,4739",
            "--packet-log",
            plog.to_str().unwrap(),
            "--stats-json",
            stats_path.to_str().unwrap(),
            "--stats-interval",
            "0",
        ],
        dir.join("log"),
        4739,
    )?;
    let (_, tx_before) = Lab::link_packets(&lab.exporter_ns, &lab.exporter_if)?;

    let v4 = lab.exporter_socket(false)?;
    let v6 = lab.exporter_socket(true)?;
    let mut steered = Vec::new();
    let mut fragmented = Vec::new();
    let mut to_other = Vec::new();
    let mut seq = 0u32;
    // Payload sizes from the smallest export message to a full 1500-byte-MTU frame.
    let v4_sizes = [
        28usize, 29, 63, 64, 100, 255, 256, 257, 512, 999, 1400, 1471, 1472,
    ];
    let v6_sizes = [28usize, 64, 256, 257, 1000, 1452];
    for (i, &len) in v4_sizes.iter().enumerate() {
        for domain in 0..4 {
            seq += 1;
            let p = export_payload(len, domain, i % 2 == 0, seq);
            send(&v4, (COLLECTOR_V4, 2055).into(), &p, &mut steered)?;
        }
    }
    for &len in &v6_sizes {
        for domain in 0..4 {
            seq += 1;
            let p = export_payload(len, domain, true, seq);
            send(&v6, (COLLECTOR_V6, 4739).into(), &p, &mut steered)?;
        }
    }
    // Larger than the MTU: fragmented by the sender, passed by XDP, reassembled by the kernel.
    let big4 = export_payload(3000, 7, false, 1);
    let big6 = export_payload(2500, 8, true, 2);
    send(&v4, (COLLECTOR_V4, 2055).into(), &big4, &mut fragmented)?;
    send(&v6, (COLLECTOR_V6, 4739).into(), &big6, &mut fragmented)?;
    // Not a configured port: must reach the kernel stack.
    for (i, sock) in [&v4, &v6].into_iter().enumerate() {
        let dst: SocketAddr = if i == 0 {
            (COLLECTOR_V4, 9999).into()
        } else {
            (COLLECTOR_V6, 9999).into()
        };
        for len in [28usize, 700, 1400] {
            seq += 1;
            send(
                sock,
                dst,
                &export_payload(len, 1, false, seq),
                &mut to_other,
            )?;
        }
    }
    let mut buf = [0u8; 4096];
    let mut other_got = Vec::new();
    for _ in 0..to_other.len() {
        let (n, from) = other.recv_from(&mut buf)?;
        other_got.push(Sent {
            exporter: from.ip().to_canonical(),
            src_port: from.port(),
            dst_port: 9999,
            payload: buf[..n].to_vec(),
        });
    }
    assert_eq!(
        sorted(other_got),
        sorted(to_other.clone()),
        "non-configured traffic must reach the kernel stack intact"
    );

    std::thread::sleep(Duration::from_millis(300));
    let (_, tx_after) = Lab::link_packets(&lab.exporter_ns, &lab.exporter_if)?;
    let status = collector.stop(SIGTERM)?;
    assert!(
        status.success(),
        "flowguard exit {status}: {}",
        collector.log_text()
    );

    // Exactly the configured-port datagrams arrived, byte for byte, each on its shard, through
    // XDP unless fragmented.
    let logged = read_packet_log(&plog)?;
    let arrived = sorted(logged.iter().map(as_sent));
    assert_eq!(
        arrived,
        sorted(steered.iter().chain(&fragmented).cloned()),
        "workers must receive exactly the configured-port datagrams"
    );
    let mut domain_shard: BTreeMap<(IpAddr, u32), usize> = BTreeMap::new();
    for l in &logged {
        let frag = fragmented.iter().any(|f| f.payload == l.payload);
        assert_eq!(
            l.source,
            if frag { "socket" } else { "xdp" },
            "{} bytes from {}",
            l.payload.len(),
            l.exporter
        );
        assert_eq!(
            l.shard,
            expected_shard(l.exporter, &l.payload, 2),
            "shard rule for {} bytes",
            l.payload.len()
        );
        let key = (l.exporter, flowguard_ebpf::observation_domain(&l.payload));
        let first = *domain_shard.entry(key).or_insert(l.shard);
        assert_eq!(
            first, l.shard,
            "(exporter, domain) {key:?} split across shards"
        );
    }
    let shards_used: std::collections::BTreeSet<usize> = domain_shard.values().copied().collect();
    assert_eq!(
        shards_used.len(),
        2,
        "the test's domains should exercise both shards"
    );

    // Counters add up exactly: every frame the exporter sent is one XDP outcome.
    let s = stats(&stats_path);
    let frames_sent = tx_after - tx_before;
    let frag4 = ipv4_fragments(big4.len());
    // The kernel picks the IPv6 fragment size (1280-byte minimum MTU or the link's 1500), so
    // the count is read off the wire rather than assumed.
    let frag6 = frames_sent - steered.len() as u64 - frag4 - to_other.len() as u64;
    assert!(
        (ipv6_fragments(big6.len())..=ipv6_fragments(big6.len()) + 1).contains(&frag6),
        "frames on the wire: {frames_sent}: {s}"
    );
    assert_eq!(xdp_counter(&s, "steered"), steered.len() as u64);
    assert_eq!(xdp_counter(&s, "pass_fragment"), frag4);
    assert_eq!(
        xdp_counter(&s, "pass_ipv6_ext"),
        frag6,
        "IPv6 fragments carry a fragment extension header"
    );
    assert_eq!(xdp_counter(&s, "pass_other_port"), to_other.len() as u64);
    let total: u64 = s["xdp"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, frames_sent, "sent = steered + passed + dropped: {s}");
    let from_xdp: u64 = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["from_xdp"].as_u64().unwrap())
        .sum();
    assert_eq!(
        from_xdp,
        xdp_counter(&s, "steered"),
        "every steered packet reached a worker"
    );
    Ok(())
}

#[test]
fn a_full_ring_spills_to_the_socket_path_and_nothing_is_unaccounted() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("ringfull");
    let plog = dir.join("plog");
    let stats_path = dir.join("stats.json");
    // One page of ring holds two 1000-byte records; the worker sleeps 3 s before reading.
    let mut collector = Collector::start(
        &lab,
        &[
            "--iface",
            &lab.collector_if,
            "--workers",
            "1",
            "--port",
            "2055",
            "--ring-bytes",
            "4096",
            "--stall-workers-ms",
            "3000",
            "--packet-log",
            plog.to_str().unwrap(),
            "--stats-json",
            stats_path.to_str().unwrap(),
            "--stats-interval",
            "0",
        ],
        dir.join("log"),
        2055,
    )?;
    let v4 = lab.exporter_socket(false)?;
    let mut sent = Vec::new();
    for i in 0..300u32 {
        send(
            &v4,
            (COLLECTOR_V4, 2055).into(),
            &export_payload(1000, i % 5, false, i),
            &mut sent,
        )?;
    }
    // Let the stall end and the worker drain both paths.
    let plog_lines = || {
        std::fs::metadata(plog.join("shard-0.ndjson"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_secs(3));
    wait_for("the worker to drain", Duration::from_secs(10), || {
        plog_lines() > 0
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let status = collector.stop(SIGINT)?;
    assert!(
        status.success(),
        "flowguard exit {status}: {}",
        collector.log_text()
    );

    let s = stats(&stats_path);
    let steered = xdp_counter(&s, "steered");
    let ring_full = xdp_counter(&s, "pass_ring_full");
    let drops = s["socket_kernel_drops"].as_u64().unwrap();
    let w = &s["workers"][0];
    assert!(ring_full > 0, "the tiny ring must overflow: {s}");
    assert!(steered > 0, "some packets fit the ring: {s}");
    assert_eq!(
        steered + ring_full,
        sent.len() as u64,
        "every datagram is steered or passed: {s}"
    );
    assert_eq!(
        w["from_xdp"].as_u64().unwrap(),
        steered,
        "ring records all consumed"
    );
    assert_eq!(
        w["from_socket"].as_u64().unwrap() + drops,
        ring_full,
        "spill-over received or counted as dropped"
    );
    let logged = read_packet_log(&plog)?;
    let logged_set = sorted(logged.iter().map(as_sent));
    let sent_set = sorted(sent);
    if drops == 0 {
        assert_eq!(logged_set, sent_set, "byte-identical delivery");
    } else {
        assert!(logged_set.iter().all(|l| sent_set.binary_search(l).is_ok()));
    }
    Ok(())
}

#[test]
fn xdp_is_detached_after_sigterm_and_after_sigkill() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("detach");
    for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGKILL, "SIGKILL")] {
        assert!(!lab.xdp_attached()?, "no XDP before start");
        let mut collector = Collector::start(
            &lab,
            &[
                "--iface",
                &lab.collector_if,
                "--workers",
                "1",
                "--port",
                "2055",
            ],
            dir.join(name),
            2055,
        )?;
        assert!(lab.xdp_attached()?, "XDP attached while running");
        let status = collector.stop(signal)?;
        if signal == SIGTERM {
            assert!(
                status.success(),
                "clean exit on SIGTERM: {}",
                collector.log_text()
            );
            assert!(
                collector.log_text().contains("summary"),
                "final summary printed"
            );
        }
        // The bpf_link closes with the process; the kernel detaches it.
        wait_for(
            &format!("XDP to go away after {name}"),
            Duration::from_secs(5),
            || !lab.xdp_attached().unwrap_or(true),
        )?;
    }
    Ok(())
}

#[test]
fn xdp_socket_and_pcap_paths_deliver_the_same_packets() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("paths");
    let pcap = dir.join("lab.pcap");
    // Fixed exporter ports so both live runs see identical 4-tuples.
    let bind = |v6: bool, port: u16| {
        let addr: SocketAddr = if v6 {
            (flowguard_e2e::EXPORTER_V6, port).into()
        } else {
            (flowguard_e2e::EXPORTER_V4, port).into()
        };
        Lab::within(&lab.exporter_ns, move || {
            let s = socket2::Socket::new(
                if v6 {
                    socket2::Domain::IPV6
                } else {
                    socket2::Domain::IPV4
                },
                socket2::Type::DGRAM,
                None,
            )?;
            s.set_reuse_address(true)?;
            s.bind(&addr.into())?;
            Ok(UdpSocket::from(s))
        })
    };
    let traffic = |v4: &UdpSocket, v6: &UdpSocket| -> Result<Vec<Sent>> {
        let mut sent = Vec::new();
        for i in 0..40u32 {
            send(
                v4,
                (COLLECTOR_V4, 2055).into(),
                &export_payload(60 + 30 * i as usize, i % 6, i % 2 == 0, i),
                &mut sent,
            )?;
            send(
                v6,
                (COLLECTOR_V6, 4739).into(),
                &export_payload(40 + 25 * i as usize, i % 3, true, i),
                &mut sent,
            )?;
        }
        send(
            v4,
            (COLLECTOR_V4, 2055).into(),
            &export_payload(4000, 9, false, 99),
            &mut sent,
        )?;
        Ok(sent)
    };
    let run = |mode: &str, capture: bool| -> Result<(Vec<Logged>, Vec<Sent>)> {
        let plog = dir.join(&format!("plog-{mode}"));
        let mut args = vec![
            "--capture",
            mode,
            "--workers",
            "2",
            "--port",
            "2055,4739",
            "--packet-log",
            plog.to_str().unwrap(),
            "--stats-interval",
            "0",
        ];
        if mode == "xdp" {
            args.extend(["--iface", lab.collector_if.as_str()]);
        }
        let mut collector = Collector::start(&lab, &args, dir.join(&format!("log-{mode}")), 4739)?;
        let mut tcpdump = if capture {
            let mut cmd = lab.in_exporter("tcpdump");
            cmd.args([
                "-i",
                &lab.exporter_if,
                "--immediate-mode",
                "-U",
                "-n",
                "-w",
                pcap.to_str().unwrap(),
                "udp",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
            let child = cmd.spawn()?;
            wait_for("tcpdump to start", Duration::from_secs(10), || {
                std::fs::metadata(&pcap).is_ok_and(|m| m.len() >= 24)
            })?;
            std::thread::sleep(Duration::from_millis(300));
            Some(child)
        } else {
            None
        };
        let (v4, v6) = (bind(false, 40_000)?, bind(true, 40_001)?);
        let sent = traffic(&v4, &v6)?;
        std::thread::sleep(Duration::from_millis(500));
        if let Some(child) = &mut tcpdump {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(i32::try_from(child.id())?, SIGINT) };
            child.wait()?;
        }
        let status = collector.stop(SIGTERM)?;
        assert!(status.success(), "{mode}: {}", collector.log_text());
        Ok((read_packet_log(&plog)?, sent))
    };
    let (xdp, sent_xdp) = run("xdp", true)?;
    let (socket, sent_socket) = run("socket", false)?;
    assert_eq!(
        sorted(sent_xdp.clone()),
        sorted(sent_socket),
        "the test sends the same traffic twice"
    );
    let plog = dir.join("plog-pcap");
    let out = std::process::Command::new(flowguard_e2e::flowguard_bin())
        .args([
            "run",
            "--read",
            pcap.to_str().unwrap(),
            "--workers",
            "2",
            "--port",
            "2055,4739",
            "--packet-log",
            plog.to_str().unwrap(),
            "--stats-interval",
            "0",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "--read: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcap_log = read_packet_log(&plog)?;

    let key = |v: &[Logged]| {
        let mut k: Vec<(usize, Sent)> = v.iter().map(|l| (l.shard, as_sent(l))).collect();
        k.sort();
        k
    };
    assert_eq!(xdp.len(), sent_xdp.len(), "xdp run delivered everything");
    assert_eq!(
        key(&xdp),
        key(&socket),
        "--capture socket delivers what XDP delivers, to the same workers"
    );
    assert_eq!(
        key(&xdp),
        key(&pcap_log),
        "--read of the lab capture delivers the same, to the same workers"
    );
    assert!(socket.iter().all(|l| l.source == "socket"));
    assert!(pcap_log.iter().all(|l| l.source == "pcap"));
    Ok(())
}

#[test]
fn generic_xdp_works_and_a_failed_native_attach_says_what_to_try() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("skb");
    // `lo` has no native XDP: the error must name the fallback.
    let out = lab
        .in_collector(flowguard_e2e::flowguard_bin())
        .args([
            "run",
            "--iface",
            "lo",
            "--xdp-mode",
            "native",
            "--workers",
            "1",
            "--port",
            "2055",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "native XDP on lo must fail");
    assert!(
        err.contains("--xdp-mode skb") && err.starts_with("flowguard: "),
        "{err}"
    );
    // Generic mode on the veth steers like native mode.
    let stats_path = dir.join("stats.json");
    let mut collector = Collector::start(
        &lab,
        &[
            "--iface",
            &lab.collector_if,
            "--xdp-mode",
            "skb",
            "--workers",
            "1",
            "--port",
            "2055",
            "--stats-json",
            stats_path.to_str().unwrap(),
            "--stats-interval",
            "0",
        ],
        dir.join("log"),
        2055,
    )?;
    let v4 = lab.exporter_socket(false)?;
    let mut sent = Vec::new();
    for i in 0..20 {
        send(
            &v4,
            (COLLECTOR_V4, 2055).into(),
            &export_payload(200, i, false, i),
            &mut sent,
        )?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = collector.stop(SIGTERM)?;
    assert!(status.success(), "{}", collector.log_text());
    let s = stats(&stats_path);
    assert_eq!(xdp_counter(&s, "steered"), 20, "{s}");
    assert_eq!(s["workers"][0]["from_xdp"].as_u64(), Some(20));
    Ok(())
}
