//! The injected attacks, each emitted under its own label and described by an
//! [`AttackTruth`].

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "traffic arithmetic on small positive floats and counts"
)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::json;

use crate::detect::Category;

use super::config::{BeaconSpec, ExfilSpec, FloodSpec, ScanKind, ScanSpec, ScenarioConfig};
use super::flow::{Conv, Sink, TCP};
use super::rng::Rng;
use super::{AttackTruth, Label};

fn ms(secs: f64) -> u64 {
    (secs.max(0.0) * 1000.0) as u64
}

fn eport(rng: &mut Rng) -> u16 {
    rng.range(32_768, 60_999) as u16
}

/// `base` + `n` (IPv4 or IPv6).
fn add(base: IpAddr, n: u32) -> IpAddr {
    match base {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).wrapping_add(n).into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add(u128::from(n)).into()),
    }
}

/// Every address the attacks use, so the background keeps out of them.
#[must_use]
pub fn reserved(cfg: &ScenarioConfig) -> (BTreeSet<IpAddr>, Vec<ipnet::IpNet>) {
    let a = &cfg.attacks;
    let mut set = BTreeSet::new();
    for s in &a.scans {
        set.insert(s.src);
        match s.kind {
            ScanKind::Horizontal => {
                for i in 0..s.count {
                    set.insert(add(s.dst, i));
                }
            }
            ScanKind::Vertical => {
                set.insert(s.dst);
            }
        }
    }
    for b in &a.beacons {
        set.insert(b.dst);
    }
    for e in &a.exfiltrations {
        set.insert(e.dst);
    }
    let nets = a.floods.iter().flat_map(|f| f.src_nets.clone()).collect();
    (set, nets)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one ground-truth entry, field by field"
)]
fn truth(
    id: &str,
    category: Category,
    kind: &str,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    ports: Vec<u16>,
    (start_ms, end_ms): (u64, u64),
    params: serde_json::Value,
) -> AttackTruth {
    AttackTruth {
        id: id.to_owned(),
        category,
        kind: kind.to_owned(),
        src,
        dst,
        ports,
        start_ms,
        end_ms,
        params,
        records: 0,
        packets: 0,
        bytes: 0,
        true_packets: 0,
        true_bytes: 0,
        sent_units: 0,
        observed_units: 0,
        observable: false,
    }
}

/// Emits all attacks of `cfg` into `sink` (after the background, whose records the
/// floods measure their victim's baseline on) and returns their ground truth, in label
/// order. Attacks starting after the scenario end are left out.
pub fn generate(cfg: &ScenarioConfig, sink: &mut Sink) -> Vec<AttackTruth> {
    let mut out = Vec::new();
    let (start, end) = (cfg.start_ms(), cfg.end_ms());
    let a = &cfg.attacks;
    for s in &a.scans {
        let t0 = start + s.start_s * 1000;
        if t0 >= end {
            continue;
        }
        let label = Label::Attack(out.len());
        let mut rng = Rng::fork(cfg.seed, &format!("scan/{}", s.id));
        out.push(scan(&mut rng, s, t0, label, sink));
    }
    for b in &a.beacons {
        let t0 = start + b.start_s * 1000;
        if t0 >= end || (!sink.ipv6 && (b.src.is_ipv6() || b.dst.is_ipv6())) {
            continue;
        }
        let label = Label::Attack(out.len());
        let mut rng = Rng::fork(cfg.seed, &format!("beacon/{}", b.id));
        let stop = b.duration_s.map_or(end, |d| (t0 + d * 1000).min(end));
        out.push(beacon(&mut rng, b, t0, stop, label, sink));
    }
    for e in &a.exfiltrations {
        let t0 = start + e.start_s * 1000;
        if t0 >= end || (!sink.ipv6 && (e.src.is_ipv6() || e.dst.is_ipv6())) {
            continue;
        }
        let label = Label::Attack(out.len());
        let mut rng = Rng::fork(cfg.seed, &format!("exfil/{}", e.id));
        out.push(exfil(&mut rng, e, t0, end, label, sink));
    }
    for f in &a.floods {
        let t0 = start + f.start_s * 1000;
        if t0 >= end || (!sink.ipv6 && f.victim.is_ipv6()) {
            continue;
        }
        let label = Label::Attack(out.len());
        let mut rng = Rng::fork(cfg.seed, &format!("flood/{}", f.id));
        out.push(flood(&mut rng, f, t0, end, label, sink));
    }
    out
}

