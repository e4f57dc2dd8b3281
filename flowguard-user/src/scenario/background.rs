//! The benign background: web browsing, DNS, NTP, `SaaS` keepalives, updates from a CDN,
//! a CDN origin sync, a public web server, intranet file shares, remote admin and the
//! nightly backup.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "traffic arithmetic on small positive floats and counts"
)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::Label;
use super::config::{BackgroundConfig, ScenarioConfig};
use super::flow::{Conv, Sink, TCP, UDP};
use super::rng::{Rng, Zipf};

/// What a benign record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenignKind {
    /// Workstations browsing external web servers.
    Web,
    /// DNS from hosts to the internal resolvers.
    Dns,
    /// The resolvers' queries to their upstream forwarders (allow-listed).
    DnsUpstream,
    /// NTP polls from every host.
    Ntp,
    /// `SaaS` client polling every minute (new TLS connection each time).
    SaasPoll,
    /// `SaaS` push channel: persistent TCP with heartbeats.
    SaasPush,
    /// Update checks and downloads from a CDN.
    Updates,
    /// The content server's periodic upload to the CDN ingest (allow-listed).
    CdnSync,
    /// Internet clients of the public web server.
    PublicServer,
    /// Workstations using the intranet file/app server.
    Intranet,
    /// Remote administration (SSH) of the exposed server.
    Admin,
    /// The nightly backup (allow-listed window).
    Backup,
}

impl BenignKind {
    /// Every kind, in order.
    pub const ALL: [BenignKind; 12] = [
        Self::Web,
        Self::Dns,
        Self::DnsUpstream,
        Self::Ntp,
        Self::SaasPoll,
        Self::SaasPush,
        Self::Updates,
        Self::CdnSync,
        Self::PublicServer,
        Self::Intranet,
        Self::Admin,
        Self::Backup,
    ];
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Internal DNS resolvers.
pub const RESOLVERS: [IpAddr; 2] = [v4(10, 0, 0, 53), v4(10, 0, 0, 54)];
/// The resolvers' upstream forwarders.
pub const UPSTREAM_DNS: [IpAddr; 2] = [v4(198, 51, 100, 53), v4(192, 0, 2, 53)];
/// Public NTP servers every host uses.
pub const NTP_SERVERS: [IpAddr; 3] = [
    v4(203, 0, 113, 123),
    v4(198, 51, 100, 123),
    v4(192, 0, 2, 123),
];
/// The polling `SaaS` service (a load-balanced pair).
pub const SAAS_POLL: [IpAddr; 2] = [v4(198, 51, 100, 10), v4(198, 51, 100, 11)];
/// The push-channel `SaaS` service.
pub const SAAS_PUSH: IpAddr = v4(203, 0, 113, 20);
/// The update check service.
pub const UPDATE_CHECK: [IpAddr; 2] = [v4(203, 0, 113, 30), v4(203, 0, 113, 31)];
/// CDN edges serving update downloads: 198.51.100.40–47.
pub const CDN_FIRST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);
/// CDN ingest the content server syncs to.
pub const CDN_INGEST: IpAddr = v4(192, 0, 2, 40);
/// The content server.
pub const CONTENT_SERVER: IpAddr = v4(10, 0, 4, 20);
/// The public web server (port 443).
pub const PUBLIC_SERVER: IpAddr = v4(10, 0, 5, 10);
/// The intranet file/app server (445, 8080).
pub const INTRANET_SERVER: IpAddr = v4(10, 0, 5, 20);
/// The server exposed for SSH administration.
pub const EXPOSED_SERVER: IpAddr = v4(10, 0, 5, 30);
/// The remote administrator.
pub const ADMIN: IpAddr = v4(203, 0, 113, 5);

/// The n-th workstation: 10.0.1.10 upward, 240 per /24.
#[must_use]
pub fn workstation(n: u32) -> IpAddr {
    v4(10, 0, 1 + (n / 240) as u8, 10 + (n % 240) as u8)
}

