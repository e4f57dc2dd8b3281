//! Reading the files the Python `netflow` library's collector writes
//! (`python -m netflow.collector -o FILE`), so the old scripts' captures keep working.
//!
//! The collector appends one JSON object per export packet, gzip-compressed (each write is
//! its own gzip member, which a multi-member decoder reads as one stream):
//!
//! ```text
//! {"<receive time, Unix seconds>": {"client": ["<exporter ip>", <port>],
//!   "header": {"version": 5|9|10, ...}, "flows": [{<field>: <value>, ...}, ...]}}
//! ```
//!
//! Field names follow the library: v5 uses its own names with IPv4 addresses as integers
//! (`IPV4_SRC_ADDR`, `IN_OCTETS`, `FIRST_SWITCHED` …); v9 uses RFC 3954 names with addresses
//! as strings (`IPV4_SRC_ADDR`, `IN_BYTES`, `L4_SRC_PORT` …); IPFIX uses IANA names with
//! addresses as integers (`sourceIPv4Address` …) and NTP-format microsecond times as
//! `[seconds, fraction]`. Plain (uncompressed) files are accepted too. Lines that do not
//! parse are counted and skipped.

use std::{
    io::{BufRead, BufReader, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use serde_json::{Map, Value};

use crate::decode::{Direction, FlowRecord};

/// What the reader skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowFileCounters {
    /// Export-packet lines read.
    pub lines: u64,
    /// Flow records produced.
    pub records: u64,
    /// Lines that were not valid JSON of the expected shape.
    pub bad_lines: u64,
    /// Flows without the fields a record needs (addresses).
    pub bad_flows: u64,
}

/// Errors opening a flow file.
#[derive(Debug, thiserror::Error)]
pub enum FlowFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File name.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Calls `each` for every flow in the file, in file order.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn read_flow_file(
    path: &Path,
    counters: &mut FlowFileCounters,
    mut each: impl FnMut(&FlowRecord),
) -> Result<(), FlowFileError> {
    let io = |source| FlowFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(io)?;
    let file = std::fs::File::open(path).map_err(io)?;
    let reader: Box<dyn BufRead> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    for line in reader.lines() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        counters.lines += 1;
        let Ok(Value::Object(entry)) = serde_json::from_str::<Value>(&line) else {
            counters.bad_lines += 1;
            continue;
        };
        let Some((ts, Value::Object(packet))) = entry.into_iter().next() else {
            counters.bad_lines += 1;
            continue;
        };
        let received_ms = ts.parse::<f64>().map_or(0, secs_to_ms);
        if !packet_records(&packet, received_ms, counters, &mut each) {
            counters.bad_lines += 1;
        }
    }
    Ok(())
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "Unix times in range"
)]
fn secs_to_ms(s: f64) -> u64 {
    (s * 1000.0).round().max(0.0) as u64
}

fn packet_records(
    packet: &Map<String, Value>,
    received_ms: u64,
    counters: &mut FlowFileCounters,
    each: &mut impl FnMut(&FlowRecord),
) -> bool {
    let Some(header) = packet.get("header").and_then(Value::as_object) else {
        return false;
    };
    let Some(flows) = packet.get("flows").and_then(Value::as_array) else {
        return false;
    };
    let exporter = packet
        .get("client")
        .and_then(|c| c.get(0))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IpAddr>().ok())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.to_canonical());
    let num = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_u64);
    let version = num(header, "version").unwrap_or(0);
    for flow in flows {
        let Some(flow) = flow.as_object() else {
            counters.bad_flows += 1;
            continue;
        };
        let record = match version {
            5 => v5_record(header, flow, exporter),
            9 => v9_record(header, flow, exporter),
            10 => ipfix_record(header, flow, exporter, received_ms),
            _ => None,
        };
        match record {
            Some(r) => {
                counters.records += 1;
                each(&r);
            }
            None => counters.bad_flows += 1,
        }
    }
    true
}

fn addr(v: Option<&Value>) -> Option<IpAddr> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => {
            let n = n.as_u128().or_else(|| n.as_u64().map(u128::from))?;
            Some(match u32::try_from(n) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                Err(_) => IpAddr::V6(Ipv6Addr::from(n)),
            })
        }
        _ => None,
    }
}