fn scan(rng: &mut Rng, s: &ScanSpec, t0: u64, label: Label, sink: &mut Sink) -> AttackTruth {
    let slow = s.probe_interval_ms >= 10_000;
    let sport = eport(rng);
    let mut targets: Vec<(IpAddr, u16)> = match s.kind {
        ScanKind::Horizontal => (0..s.count).map(|i| (add(s.dst, i), s.port)).collect(),
        ScanKind::Vertical => {
            let top = u32::from(s.port).max(s.count).min(65_535);
            let mut ports = BTreeSet::new();
            while ports.len() < s.count.min(top) as usize {
                ports.insert(rng.range(1, u64::from(top)) as u16);
            }
            ports.into_iter().map(|p| (s.dst, p)).collect()
        }
    };
    rng.shuffle(&mut targets);
    // Horizontal: which hosts are alive is decided per host.
    let alive: Vec<bool> = targets
        .iter()
        .map(|_| rng.chance(s.answer_fraction))
        .collect();
    let mut t = t0;
    let mut last = t0;
    for (i, &(dst, port)) in targets.iter().enumerate() {
        let answer = alive[i].then(|| s.open_ports.contains(&port));
        sink.syn_probe(label, (s.src, sport), (dst, port), t, answer);
        last = t;
        t += ms(s.probe_interval_ms as f64 / 1000.0 * rng.range_f64(0.9, 1.1)).max(1);
    }
    let (kind, dst, ports) = match s.kind {
        ScanKind::Horizontal => (
            if slow {
                "slow_horizontal_scan"
            } else {
                "horizontal_scan"
            },
            None,
            vec![s.port],
        ),
        ScanKind::Vertical => {
            let mut p: Vec<u16> = targets.iter().map(|t| t.1).collect();
            p.sort_unstable();
            (
                if slow {
                    "slow_vertical_scan"
                } else {
                    "vertical_scan"
                },
                Some(s.dst),
                p,
            )
        }
    };
    let answered = alive.iter().filter(|&&a| a).count();
    let mut t = truth(
        &s.id,
        Category::PortScan,
        kind,
        Some(s.src),
        dst,
        ports,
        (t0, last + 50),
        json!({
            "scan": s.kind,
            "targets": s.count,
            "first_target": s.dst,
            "probe_interval_ms": s.probe_interval_ms,
            "probes": targets.len(),
            "answered": answered,
            "open_ports": s.open_ports,
            "source_port": sport,
        }),
    );
    t.sent_units = targets.len() as u64;
    t
}

fn beacon(
    rng: &mut Rng,
    b: &BeaconSpec,
    t0: u64,
    stop: u64,
    label: Label,
    sink: &mut Sink,
) -> AttackTruth {
    let mut beats = Vec::new();
    let mut t = t0;
    while t < stop {
        beats.push(t);
        let gap = b.interval_s * (1.0 + rng.range_f64(-b.jitter, b.jitter));
        t += ms(gap).max(1);
    }
    // Leave out exactly round(missing × n) beats, never the first or the last.
    let n = beats.len();
    let drop = ((b.missing * n as f64).round() as usize).min(n.saturating_sub(2));
    let mut idx: Vec<usize> = (1..n.saturating_sub(1)).collect();
    rng.shuffle(&mut idx);
    let dropped: BTreeSet<usize> = idx.into_iter().take(drop).collect();
    let kept: Vec<u64> = beats
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, &t)| t)
        .collect();
    let proto = b.protocol.number();
    // Ephemeral ports handed out in sequence, as Windows and Linux (per destination) do,
    // so every beat is a distinct connection.
    let mut port = rng.range(49_152, 65_535);
    for &at in &kept {
        port = 49_152 + (port - 49_152 + rng.range(1, 3)) % 16_384;
        let mut c = Conv::new(b.src, b.dst, port as u16, b.port, proto);
        c.start_ms = at;
        c.dur_ms = if proto == TCP {
            rng.range(40, 300)
        } else {
            rng.range(5, 80)
        };
        c.out_pkts = rng.range(b.packets[0], b.packets[1]);
        c.out_bytes = (c.out_pkts * b.bytes_per_packet) as f64 as u64;
        c.out_bytes = (c.out_bytes as f64 * rng.range_f64(0.9, 1.1)) as u64;
        if b.reply {
            c.in_pkts = c.out_pkts;
            c.in_bytes = c.out_bytes * 3 / 2;
        }
        sink.conv(label, &c);
    }
    let last = kept.last().copied().unwrap_or(t0);
    let mut t = truth(
        &b.id,
        Category::Beaconing,
        "beacon",
        Some(b.src),
        Some(b.dst),
        vec![b.port],
        (t0, last + 300),
        json!({
            "protocol": b.protocol,
            "interval_s": b.interval_s,
            "jitter": b.jitter,
            "packets_per_connection": b.packets,
            "bytes_per_packet": b.bytes_per_packet,
            "missing": b.missing,
            "beats_scheduled": n,
            "beats_sent": kept.len(),
        }),
    );
    t.sent_units = kept.len() as u64;
    t
}

fn exfil(
    rng: &mut Rng,
    e: &ExfilSpec,
    t0: u64,
    end: u64,
    label: Label,
    sink: &mut Sink,
) -> AttackTruth {
    let mut c = Conv::new(e.src, e.dst, eport(rng), e.port, TCP);
    c.start_ms = t0;
    c.dur_ms = (e.duration_s * 1000).max(1000);
    c.out_pkts = e.bytes.div_ceil(1380) + 2;
    c.out_bytes = e.bytes + c.out_pkts * 52;
    c.in_pkts = c.out_pkts / 2 + 2;
    c.in_bytes = c.in_pkts * 52 + 4000;
    sink.conv(label, &c);
    let slow = e.duration_s >= 2 * 3600;
    let stop = (t0 + c.dur_ms).min(end);
    let mut t = truth(
        &e.id,
        Category::Exfiltration,
        if slow {
            "slow_exfiltration"
        } else {
            "exfiltration"
        },
        Some(e.src),
        Some(e.dst),
        vec![e.port],
        (t0, stop),
        json!({
            "bytes": e.bytes,
            "duration_s": e.duration_s,
            "rate_bps": e.bytes as f64 * 8.0 / e.duration_s.max(1) as f64,
            "source_port": c.cport,
            "complete_in_scenario": t0 + c.dur_ms <= end,
        }),
    );
    t.sent_units = 1;
    t
}

