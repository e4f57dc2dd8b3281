//! Flow records as text: NDJSON with IPFIX information-element names, or an nfdump-like table.
//!
//! The JSON keys are the RFC 7012 / IANA IE names, so tools that speak IPFIX can map them
//! without a dictionary. Two keys are flowguard's own, because IPFIX has no IE for "the count
//! corrected for sampling": `scaledOctetCount` and `scaledPacketCount` are
//! `octetDeltaCount`/`packetDeltaCount` (the values as exported) times `samplingInterval`.
//! Formatting writes into a caller's buffer without per-record allocation.

use std::{
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, UNIX_EPOCH},
};

use crate::decode::{Direction, FlowRecord};

/// Output format for flow records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowFormat {
    /// A readable table, like `nfdump -r`.
    Table,
    /// One JSON object per line, IPFIX IE names.
    Json,
}

fn addr_key(addr: IpAddr, v4: &'static str, v6: &'static str) -> &'static str {
    if addr.is_ipv4() { v4 } else { v6 }
}

/// Appends `record` as one JSON line (with the trailing newline).
pub fn write_json(out: &mut String, r: &FlowRecord) {
    let _ = write!(
        out,
        "{{\"{}\":\"{}\",\"{}\":\"{}\",\"sourceTransportPort\":{},\"destinationTransportPort\":{},\"protocolIdentifier\":{},\"tcpControlBits\":{}",
        addr_key(r.src_addr, "sourceIPv4Address", "sourceIPv6Address"),
        r.src_addr,
        addr_key(
            r.dst_addr,
            "destinationIPv4Address",
            "destinationIPv6Address"
        ),
        r.dst_addr,
        r.src_port,
        r.dst_port,
        r.protocol,
        r.tcp_flags,
    );
    match r.protocol {
        1 => {
            let _ = write!(out, ",\"icmpTypeCodeIPv4\":{}", r.icmp_type_code);
        }
        58 => {
            let _ = write!(out, ",\"icmpTypeCodeIPv6\":{}", r.icmp_type_code);
        }
        _ => {}
    }
    let _ = write!(
        out,
        ",\"octetDeltaCount\":{},\"packetDeltaCount\":{},\"scaledOctetCount\":{},\"scaledPacketCount\":{},\"samplingInterval\":{},\"flowStartMilliseconds\":{},\"flowEndMilliseconds\":{},\"ingressInterface\":{},\"egressInterface\":{}",
        r.raw_bytes,
        r.raw_packets,
        r.bytes,
        r.packets,
        r.sampling_interval,
        r.start_ms,
        r.end_ms,
        r.input_interface,
        r.output_interface,
    );
    if let Some(d) = r.direction.to_wire() {
        let _ = write!(out, ",\"flowDirection\":{d}");
    }
    let _ = writeln!(
        out,
        ",\"{}\":\"{}\",\"observationDomainId\":{},\"templateId\":{},\"exportVersion\":{}}}",
        addr_key(r.exporter, "exporterIPv4Address", "exporterIPv6Address"),
        r.exporter,
        r.observation_domain_id,
        r.template_id,
        r.version,
    );
}

/// Header line of the table format.
pub const TABLE_HEADER: &str = "Date first seen (UTC)        Duration Proto      Src IP Addr:Port                     Dst IP Addr:Port              Packets      Bytes Sampl Exporter\n";

/// Appends `record` as one table row.
pub fn write_table_row(out: &mut String, r: &FlowRecord) {
    let duration = r.end_ms.saturating_sub(r.start_ms);
    let proto = match r.protocol {
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        58 => "ICMP6",
        47 => "GRE",
        50 => "ESP",
        132 => "SCTP",
        _ => "",
    };
    let proto = if proto.is_empty() {
        format!("{:<5}", r.protocol)
    } else {
        format!("{proto:<5}")
    };
    let src = endpoint(r.src_addr, r.src_port);
    let dst = endpoint(r.dst_addr, r.dst_port);
    let _ = write!(
        out,
        "{} {:>5}.{:03} {proto} {src:>36} -> {dst:<28}",
        timestamp(r.start_ms),
        duration / 1000,
        duration % 1000
    );
    let _ = writeln!(
        out,
        " {:>8} {:>10} {:>5} {}{}",
        human(r.packets),
        human(r.bytes),
        r.sampling_interval,
        r.exporter,
        match r.direction {
            Direction::Ingress => " in",
            Direction::Egress => " out",
            Direction::Unknown => "",
        }
    );
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC (civil-from-days, H. Hinnant's algorithm).
fn timestamp(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn human(n: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let f = n as f64;
    match n {
        0..1_000_000 => n.to_string(),
        1_000_000..1_000_000_000 => format!("{:.1} M", f / 1e6),
        _ => format!("{:.1} G", f / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> FlowRecord {
        let mut r = FlowRecord {
            src_addr: "198.18.0.2".parse().unwrap(),
            dst_addr: "2001:2::1".parse().unwrap(),
            src_port: 5000,
            dst_port: 443,
            protocol: 6,
            tcp_flags: 0x1b,
            start_ms: 1_700_000_000_123,
            end_ms: 1_700_000_001_500,
            exporter: "198.18.0.9".parse().unwrap(),
            observation_domain_id: 7,
            version: 10,
            template_id: 256,
            ..FlowRecord::default()
        };
        r.set_counts(1500, 3, 100);
        r
    }

    #[test]
    fn json_uses_ipfix_names_and_is_valid() {
        let mut s = String::new();
        write_json(&mut s, &record());
        assert!(s.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["sourceIPv4Address"], "198.18.0.2");
        assert_eq!(v["destinationIPv6Address"], "2001:2::1");
        assert_eq!(v["destinationTransportPort"], 443);
        assert_eq!(v["octetDeltaCount"], 1500);
        assert_eq!(v["scaledOctetCount"], 150_000);
        assert_eq!(v["samplingInterval"], 100);
        assert_eq!(v["flowStartMilliseconds"], 1_700_000_000_123u64);
        assert_eq!(v["exporterIPv4Address"], "198.18.0.9");
        assert_eq!(v["observationDomainId"], 7);
        assert!(
            v.get("flowDirection").is_none(),
            "unknown direction is omitted"
        );
        assert!(v.get("icmpTypeCodeIPv4").is_none());
    }

    #[test]
    fn table_row_is_readable() {
        let mut s = String::new();
        write_table_row(&mut s, &record());
        assert!(
            s.starts_with("2023-11-14 22:13:20.123     1.377 TCP"),
            "{s}"
        );
        assert!(s.contains("198.18.0.2:5000 -> [2001:2::1]:443"), "{s}");
        assert!(s.contains("150000"), "scaled bytes shown: {s}");
    }
}