fn get_u64(m: &Map<String, Value>, keys: &[&str]) -> u64 {
    keys.iter()
        .find_map(|k| m.get(*k).and_then(Value::as_u64))
        .unwrap_or(0)
}

/// v5/v9 times are sysUptime ms; absolute = export secs·1000 − uptime + t (RFC 3954 §5.1).
fn uptime_to_ms(export_secs: u64, uptime_ms: u64, t: u64) -> u64 {
    crate::decode::uptime_to_unix_ms(
        export_secs * 1000,
        u32::try_from(uptime_ms & 0xffff_ffff).unwrap_or(0),
        u32::try_from(t & 0xffff_ffff).unwrap_or(0),
    )
}

fn v5_record(
    header: &Map<String, Value>,
    f: &Map<String, Value>,
    exporter: IpAddr,
) -> Option<FlowRecord> {
    let export = get_u64(header, &["timestamp"]);
    let uptime = get_u64(header, &["uptime"]);
    // Low 14 bits: interval; the top two bits are the mode (0 = unsampled).
    let sampling = u32::try_from(get_u64(header, &["sampling_interval"]) & 0x3fff)
        .unwrap_or(1)
        .max(1);
    let mut r = FlowRecord {
        src_addr: addr(f.get("IPV4_SRC_ADDR"))?,
        dst_addr: addr(f.get("IPV4_DST_ADDR"))?,
        src_port: u16::try_from(get_u64(f, &["SRC_PORT"])).unwrap_or(0),
        dst_port: u16::try_from(get_u64(f, &["DST_PORT"])).unwrap_or(0),
        protocol: u8::try_from(get_u64(f, &["PROTO"])).unwrap_or(0),
        tcp_flags: u8::try_from(get_u64(f, &["TCP_FLAGS"]) & 0xff).unwrap_or(0),
        start_ms: uptime_to_ms(export, uptime, get_u64(f, &["FIRST_SWITCHED"])),
        end_ms: uptime_to_ms(export, uptime, get_u64(f, &["LAST_SWITCHED"])),
        input_interface: u32::try_from(get_u64(f, &["INPUT"])).unwrap_or(0),
        output_interface: u32::try_from(get_u64(f, &["OUTPUT"])).unwrap_or(0),
        exporter,
        observation_domain_id: u32::try_from(
            get_u64(header, &["engine_type"]) << 8 | get_u64(header, &["engine_id"]),
        )
        .unwrap_or(0),
        version: 5,
        ..FlowRecord::default()
    };
    if matches!(r.protocol, 1 | 58) {
        r.icmp_type_code = r.dst_port;
    }
    r.set_counts(
        get_u64(f, &["IN_OCTETS"]),
        get_u64(f, &["IN_PACKETS"]),
        sampling,
    );
    Some(r)
}

fn v9_record(
    header: &Map<String, Value>,
    f: &Map<String, Value>,
    exporter: IpAddr,
) -> Option<FlowRecord> {
    let export = get_u64(header, &["timestamp"]);
    let uptime = get_u64(header, &["uptime"]);
    let sampling = u32::try_from(get_u64(f, &["SAMPLING_INTERVAL"]))
        .unwrap_or(1)
        .max(1);
    let mut r = FlowRecord {
        src_addr: addr(f.get("IPV4_SRC_ADDR")).or_else(|| addr(f.get("IPV6_SRC_ADDR")))?,
        dst_addr: addr(f.get("IPV4_DST_ADDR")).or_else(|| addr(f.get("IPV6_DST_ADDR")))?,
        src_port: u16::try_from(get_u64(f, &["L4_SRC_PORT"])).unwrap_or(0),
        dst_port: u16::try_from(get_u64(f, &["L4_DST_PORT"])).unwrap_or(0),
        protocol: u8::try_from(get_u64(f, &["PROTOCOL"])).unwrap_or(0),
        tcp_flags: u8::try_from(get_u64(f, &["TCP_FLAGS"]) & 0xff).unwrap_or(0),
        icmp_type_code: u16::try_from(get_u64(f, &["ICMP_TYPE", "ICMP_IPv6_TYPE"])).unwrap_or(0),
        direction: f
            .get("DIRECTION")
            .and_then(Value::as_u64)
            .map_or(Direction::Unknown, Direction::from_wire),
        start_ms: uptime_to_ms(export, uptime, get_u64(f, &["FIRST_SWITCHED"])),
        end_ms: uptime_to_ms(export, uptime, get_u64(f, &["LAST_SWITCHED"])),
        input_interface: u32::try_from(get_u64(f, &["INPUT_SNMP"])).unwrap_or(0),
        output_interface: u32::try_from(get_u64(f, &["OUTPUT_SNMP"])).unwrap_or(0),
        exporter,
        observation_domain_id: u32::try_from(get_u64(header, &["source_id"])).unwrap_or(0),
        version: 9,
        ..FlowRecord::default()
    };
    if r.icmp_type_code == 0 && matches!(r.protocol, 1 | 58) {
        r.icmp_type_code = r.dst_port;
    }
    r.set_counts(
        get_u64(f, &["IN_BYTES", "OUT_BYTES"]),
        get_u64(f, &["IN_PKTS", "OUT_PKTS"]),
        sampling,
    );
    Some(r)
}

