//! tshark as the reference decoder: run it on export captures and reduce each flow record
//! it shows to a [`Norm`].
//!
//! tshark is run with `-T json --no-duplicate-keys` (repeated fields, such as an IPFIX
//! biflow's forward and reverse octet counters, become arrays in wire order) and `-2`
//! (two-pass: a data set that precedes its template in the same packet is decoded, as
//! flowguard's pending-data queue does; one pass would show "no template found").
//! Everything tshark prints is a string; times are printed in UTC because TZ=UTC.

#![expect(
    clippy::many_single_char_names,
    reason = "date arithmetic and record fields read best with their usual letters"
)]

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::record::{Norm, norm_addr};

/// Runs a tool and returns its stdout; fails with its stderr.
fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .with_context(|| format!("running {}", Path::new(cmd.get_program()).display()))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The UDP destination ports of the datagrams in `pcap`.
///
/// # Errors
/// When tshark fails.
pub fn udp_dst_ports(pcap: &Path) -> Result<BTreeSet<u16>> {
    let out = run(Command::new("tshark").arg("-r").arg(pcap).args([
        "-T",
        "fields",
        "-e",
        "udp.dstport",
    ]))?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect())
}

/// Concatenates `files` in order into `out` (`mergecap -a`), or copies a single file.
///
/// # Errors
/// When mergecap fails.
pub fn concat(files: &[PathBuf], out: &Path) -> Result<()> {
    if let [one] = files {
        std::fs::copy(one, out)?;
        return Ok(());
    }
    run(Command::new("mergecap")
        .args(["-a", "-F", "pcap", "-w"])
        .arg(out)
        .args(files))?;
    Ok(())
}

/// What tshark decoded from one capture.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Data records (options records are not flows and are left out).
    pub records: Vec<Norm>,
    /// Options records (not flows, but they set sampling and clocks).
    pub options_records: usize,
    /// Data sets tshark could not decode ("no template found"), by (frame, set id).
    pub undecoded_sets: Vec<(u64, u16)>,
}

/// Decodes `pcap` with tshark, treating `ports` as NetFlow/IPFIX (`-d udp.port==P,cflow`); `extra` are further tshark arguments (Decode As rules for one vector).
///
/// # Errors
/// When tshark fails or prints something this reader does not understand.
pub fn decode(pcap: &Path, ports: &BTreeSet<u16>, extra: &[&str]) -> Result<Decoded> {
    let mut cmd = Command::new("tshark");
    cmd.env("TZ", "UTC").arg("-2").arg("-r").arg(pcap);
    for p in ports {
        cmd.args(["-d", &format!("udp.port=={p},cflow")]);
    }
    cmd.args(extra);
    cmd.args(["-T", "json", "--no-duplicate-keys"]);
    let out = run(&mut cmd)?;
    let packets: Vec<Value> = serde_json::from_slice(&out).context("tshark -T json output")?;
    Reader::default().read(&packets)
}

/// The first value of a field that may repeat (repeats are arrays, in wire order).
fn first(v: &Value) -> &Value {
    match v {
        Value::Array(a) => a.first().unwrap_or(&Value::Null),
        other => other,
    }
}

fn all(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

fn text<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key).map(first).and_then(Value::as_str)
}