fn flood(
    rng: &mut Rng,
    f: &FloodSpec,
    t0: u64,
    end: u64,
    label: Label,
    sink: &mut Sink,
) -> AttackTruth {
    // Baseline: the victim's mean inbound rates over the hour before (or what exists).
    let from = t0.saturating_sub(3_600_000);
    let (mut pk, mut by) = (0u64, 0u64);
    let mut earliest = t0;
    for p in &sink.out {
        if p.rec.dst_addr == f.victim && p.rec.start_ms >= from && p.rec.start_ms < t0 {
            pk += p.rec.raw_packets;
            by += p.rec.raw_bytes;
            earliest = earliest.min(p.rec.start_ms);
        }
    }
    let span_s = ((t0 - from) as f64 / 1000.0).max(1.0);
    let baseline_pps = pk as f64 / span_s;
    let baseline_bits = by as f64 * 8.0 / span_s;
    let bytes_per_pkt = f.packet_bytes.max(28) as f64;
    let pps = (f.factor * baseline_pps)
        .max(f.min_pps)
        .max(f.factor * baseline_bits / 8.0 / bytes_per_pkt);
    let dur_s = f.duration_s.max(1) as f64;
    let total_pkts = pps * dur_s;
    // Sources: distinct addresses from the networks.
    let pool: Vec<IpAddr> = f
        .src_nets
        .iter()
        .flat_map(|n| {
            if n.prefix_len() == n.max_prefix_len() {
                vec![n.addr()]
            } else {
                n.hosts().take(65_536).collect()
            }
        })
        .collect();
    let mut pool = pool;
    rng.shuffle(&mut pool);
    let sources: Vec<IpAddr> = pool.into_iter().take(f.sources.max(1) as usize).collect();
    let flows = sources.len() as f64 * f64::from(f.flows_per_source.max(1));
    let proto = f.protocol.number();
    let mut sent = 0u64;
    for &src in &sources {
        let base = eport(rng);
        for j in 0..f.flows_per_source.max(1) {
            let sport = if f.src_port == 0 {
                base.wrapping_add(j as u16).max(1024)
            } else {
                f.src_port
            };
            let dport = if f.port == 0 { eport(rng) } else { f.port };
            let mut c = Conv::new(src, f.victim, sport, dport, proto);
            let lead = rng.range(0, 500);
            c.start_ms = t0 + lead;
            c.dur_ms = ms(dur_s) - lead;
            c.out_pkts = ((total_pkts / flows) * rng.range_f64(0.8, 1.2))
                .round()
                .max(1.0) as u64;
            c.out_bytes = c.out_pkts * f.packet_bytes.max(28);
            c.whole = false;
            sent += c.out_pkts;
            sink.conv(label, &c);
        }
    }
    let single = (sources.len() == 1).then(|| sources[0]);
    let actual_pps = sent as f64 / dur_s;
    let stop = (t0 + ms(dur_s)).min(end);
    let mut t = truth(
        &f.id,
        Category::Volumetric,
        "flood",
        single,
        Some(f.victim),
        if f.port == 0 { vec![] } else { vec![f.port] },
        (t0, stop),
        json!({
            "protocol": f.protocol,
            "sources": sources.len(),
            "src_nets": f.src_nets,
            "src_port": f.src_port,
            "duration_s": f.duration_s,
            "baseline_window_s": span_s,
            "baseline_pps": baseline_pps,
            "baseline_bps": baseline_bits,
            "flood_pps": actual_pps,
            "flood_bps": actual_pps * bytes_per_pkt * 8.0,
            "ratio_pps": if baseline_pps > 0.0 { actual_pps / baseline_pps } else { f64::INFINITY },
            "ratio_bps": if baseline_bits > 0.0 { actual_pps * bytes_per_pkt * 8.0 / baseline_bits } else { f64::INFINITY },
            "baseline_first_record_ms": earliest,
        }),
    );
    t.sent_units = flows as u64;
    t
}

#[cfg(test)]
mod tests {
    use super::super::config::Proto;
    use super::*;

    #[test]
    fn add_wraps_within_family() {
        assert_eq!(
            add("10.0.8.255".parse().unwrap(), 1),
            "10.0.9.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            add("2001:db8::ff".parse().unwrap(), 1),
            "2001:db8::100".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn proto_numbers() {
        assert_eq!(Proto::Tcp.number(), 6);
        assert_eq!(Proto::Udp.number(), 17);
    }
}