/// The IPv6 address of a dual-stack workstation, spelled like its IPv4 address:
/// 10.0.1.35 is `fd00:0:0:1::35`.
#[must_use]
pub fn workstation_v6(v4addr: IpAddr) -> IpAddr {
    let IpAddr::V4(a) = v4addr else {
        return v4addr;
    };
    let o = a.octets();
    // The decimal digits read as hex: 35 → 0x35.
    let hexed = |b: u8| u16::from_str_radix(&b.to_string(), 16).unwrap_or(u16::from(b));
    IpAddr::V6(Ipv6Addr::new(
        0xfd00,
        0,
        0,
        hexed(o[2]),
        0,
        0,
        0,
        hexed(o[3]),
    ))
}

/// Diurnal activity in (0, 1] at Unix ms `t`: a bell peaking at 13:30 UTC with a floor
/// of 8% at night.
#[must_use]
pub fn diurnal(t_ms: u64) -> f64 {
    let h = (t_ms % 86_400_000) as f64 / 3_600_000.0;
    let d = (h - 13.5) / 4.0;
    0.08 + 0.92 * (-d * d).exp()
}

/// Ephemeral client port.
fn eport(rng: &mut Rng) -> u16 {
    rng.range(32_768, 60_999) as u16
}

fn ms(secs: f64) -> u64 {
    (secs.max(0.0) * 1000.0) as u64
}

/// Times of a Poisson process of `rate_per_hour` at peak, thinned by `diurnal` (when
/// `shaped`), over `[start, end)`.
fn poisson_times(
    rng: &mut Rng,
    start: u64,
    end: u64,
    rate_per_hour: f64,
    shaped: bool,
) -> Vec<u64> {
    let mut out = Vec::new();
    if rate_per_hour <= 0.0 {
        return out;
    }
    let mean_gap = 3_600_000.0 / rate_per_hour;
    let mut t = start as f64 + rng.exp(mean_gap);
    let end_f = end as f64;
    while t < end_f {
        let ti = t as u64;
        if !shaped || rng.chance(diurnal(ti)) {
            out.push(ti);
        }
        t += rng.exp(mean_gap);
    }
    out
}

/// Packets for `bytes` of payload at ~1380 bytes a packet, plus handshake packets.
fn pkts_for(bytes: u64) -> u64 {
    bytes.div_ceil(1380) + 2
}

/// Addresses the background may not use as ordinary web servers or clients: every
/// service above and every address an attack uses.
pub struct Plan {
    /// External web servers (IPv4), most popular first.
    pub web_v4: Vec<IpAddr>,
    /// External web servers (IPv6).
    pub web_v6: Vec<IpAddr>,
}

impl Plan {
    /// Builds the server pools, leaving out `reserved` addresses and networks.
    #[must_use]
    pub fn new(rng: &mut Rng, reserved: &BTreeSet<IpAddr>, reserved_nets: &[ipnet::IpNet]) -> Self {
        let mut fixed: BTreeSet<IpAddr> = reserved.clone();
        fixed.extend(RESOLVERS);
        fixed.extend(UPSTREAM_DNS);
        fixed.extend(NTP_SERVERS);
        fixed.extend(SAAS_POLL);
        fixed.insert(SAAS_PUSH);
        fixed.extend(UPDATE_CHECK);
        fixed.insert(CDN_INGEST);
        fixed.insert(ADMIN);
        let cdn = CDN_FIRST.octets();
        for i in 0..8 {
            fixed.insert(v4(cdn[0], cdn[1], cdn[2], cdn[3] + i));
        }
        let mut web_v4 = Vec::new();
        for (a, b, c) in [(203, 0, 113), (198, 51, 100), (192, 0, 2)] {
            for d in 1..=254 {
                let ip = v4(a, b, c, d);
                if !fixed.contains(&ip) && !reserved_nets.iter().any(|n| n.contains(&ip)) {
                    web_v4.push(ip);
                }
            }
        }
        rng.shuffle(&mut web_v4);
        let mut web_v6 = Vec::new();
        let mut seen = BTreeSet::new();
        while web_v6.len() < 200 {
            let ip = IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x100,
                rng.range(0, 0xff) as u16,
                0,
                0,
                0,
                rng.range(1, 0xffff) as u16,
            ));
            if !fixed.contains(&ip) && seen.insert(ip) {
                web_v6.push(ip);
            }
        }
        Self { web_v4, web_v6 }
    }
}