/// An unsigned number, decimal or `0x` hex.
fn num(obj: &Value, key: &str) -> Option<u64> {
    let s = text(obj, key)?;
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn num_as<T: TryFrom<u64>>(obj: &Value, key: &str) -> Option<T> {
    num(obj, key).and_then(|n| T::try_from(n).ok())
}

/// "944948.659000000" (seconds, as tshark prints relative times) to milliseconds.
fn rel_ms(s: &str) -> Option<u64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let ms: String = frac.chars().chain("000".chars()).take(3).collect();
    Some(secs.parse::<u64>().ok()? * 1000 + ms.parse::<u64>().ok()?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "Jun  4, 2023 08:39:55.034000000 UTC" to Unix milliseconds (truncated, as flowguard
/// keeps milliseconds).
fn abs_ms(s: &str) -> Option<u64> {
    let w: Vec<&str> = s.split_whitespace().collect();
    let [mon, day, year, hms, "UTC"] = w.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = i64::try_from(months.iter().position(|x| x == mon)? + 1).ok()?;
    let d: i64 = day.trim_end_matches(',').parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let mut parts = hms.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let min: i64 = parts.next()?.parse().ok()?;
    let sec_ms = i64::try_from(rel_ms(parts.next()?)?).ok()?;
    let days = days_from_civil(y, m, d);
    u64::try_from(((days * 24 + h) * 60 + min) * 60_000 + sec_ms).ok()
}

/// The number N of a `Set N [...]` / `FlowSet N [...]` / `pdu N/M` key.
fn set_number(key: &str) -> Option<u32> {
    let rest = key
        .strip_prefix("FlowSet ")
        .or_else(|| key.strip_prefix("Set "))
        .or_else(|| key.strip_prefix("pdu "))?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The numbered children of an object whose keys start with `prefix` ("Flow ", "Set ",
/// "pdu "), in their number order (`serde_json`'s map does not keep the document order).
fn numbered<'a>(obj: &'a Value, prefixes: &[&str]) -> Vec<(&'a str, &'a Value)> {
    let Some(map) = obj.as_object() else {
        return Vec::new();
    };
    let mut v: Vec<(u32, &str, &Value)> = map
        .iter()
        .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p)))
        .filter_map(|(k, v)| {
            let n = set_number(k).or_else(|| {
                k.strip_prefix("Flow ")
                    .and_then(|r| r.split(' ').next()?.parse().ok())
            })?;
            Some((n, k.as_str(), v))
        })
        .collect();
    v.sort_by_key(|(n, _, _)| *n);
    v.into_iter().map(|(_, k, v)| (k, v)).collect()
}

/// Per (exporter, domain) state learned from options records.
#[derive(Debug, Default)]
struct DomainState {
    /// Template ids that are options templates.
    options_templates: HashSet<u16>,
    /// samplerId / selectorId → interval.
    samplers: HashMap<u64, u32>,
    /// Interval from an options record without a sampler id.
    default_rate: Option<u32>,
    /// systemInitTimeMilliseconds (IE 160), for IPFIX sysUpTime-relative times.
    init_ms: Option<u64>,
}

/// Header facts of one export packet.
#[derive(Clone, Copy, Debug)]
struct Header {
    version: u16,
    exporter: IpAddr,
    domain: u32,
    /// Export time, Unix ms (v5: secs + nsecs; v9/IPFIX: seconds only).
    export_ms: u64,
    /// v5/v9 sysUpTime, ms.
    uptime_ms: Option<u32>,
    /// v5 header sampling interval (low 14 bits), when non-zero.
    v5_sampling: Option<u32>,
}

/// The sampling interval an options or data record states itself, if any: samplingInterval
/// (34) or samplerRandomInterval (50), else RFC 5477 samplingPacketInterval and
/// samplingPacketSpace (305/306: take `interval`, skip `space`, so 1 in
/// (interval + space) / interval).
fn stated_rate(f: &Value) -> Option<u32> {
    let n = num(f, "cflow.sampling_interval")
        .filter(|&n| n > 0)
        .or_else(|| num(f, "cflow.sampler_random_interval").filter(|&n| n > 0))
        .or_else(|| {
            let i = num(f, "cflow.sampling_packet_interval").filter(|&i| i > 0)?;
            let s = num(f, "cflow.sampling_packet_space").unwrap_or(0);
            Some((i + s + i / 2) / i)
        })?;
    u32::try_from(n.max(1)).ok()
}

fn sampler_id(f: &Value) -> Option<u64> {
    num(f, "cflow.sampler_id").or_else(|| num(f, "cflow.selector_id"))
}

#[derive(Default)]
struct Reader {
    domains: HashMap<(IpAddr, u32), DomainState>,
    out: Decoded,
}

impl Reader {
    fn read(mut self, packets: &[Value]) -> Result<Decoded> {
        let mut parsed = Vec::new();
        for p in packets {
            let layers = &p["_source"]["layers"];
            let frame = num(&layers["frame"], "frame.number").unwrap_or(0);
            // One datagram may hold one cflow PDU; a tunnelled capture could hold more.
            let Some(cflow) = layers.get("cflow") else {
                continue;
            };
            let exporter = text(&layers["ip"], "ip.src")
                .or_else(|| text(&layers["ipv6"], "ipv6.src"))
                .context("export packet without an IP source")?
                .parse::<IpAddr>()?;
            for pdu in all(cflow) {
                let h = header(pdu, exporter).with_context(|| format!("frame {frame}"))?;
                parsed.push((frame, h, pdu));
            }
        }
        // Pass 1: which template ids are options templates (tshark -2 also knows every
        // template of the file before it prints the first packet).
        for (_, h, pdu) in &parsed {
            for (key, set) in numbered(pdu, &["FlowSet ", "Set "]) {
                let d = self.domains.entry((h.exporter, h.domain)).or_default();
                let Some(obj) = set.as_object() else { continue };
                for (k, t) in obj {
                    let Some(id) = num_as::<u16>(first(t), "cflow.template_id") else {
                        continue;
                    };
                    if k.starts_with("Options Template") {
                        d.options_templates.insert(id);
                    } else if k.starts_with("Template") && key.contains("(Data Template)") {
                        d.options_templates.remove(&id);
                    }
                }
            }
        }
        // Pass 2, packet by packet: its options records, then its data records. An options
        // record describes the exporter's sampling at that export time, so it applies to
        // the flows of its own packet whichever set comes first (RFC 7011 §3.4.2.2 and
        // RFC 3954 §6.1 set no order between sets of one message).
        for (frame, h, pdu) in parsed {
            if h.version == 5 {
                for (_, rec) in numbered(pdu, &["pdu "]) {
                    let n = self.record(&h, rec)?;
                    self.out.records.push(n);
                }
                continue;
            }
            for options_pass in [true, false] {
                self.sets(frame, &h, pdu, options_pass)?;
            }
        }
        Ok(self.out)
    }

    fn sets(&mut self, frame: u64, h: &Header, pdu: &Value, options_pass: bool) -> Result<()> {
        {
            for (key, set) in numbered(pdu, &["FlowSet ", "Set "]) {
                if key.contains("Template)") {
                    continue;
                }
                let Some(id) = num_as::<u16>(set, "cflow.flowset_id") else {
                    continue;
                };
                if set
                    .as_object()
                    .is_some_and(|o| o.keys().any(|k| k.contains("no template found")))
                {
                    if !options_pass {
                        self.out.undecoded_sets.push((frame, id));
                    }
                    continue;
                }
                let options = self
                    .domains
                    .get(&(h.exporter, h.domain))
                    .is_some_and(|d| d.options_templates.contains(&id));
                if options != options_pass {
                    continue;
                }
                for (_, rec) in numbered(set, &["Flow "]) {
                    if options {
                        self.out.options_records += 1;
                        self.options_record(h, rec);
                    } else {
                        let n = self.record(h, rec)?;
                        self.out.records.push(n);
                    }
                }
            }
        }
        Ok(())
    }

    fn options_record(&mut self, h: &Header, f: &Value) {
        let d = self.domains.entry((h.exporter, h.domain)).or_default();
        if let Some(init) = text(f, "cflow.sys_init_time").and_then(abs_ms) {
            d.init_ms = Some(init);
        }
        if let Some(rate) = stated_rate(f) {
            match sampler_id(f) {
                Some(id) => {
                    d.samplers.insert(id, rate);
                }
                None => d.default_rate = Some(rate),
            }
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one field after the other, each with its why"
    )]
    fn record(&self, h: &Header, f: &Value) -> Result<Norm> {
        let d = self.domains.get(&(h.exporter, h.domain));
        let mut n = Norm {
            version: h.version,
            exporter: Some(h.exporter),
            domain: Some(h.domain),
            ..Norm::default()
        };
        // Addresses: the first specified one of the IPv4/IPv6 fields (both may be present,
        // the unused family zeroed); all-zero if only zeros were sent.
        let pick = |keys: [&str; 2]| -> Result<Option<IpAddr>> {
            let mut found: Option<IpAddr> = None;
            for k in keys {
                for v in f.get(k).map(all).unwrap_or_default() {
                    let a: IpAddr = v.as_str().unwrap_or_default().parse()?;
                    if found.is_none_or(|x| x.is_unspecified()) {
                        found = Some(a);
                    }
                }
            }
            Ok(found.map(norm_addr))
        };
        n.src = pick(["cflow.srcaddr", "cflow.srcaddrv6"])?;
        n.dst = pick(["cflow.dstaddr", "cflow.dstaddrv6"])?;
        n.sport = num_as(f, "cflow.srcport");
        n.dport = num_as(f, "cflow.dstport");
        n.proto = num_as(f, "cflow.protocol");
        n.tcp_flags = num(f, "cflow.tcpflags").map(|x| (x & 0xff) as u8);
        n.icmp = num_as::<u16>(f, "cflow.icmp_type_code_ipv4")
            .or_else(|| num_as(f, "cflow.icmp_type_code_ipv6"))
            .or_else(|| {
                let t = num(f, "cflow.icmp_ipv6_type").or_else(|| num(f, "cflow.icmp_ipv4_type"));
                let c = num(f, "cflow.icmp_ipv6_code").or_else(|| num(f, "cflow.icmp_ipv4_code"));
                if t.is_none() && c.is_none() {
                    return None;
                }
                u16::try_from(t.unwrap_or(0) << 8 | c.unwrap_or(0)).ok()
            });
        n.bytes = num(f, "cflow.octets");
        n.packets = num(f, "cflow.packets");
        n.direction = num_as(f, "cflow.direction").filter(|&d: &u8| d <= 1);

        // Packet-sampling exporters send the sampled frame (dataLinkFrameSection, IE 315)
        // instead of layer-3 fields; tshark dissects it as a frame. The record stands for
        // that one packet: dataLinkFrameSize (IE 312) is its byte count.
        if n.src.is_none()
            && n.dst.is_none()
            && let Some(tree) = f.get("cflow.data_link_frame_section_tree")
        {
            frame_fields(first(tree), &mut n);
            if n.bytes.is_none() {
                n.bytes = num(f, "cflow.data_link_frame_size");
            }
            if n.packets.is_none() && n.bytes.is_some() {
                n.packets = Some(1);
            }
        } else {
            // Absent ports/protocol are 0 (flowguard's documented default for absent fields).
            n.sport = n.sport.or(Some(0));
            n.dport = n.dport.or(Some(0));
            n.proto = n.proto.or(Some(0));
            n.tcp_flags = n.tcp_flags.or(Some(0));
        }
        if !matches!(n.proto, Some(1 | 58)) {
            n.icmp = None;
        }
        // Interfaces: ingressInterface/egressInterface (10/14), else the physical ones
        // (252/253), else 0.
        n.input = num_as(f, "cflow.inputint")
            .or_else(|| num_as(f, "cflow.ingress_physical_interface"))
            .or(Some(0));
        n.output = num_as(f, "cflow.outputint")
            .or_else(|| num_as(f, "cflow.egress_physical_interface"))
            .or(Some(0));

        // Times.
        let tree = f.get("cflow.timedelta_tree").map(first);
        let tree = tree.unwrap_or(&Value::Null);
        n.start_ms = text(tree, "cflow.abstimestart").and_then(abs_ms);
        n.end_ms = text(tree, "cflow.abstimeend").and_then(abs_ms);
        let rel = |key: &str| text(tree, key).and_then(rel_ms);
        let from_uptime = |t: u64| -> Option<u64> {
            let t = u32::try_from(t).ok()?;
            match (h.uptime_ms, d.and_then(|d| d.init_ms)) {
                // RFC 3954 §5.1 / RFC 1924 v5: sysUpTime is a 32-bit ms counter at export
                // time; a record's FIRST/LAST_SWITCHED are readings of it, so the event
                // happened (sysUpTime − t) ms before the export (modulo 2^32).
                (Some(up), _) => {
                    let age = i64::from(up.wrapping_sub(t).cast_signed());
                    h.export_ms.checked_add_signed(-age)
                }
                // IPFIX flowStart/EndSysUpTime (22/21) are relative to
                // systemInitTimeMilliseconds (IE 160, RFC 7011 / IANA registry).
                (None, Some(init)) => Some(init + u64::from(t)),
                // Without it tshark shows no absolute time: nothing to compare.
                (None, None) => None,
            }
        };
        // tshark quirk: a sysUpTime-relative FIRST/LAST_SWITCHED of exactly 0 (a flow that
        // began at the exporter's boot, legal per RFC 3954 §8) is printed as the absolute
        // time "Jan  1, 1970 00:00:00" next to a relative time for the other end. Read it
        // as what was sent: uptime 0.
        if n.start_ms == Some(0) && tree.get("cflow.timeend").is_some() {
            n.start_ms = from_uptime(0);
        }
        if n.end_ms == Some(0) && tree.get("cflow.timestart").is_some() {
            n.end_ms = from_uptime(0);
        }
        if n.start_ms.is_none() {
            n.start_ms = rel("cflow.timestart").and_then(from_uptime);
        }
        if n.end_ms.is_none() {
            n.end_ms = rel("cflow.timeend").and_then(from_uptime);
        }

        // NAT event records (RFC 8158) carry no flow start/end but the event's time,
        // observationTimeMilliseconds (IE 323): the record happened at that instant.
        if n.start_ms.is_none() && n.end_ms.is_none() {
            let at = text(f, "cflow.observation_time_milliseconds").and_then(abs_ms);
            n.start_ms = at;
            n.end_ms = at;
        }

        // Sampling: what the record states, else its sampler's (or the domain's) interval
        // from options records, else the v5 header; 1 when the exporter says nothing about
        // sampling at all. Left out (not compared) when options exist but none applies.
        n.sampling = stated_rate(f)
            .or_else(|| {
                let d = d?;
                match sampler_id(f) {
                    Some(id) => d.samplers.get(&id).copied().or(d.default_rate),
                    None => d.default_rate,
                }
            })
            .or(h.v5_sampling);
        if n.sampling.is_none() && d.is_none_or(|d| d.samplers.is_empty()) {
            n.sampling = Some(1);
        }
        Ok(n)
    }
}

/// Addresses, protocol and ports from tshark's dissection of a dataLinkFrameSection.
/// Leaves them `None` when tshark did not dissect an IP header (then tshark cannot say).
///
/// tshark dissects every header it can (an SRv6-encapsulated frame shows the outer IPv6
/// header, then the inner IPv4 header and its ICMP). The record describes the frame as
/// the router forwarded it, so the outermost IP header is taken, and ports or ICMP type
/// only when that header's protocol is TCP/UDP/ICMP. (Decapsulating `SRv6` or IP-in-IP is a
/// separate, optional view in peer collectors, off by default.) MPLS and pseudowire
/// layers are below IP, so for Ethernet-over-MPLS the first IP header is the inner frame's.
fn frame_fields(tree: &Value, n: &mut Norm) {
    let ip4 = tree.get("ip").map(first);
    let ip6 = tree.get("ipv6").map(first);
    // With both present, IPv4 is outer only if it carries IPv6 (protocol 41).
    let v4_outer = match (ip4, ip6) {
        (Some(ip), Some(_)) => num(ip, "ip.proto") == Some(41),
        (Some(_), None) => true,
        _ => false,
    };
    if v4_outer {
        let ip = ip4.unwrap_or(&Value::Null);
        n.src = text(ip, "ip.src").and_then(|s| s.parse().ok());
        n.dst = text(ip, "ip.dst").and_then(|s| s.parse().ok());
        n.proto = num_as(ip, "ip.proto");
    } else if let Some(ip) = ip6 {
        n.src = text(ip, "ipv6.src").and_then(|s| s.parse().ok());
        n.dst = text(ip, "ipv6.dst").and_then(|s| s.parse().ok());
        n.proto = num_as(ip, "ipv6.nxt");
    } else {
        return;
    }
    n.src = n.src.map(norm_addr);
    n.dst = n.dst.map(norm_addr);
    let (mut sport, mut dport) = (Some(0), Some(0));
    match n.proto {
        Some(6) => {
            if let Some(t) = tree.get("tcp").map(first) {
                (sport, dport) = (num_as(t, "tcp.srcport"), num_as(t, "tcp.dstport"));
            }
        }
        Some(17) => {
            if let Some(u) = tree.get("udp").map(first) {
                (sport, dport) = (num_as(u, "udp.srcport"), num_as(u, "udp.dstport"));
            }
        }
        Some(1 | 58) => {
            if let Some(icmp) = tree.get("icmp").or_else(|| tree.get("icmpv6")).map(first) {
                let t = num(icmp, "icmp.type").or_else(|| num(icmp, "icmpv6.type"));
                let c = num(icmp, "icmp.code").or_else(|| num(icmp, "icmpv6.code"));
                n.icmp = u16::try_from(t.unwrap_or(0) << 8 | c.unwrap_or(0)).ok();
            }
        }
        _ => {}
    }
    n.sport = sport;
    n.dport = dport;
    // A sampled frame says nothing about the flow's cumulative TCP flags; the record
    // carries no tcpControlBits, so there is nothing of tshark's to compare.
    n.tcp_flags = None;
}

fn header(pdu: &Value, exporter: IpAddr) -> Result<Header> {
    let version = num_as::<u16>(pdu, "cflow.version").context("cflow.version")?;
    let ts = &pdu["cflow.timestamp_tree"];
    let mut h = Header {
        version,
        exporter: norm_addr(exporter),
        domain: 0,
        export_ms: 0,
        uptime_ms: None,
        v5_sampling: None,
    };
    match version {
        5 => {
            let et = num(pdu, "cflow.engine_type").unwrap_or(0);
            let ei = num(pdu, "cflow.engine_id").unwrap_or(0);
            h.domain = u32::try_from(et << 8 | ei)?;
            h.export_ms = num(ts, "cflow.unix_secs").context("unix_secs")? * 1000
                + num(ts, "cflow.unix_nsecs").unwrap_or(0) / 1_000_000;
            h.uptime_ms = text(pdu, "cflow.sysuptime")
                .and_then(rel_ms)
                .and_then(|x| u32::try_from(x).ok());
            // tshark shows the 14-bit interval of the 16-bit sampling field separately.
            h.v5_sampling = Some(num_as::<u32>(pdu, "cflow.samplerate").unwrap_or(0).max(1));
        }
        9 => {
            h.domain = num_as(pdu, "cflow.source_id").context("source_id")?;
            h.export_ms = num(ts, "cflow.unix_secs").context("unix_secs")? * 1000;
            h.uptime_ms = text(pdu, "cflow.sysuptime")
                .and_then(rel_ms)
                .and_then(|x| u32::try_from(x).ok());
        }
        10 => {
            h.domain = num_as(pdu, "cflow.od_id").context("od_id")?;
            h.export_ms = num(ts, "cflow.exporttime").context("exporttime")? * 1000;
        }
        v => bail!("unexpected export version {v}"),
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_strings() {
        assert_eq!(
            abs_ms("Jun  4, 2023 08:39:55.034000000 UTC"),
            Some(1_685_867_995_034)
        );
        assert_eq!(
            abs_ms("Oct  5, 2009 06:06:07.492059999 UTC"),
            Some(1_254_722_767_492)
        );
        assert_eq!(rel_ms("944948.659000000"), Some(944_948_659));
        assert_eq!(rel_ms("14.069"), Some(14_069));
    }
}