/// IPFIX time elements as the library writes them: seconds and milliseconds as integers,
/// micro/nanoseconds as NTP `[seconds since 1900, fraction]` (RFC 7011 §6.1.9).
fn ipfix_time(f: &Map<String, Value>, which: &str, export_ms: u64) -> Option<u64> {
    const NTP_TO_UNIX: u64 = 2_208_988_800;
    if let Some(ms) = f
        .get(&format!("flow{which}Milliseconds"))
        .and_then(Value::as_u64)
    {
        return Some(ms);
    }
    if let Some(s) = f
        .get(&format!("flow{which}Seconds"))
        .and_then(Value::as_u64)
    {
        return Some(s * 1000);
    }
    for unit in ["Microseconds", "Nanoseconds"] {
        if let Some([secs, frac]) = f
            .get(&format!("flow{which}{unit}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            let secs = secs.as_u64()?.checked_sub(NTP_TO_UNIX)?;
            let frac = frac.as_u64()?;
            return Some(secs * 1000 + ((frac * 1000) >> 32));
        }
    }
    let delta = f
        .get(&format!("flow{which}DeltaMicroseconds"))
        .and_then(Value::as_u64)?;
    Some(export_ms.saturating_sub(delta / 1000))
}

fn ipfix_record(
    header: &Map<String, Value>,
    f: &Map<String, Value>,
    exporter: IpAddr,
    received_ms: u64,
) -> Option<FlowRecord> {
    // The library labels the IPFIX export time `export_uptime`; it is the RFC 7011 §3.1
    // Export Time in Unix seconds.
    let export_ms = header
        .get("export_uptime")
        .and_then(Value::as_u64)
        .map_or(received_ms, |s| s * 1000);
    let sampling = u32::try_from(get_u64(
        f,
        &[
            "samplingInterval",
            "samplerRandomInterval",
            "samplingPacketInterval",
        ],
    ))
    .unwrap_or(1)
    .max(1);
    let mut r = FlowRecord {
        src_addr: addr(f.get("sourceIPv4Address")).or_else(|| addr(f.get("sourceIPv6Address")))?,
        dst_addr: addr(f.get("destinationIPv4Address"))
            .or_else(|| addr(f.get("destinationIPv6Address")))?,
        src_port: u16::try_from(get_u64(f, &["sourceTransportPort"])).unwrap_or(0),
        dst_port: u16::try_from(get_u64(f, &["destinationTransportPort"])).unwrap_or(0),
        protocol: u8::try_from(get_u64(f, &["protocolIdentifier"])).unwrap_or(0),
        tcp_flags: u8::try_from(get_u64(f, &["tcpControlBits"]) & 0xff).unwrap_or(0),
        icmp_type_code: u16::try_from(get_u64(f, &["icmpTypeCodeIPv4", "icmpTypeCodeIPv6"]))
            .unwrap_or(0),
        direction: f
            .get("flowDirection")
            .and_then(Value::as_u64)
            .map_or(Direction::Unknown, Direction::from_wire),
        start_ms: ipfix_time(f, "Start", export_ms).unwrap_or(export_ms),
        end_ms: ipfix_time(f, "End", export_ms).unwrap_or(export_ms),
        input_interface: u32::try_from(get_u64(f, &["ingressInterface"])).unwrap_or(0),
        output_interface: u32::try_from(get_u64(f, &["egressInterface"])).unwrap_or(0),
        exporter,
        observation_domain_id: u32::try_from(get_u64(
            header,
            &["obervation_domain_id", "observation_domain_id"],
        ))
        .unwrap_or(0),
        version: 10,
        ..FlowRecord::default()
    };
    if r.icmp_type_code == 0 && matches!(r.protocol, 1 | 58) {
        r.icmp_type_code = r.dst_port;
    }
    r.set_counts(
        get_u64(f, &["octetDeltaCount", "octetTotalCount"]),
        get_u64(f, &["packetDeltaCount", "packetTotalCount"]),
        sampling,
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_three_versions_from_gzip_members_and_counts_junk() {
        let lines = [
            r#"{"1795707653.86": {"client": ["127.0.0.1", 42720], "header": {"version": 5, "count": 1, "uptime": 2874339000, "timestamp": 1680626679, "timestamp_nano": 0, "sequence": 1, "engine_type": 0, "engine_id": 3, "sampling_interval": 0}, "flows": [{"IPV4_SRC_ADDR": 2714424532, "IPV4_DST_ADDR": 3398977048, "INPUT": 117, "OUTPUT": 86, "IN_PACKETS": 1, "IN_OCTETS": 133, "FIRST_SWITCHED": 2874324000, "LAST_SWITCHED": 2874324000, "SRC_PORT": 30104, "DST_PORT": 11963, "TCP_FLAGS": 24, "PROTO": 6}]}}"#,
            r#"{"1795707653.87": {"client": ["198.18.0.2", 5000], "header": {"version": 9, "count": 1, "uptime": 944951609, "timestamp": 1647285928, "sequence": 2, "source_id": 7}, "flows": [{"IN_PKTS": 2, "IN_BYTES": 1500, "IPV4_SRC_ADDR": "198.38.121.178", "IPV4_DST_ADDR": "91.170.143.87", "INPUT_SNMP": 335, "OUTPUT_SNMP": 450, "LAST_SWITCHED": 944948659, "FIRST_SWITCHED": 944948000, "L4_SRC_PORT": 443, "L4_DST_PORT": 19624, "PROTOCOL": 6, "TCP_FLAGS": 16, "DIRECTION": 0}]}}"#,
            "not json",
            r#"{"1795707653.88": {"client": ["198.18.0.3", 5000], "header": {"version": 10, "length": 344, "export_uptime": 1759076323, "sequence_number": 0, "obervation_domain_id": 1}, "flows": [{"packetDeltaCount": 1, "flowEndMicroseconds": [3967065123, 2147483648], "octetDeltaCount": 128, "ingressInterface": 10, "flowStartMicroseconds": [3967065123, 0], "destinationTransportPort": 53, "destinationIPv4Address": 168427777, "sourceTransportPort": 56166, "protocolIdentifier": 17, "sourceIPv4Address": 168427780}]}}"#,
        ];
        let dir = std::env::temp_dir().join(format!("fg-flowfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flows.gz");
        let mut bytes = Vec::new();
        for l in lines {
            // One gzip member per line, as the collector appends them.
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, format!("{l}\n").as_bytes()).unwrap();
            bytes.extend(enc.finish().unwrap());
        }
        std::fs::write(&path, bytes).unwrap();
        let mut c = FlowFileCounters::default();
        let mut got = Vec::new();
        read_flow_file(&path, &mut c, |r| got.push(*r)).unwrap();
        assert_eq!(c.lines, 4);
        assert_eq!(c.bad_lines, 1);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].src_addr,
            "161.202.212.212".parse::<IpAddr>().unwrap()
        );
        assert_eq!(got[0].raw_bytes, 133);
        assert_eq!(got[0].start_ms, 1_680_626_664_000, "v5 uptime arithmetic");
        assert_eq!(got[0].observation_domain_id, 3);
        assert_eq!(got[1].dst_port, 19624);
        assert_eq!(got[1].end_ms, 1_647_285_928_000 - 944_951_609 + 944_948_659);
        assert_eq!(got[1].exporter, "198.18.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(got[2].src_addr, "10.10.1.4".parse::<IpAddr>().unwrap());
        assert_eq!(got[2].start_ms, (3_967_065_123 - 2_208_988_800) * 1000);
        assert_eq!(got[2].end_ms, (3_967_065_123 - 2_208_988_800) * 1000 + 500);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