/// Generates the whole background into `sink`.
#[expect(
    clippy::too_many_lines,
    reason = "one section per service, in sequence"
)]
pub fn generate(cfg: &ScenarioConfig, plan: &Plan, sink: &mut Sink) {
    let bg: &BackgroundConfig = &cfg.background;
    let (start, end) = (cfg.start_ms(), cfg.end_ms());
    let seed = cfg.seed;
    let zipf4 = Zipf::new(plan.web_v4.len(), 1.0);
    let zipf6 = Zipf::new(plan.web_v6.len(), 1.0);
    let hosts: Vec<IpAddr> = (0..bg.workstations).map(workstation).collect();
    let servers = [
        RESOLVERS[0],
        RESOLVERS[1],
        PUBLIC_SERVER,
        INTRANET_SERVER,
        EXPOSED_SERVER,
        CONTENT_SERVER,
        bg.backup.host,
    ];

    // --- Web browsing, with its DNS lookups, and the intranet server.
    let mut rng = Rng::fork(seed, "web");
    for (i, &host) in hosts.iter().enumerate() {
        let dual = rng.chance(bg.ipv6_fraction);
        let v6_addr = workstation_v6(host);
        let factor = rng.lognormal(1.0, 0.6).min(4.0);
        let resolver = RESOLVERS[i % 2];
        for t in poisson_times(
            &mut rng,
            start,
            end,
            bg.web_sessions_per_hour * factor,
            true,
        ) {
            let lookups = rng.range(1, 3);
            for _ in 0..lookups {
                let q = t + rng.range(0, 2000);
                let r = if rng.chance(0.9) {
                    resolver
                } else {
                    RESOLVERS[1 - i % 2]
                };
                dns_query(&mut rng, sink, host, r, q);
            }
            let conns = 1 + (rng.exp(2.0) as u64).min(11);
            for _ in 0..conns {
                let v6 = dual && sink.ipv6 && rng.chance(0.4);
                let (client, server) = if v6 {
                    (v6_addr, plan.web_v6[zipf6.sample(&mut rng)])
                } else {
                    (host, plan.web_v4[zipf4.sample(&mut rng)])
                };
                let at = t + 50 + rng.range(0, 20_000);
                let port = if rng.chance(0.92) { 443 } else { 80 };
                if rng.chance(bg.web_failure_rate) {
                    // No answer: three SYNs (retries) within 3 s, one record.
                    let cp = eport(&mut rng);
                    let ready = at + 3000 + 15_000 + rng.range(50, 1000);
                    sink.record(
                        Label::Benign(BenignKind::Web),
                        (client, cp),
                        (server, port),
                        TCP,
                        super::flow::SYN,
                        (at, at + 3000),
                        3,
                        180,
                        ready,
                    );
                    continue;
                }
                let resp = rng.lognormal(25_000.0, 1.5).min(200e6) as u64 + 300;
                let mut req = rng.lognormal(900.0, 0.8) as u64 + 200;
                if rng.chance(0.01) {
                    req += rng.lognormal(2e6, 1.0).min(50e6) as u64;
                }
                let in_pkts = pkts_for(resp);
                let out_pkts = in_pkts / 2 + pkts_for(req);
                let mut c = Conv::new(client, server, eport(&mut rng), port, TCP);
                c.start_ms = at;
                c.dur_ms = (rng.lognormal(1500.0, 1.2) as u64 + resp / 2000).min(600_000);
                c.out_pkts = out_pkts;
                c.out_bytes = req + out_pkts * 52;
                c.in_pkts = in_pkts;
                c.in_bytes = resp + in_pkts * 52;
                sink.conv(Label::Benign(BenignKind::Web), &c);
            }
        }
        // Intranet: file shares and the app on the intranet server.
        for t in poisson_times(&mut rng, start, end, 2.0, true) {
            let (port, bytes) = if rng.chance(0.6) {
                (445, rng.lognormal(400_000.0, 1.3).min(200e6) as u64)
            } else {
                (8080, rng.lognormal(40_000.0, 1.0) as u64)
            };
            let mut c = Conv::new(host, INTRANET_SERVER, eport(&mut rng), port, TCP);
            c.start_ms = t;
            c.dur_ms = rng.lognormal(20_000.0, 1.0).min(1_800_000.0) as u64;
            c.in_pkts = pkts_for(bytes);
            c.in_bytes = bytes + c.in_pkts * 52;
            c.out_pkts = c.in_pkts / 2 + 4;
            c.out_bytes = c.out_pkts * 90;
            sink.conv(Label::Benign(BenignKind::Intranet), &c);
        }
    }

    // --- NTP: every host, ntpd-style poll intervals 64..1024 s.
    let mut rng = Rng::fork(seed, "ntp");
    for &host in hosts.iter().chain(servers.iter()) {
        let server = NTP_SERVERS[rng.index(NTP_SERVERS.len())];
        let fixed_port = rng.chance(0.5);
        let mut exp = rng.range(6, 10);
        let mut polls_at_exp = 0;
        let mut t = start + rng.range(0, 1000 << exp);
        while t < end {
            let cport = if fixed_port { 123 } else { eport(&mut rng) };
            let mut c = Conv::new(host, server, cport, 123, UDP);
            c.start_ms = t;
            c.dur_ms = rng.range(5, 40);
            (c.out_pkts, c.out_bytes, c.in_pkts, c.in_bytes) = (1, 76, 1, 76);
            sink.conv(Label::Benign(BenignKind::Ntp), &c);
            polls_at_exp += 1;
            if polls_at_exp >= 8 && exp < 10 {
                exp += 1;
                polls_at_exp = 0;
            }
            let period = (1u64 << exp) as f64 * rng.range_f64(0.99, 1.01);
            t += ms(period);
        }
    }

    // --- SaaS poll: a new TLS connection every minute from most workstations.
    let mut rng = Rng::fork(seed, "saas-poll");
    for &host in &hosts {
        if !rng.chance(bg.saas_poll_fraction) {
            continue;
        }
        let interval = bg.saas_poll_interval_s;
        let mut t = start + ms(rng.range_f64(0.0, interval));
        while t < end {
            let server = SAAS_POLL[rng.index(2)];
            let mut c = Conv::new(host, server, eport(&mut rng), 443, TCP);
            c.start_ms = t;
            c.dur_ms = rng.range(250, 900);
            c.out_pkts = rng.range(7, 9);
            c.out_bytes = 1400 + rng.range(0, 400);
            c.in_pkts = rng.range(6, 8);
            c.in_bytes = 4800 + rng.range(0, 800);
            sink.conv(Label::Benign(BenignKind::SaasPoll), &c);
            t += ms(interval * rng.range_f64(0.97, 1.03));
        }
    }

    // --- SaaS push: persistent connection, heartbeat records of one 5-tuple; reconnects.
    let mut rng = Rng::fork(seed, "saas-push");
    for &host in &hosts {
        if !rng.chance(bg.saas_push_fraction) {
            continue;
        }
        let interval = bg.saas_push_interval_s;
        let mut t = start + ms(rng.range_f64(0.0, interval));
        while t < end {
            // Connect: TLS handshake and initial sync.
            let cport = eport(&mut rng);
            let mut c = Conv::new(host, SAAS_PUSH, cport, 443, TCP);
            c.start_ms = t;
            c.dur_ms = rng.range(200, 600);
            (c.out_pkts, c.out_bytes, c.in_pkts, c.in_bytes) = (10, 2200, 9, 7500);
            c.whole = false;
            sink.conv(Label::Benign(BenignKind::SaasPush), &c);
            let life = t + ms(rng.lognormal(7200.0, 0.7));
            t += ms(interval);
            while t < end && t < life {
                let mut h = Conv::new(host, SAAS_PUSH, cport, 443, TCP);
                h.start_ms = t;
                h.dur_ms = rng.range(10, 80);
                (h.out_pkts, h.out_bytes, h.in_pkts, h.in_bytes) = (1, 93, 1, 93);
                if rng.chance(0.05) {
                    // A message arrives.
                    h.in_pkts = 3;
                    h.in_bytes = rng.range(400, 3000);
                    h.out_pkts = 2;
                    h.out_bytes = 156;
                }
                h.whole = false;
                sink.conv(Label::Benign(BenignKind::SaasPush), &h);
                t += ms(interval * rng.range_f64(0.995, 1.005));
            }
            t += ms(rng.range_f64(1.0, 30.0));
        }
    }

    // --- Updates: periodic checks; some download from the CDN.
    let mut rng = Rng::fork(seed, "updates");
    for &host in hosts.iter().chain(servers.iter()) {
        let interval = bg.update_check_interval_s;
        let mut t = start + ms(rng.range_f64(0.0, interval));
        while t < end {
            let mut c = Conv::new(host, UPDATE_CHECK[rng.index(2)], eport(&mut rng), 443, TCP);
            c.start_ms = t;
            c.dur_ms = rng.range(300, 1500);
            (c.out_pkts, c.out_bytes, c.in_pkts, c.in_bytes) = (10, 2100, 12, 8600);
            sink.conv(Label::Benign(BenignKind::Updates), &c);
            if rng.chance(bg.update_download_fraction) {
                let cdn = CDN_FIRST.octets();
                let edge = v4(cdn[0], cdn[1], cdn[2], cdn[3] + rng.range(0, 7) as u8);
                let bytes = rng.lognormal(80e6, 0.7).min(1e9) as u64;
                let rate = rng.range_f64(2e6, 8e6);
                let mut d = Conv::new(host, edge, eport(&mut rng), 443, TCP);
                d.start_ms = t + 2000;
                let secs = bytes as f64 / rate;
                d.dur_ms = ms(secs);
                d.in_pkts = pkts_for(bytes);
                d.in_bytes = bytes + d.in_pkts * 52;
                d.out_pkts = d.in_pkts / 2;
                d.out_bytes = d.out_pkts * 52 + 600;
                sink.conv(Label::Benign(BenignKind::Updates), &d);
            }
            t += ms(interval * rng.range_f64(0.9, 1.1));
        }
    }

    // --- CDN origin sync: the content server uploads every 15 min (allow-listed).
    let mut rng = Rng::fork(seed, "cdn-sync");
    let mut t = start + ms(rng.range_f64(0.0, bg.cdn_sync_interval_s));
    while t < end {
        let bytes = rng.range(2_000_000, 10_000_000);
        let mut c = Conv::new(CONTENT_SERVER, CDN_INGEST, eport(&mut rng), 443, TCP);
        c.start_ms = t;
        c.dur_ms = bytes / 5000 + rng.range(100, 500);
        c.out_pkts = pkts_for(bytes);
        c.out_bytes = bytes + c.out_pkts * 52;
        c.in_pkts = c.out_pkts / 2;
        c.in_bytes = c.in_pkts * 52 + 900;
        sink.conv(Label::Benign(BenignKind::CdnSync), &c);
        t += ms(bg.cdn_sync_interval_s + rng.range_f64(-3.0, 3.0));
    }

    // --- Public web server: Internet clients, half of the load flat, half diurnal.
    let mut rng = Rng::fork(seed, "public");
    let clients_zipf = Zipf::new(plan.web_v4.len(), 0.8);
    let rate = bg.public_server_conn_per_s * 3600.0;
    let flat = poisson_times(&mut rng, start, end, rate / 2.0, false);
    let shaped = poisson_times(&mut rng, start, end, rate / 2.0, true);
    for t in flat.into_iter().chain(shaped) {
        let client = plan.web_v4[clients_zipf.sample(&mut rng)];
        let resp = rng.lognormal(20_000.0, 1.2).min(50e6) as u64 + 400;
        let mut c = Conv::new(client, PUBLIC_SERVER, eport(&mut rng), 443, TCP);
        c.start_ms = t;
        c.dur_ms = rng.lognormal(800.0, 1.0) as u64 + resp / 3000;
        c.in_pkts = pkts_for(resp);
        c.in_bytes = resp + c.in_pkts * 52;
        c.out_pkts = c.in_pkts / 2 + 4;
        c.out_bytes = c.out_pkts * 60 + 700;
        sink.conv(Label::Benign(BenignKind::PublicServer), &c);
    }

    // --- Remote administration of the exposed server.
    let mut rng = Rng::fork(seed, "admin");
    for t in poisson_times(&mut rng, start, end, 0.5, false) {
        let mut c = Conv::new(ADMIN, EXPOSED_SERVER, eport(&mut rng), 22, TCP);
        c.start_ms = t;
        c.dur_ms = rng.lognormal(900_000.0, 0.6).min(3.0 * 3_600_000.0) as u64;
        let secs = c.dur_ms / 1000;
        c.out_pkts = secs / 2 + 20;
        c.out_bytes = c.out_pkts * 90;
        c.in_pkts = secs / 2 + 30;
        c.in_bytes = c.in_pkts * 200;
        sink.conv(Label::Benign(BenignKind::Admin), &c);
    }

    // --- The nightly backup.
    let b = &bg.backup;
    if b.enabled && b.streams > 0 {
        let mut rng = Rng::fork(seed, "backup");
        let day0 = start / 86_400_000 * 86_400_000;
        let mut day = day0.saturating_sub(86_400_000);
        while day < end {
            let at = day + u64::from(b.start_minute_utc) * 60_000;
            let secs = b.bytes as f64 * 8.0 / b.rate_bps.max(1e3);
            if at + ms(secs) > start && at < end {
                let per = b.bytes / u64::from(b.streams);
                for _ in 0..b.streams {
                    let mut c = Conv::new(b.host, b.server, eport(&mut rng), b.port, TCP);
                    c.start_ms = at + rng.range(0, 3000);
                    c.dur_ms = ms(secs * rng.range_f64(0.97, 1.03));
                    c.out_pkts = pkts_for(per);
                    c.out_bytes = per + c.out_pkts * 52;
                    c.in_pkts = c.out_pkts / 2;
                    c.in_bytes = c.in_pkts * 52;
                    sink.conv(Label::Benign(BenignKind::Backup), &c);
                }
            }
            day += 86_400_000;
        }
    }
}

/// One DNS query from `host` to `resolver`, and on a cache miss the resolver's upstream
/// query.
fn dns_query(rng: &mut Rng, sink: &mut Sink, host: IpAddr, resolver: IpAddr, t: u64) {
    let mut c = Conv::new(host, resolver, eport(rng), 53, UDP);
    c.start_ms = t;
    c.dur_ms = rng.range(1, 30);
    (c.out_pkts, c.out_bytes, c.in_pkts, c.in_bytes) =
        (1, rng.range(60, 90), 1, rng.range(90, 300));
    sink.conv(Label::Benign(BenignKind::Dns), &c);
    if rng.chance(0.3) {
        let up = UPSTREAM_DNS[rng.index(2)];
        let mut u = Conv::new(resolver, up, eport(rng), 53, UDP);
        u.start_ms = t + 1;
        u.dur_ms = rng.range(5, 25);
        (u.out_pkts, u.out_bytes, u.in_pkts, u.in_bytes) =
            (1, rng.range(70, 100), 1, rng.range(90, 400));
        sink.conv(Label::Benign(BenignKind::DnsUpstream), &u);
    }
}
