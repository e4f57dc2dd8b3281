//! The normalized flow record both decoders are reduced to, flowguard's NDJSON reader, and
//! the record-for-record (multiset) comparison with a compact diff.
//!
//! A field is `None` when the oracle (tshark) does not show it for that record; such fields
//! are not compared. Flowguard's side always fills what it prints.

use std::{collections::BTreeMap, fmt, fmt::Write as _, net::IpAddr};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// One flow record, reduced to the fields both decoders can be held to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Norm {
    /// 5, 9 or 10.
    pub version: u16,
    /// Address the export datagram came from.
    pub exporter: Option<IpAddr>,
    /// v9 source id, IPFIX observation domain, v5 `engine_type << 8 | engine_id`.
    pub domain: Option<u32>,
    /// Addresses. Unspecified addresses (0.0.0.0, ::) are all written as 0.0.0.0: templates
    /// that carry both an IPv4 and an IPv6 pair zero the unused one, and which of two zero
    /// addresses "wins" says nothing about the flow.
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub proto: Option<u8>,
    /// Low 8 bits of tcpControlBits.
    pub tcp_flags: Option<u8>,
    /// ICMP type << 8 | code (only for ICMP records, and only when an ICMP element was sent).
    pub icmp: Option<u16>,
    /// Counters as exported (unscaled).
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    /// Absolute times, Unix milliseconds.
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub input: Option<u32>,
    pub output: Option<u32>,
    /// 1-in-N sampling interval applying to the record (1 = unsampled).
    pub sampling: Option<u32>,
    /// flowDirection 0/1.
    pub direction: Option<u8>,
}

/// Unspecified addresses compare equal whatever their family (see [`Norm::src`]).
#[must_use]
pub fn norm_addr(a: IpAddr) -> IpAddr {
    if a.is_unspecified() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        a
    }
}

fn opt<T: fmt::Display>(v: Option<&T>) -> String {
    v.map_or_else(|| "?".to_owned(), ToString::to_string)
}

/// An address as it reads before ":port" (IPv6 in brackets).
fn host(v: Option<&IpAddr>) -> String {
    match v {
        Some(IpAddr::V6(a)) => format!("[{a}]"),
        other => opt(other),
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v{} exp={} dom={} {}:{} > {}:{} p{} flags={} icmp={} bytes={} pkts={} start={} end={} in={} out={} samp={} dir={}",
            self.version,
            opt(self.exporter.as_ref()),
            opt(self.domain.as_ref()),
            host(self.src.as_ref()),
            opt(self.sport.as_ref()),
            host(self.dst.as_ref()),
            opt(self.dport.as_ref()),
            opt(self.proto.as_ref()),
            opt(self.tcp_flags.as_ref()),
            opt(self.icmp.as_ref()),
            opt(self.bytes.as_ref()),
            opt(self.packets.as_ref()),
            opt(self.start_ms.as_ref()),
            opt(self.end_ms.as_ref()),
            opt(self.input.as_ref()),
            opt(self.output.as_ref()),
            opt(self.sampling.as_ref()),
            opt(self.direction.as_ref()),
        )
    }
}

/// Fields where `oracle` (which may leave fields out) and `got` disagree:
/// (field, oracle value, flowguard value).
#[must_use]
pub fn differences(oracle: &Norm, got: &Norm) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    if oracle.version != got.version {
        out.push((
            "version",
            oracle.version.to_string(),
            got.version.to_string(),
        ));
    }
    macro_rules! cmp {
        ($($field:ident),*) => {$(
            if let Some(want) = &oracle.$field {
                if got.$field.as_ref() != Some(want) {
                    out.push((stringify!($field), want.to_string(), opt(got.$field.as_ref())));
                }
            }
        )*};
    }
    cmp!(
        exporter, domain, src, dst, sport, dport, proto, tcp_flags, icmp, bytes, packets, start_ms,
        end_ms, input, output, sampling, direction
    );
    out
}

/// Compares two record multisets; `Err` carries a compact diff (a few records, not all).
///
/// # Errors
/// When a tshark record has no flowguard record that agrees with it, or flowguard has
/// records left over.
pub fn compare(label: &str, oracle: &[Norm], got: &[Norm]) -> Result<()> {
    let mut used = vec![false; got.len()];
    let mut missing = Vec::new();
    for t in oracle {
        match (0..got.len()).find(|&i| !used[i] && differences(t, &got[i]).is_empty()) {
            Some(i) => used[i] = true,
            None => missing.push(t),
        }
    }
    let extra: Vec<&Norm> = got
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(g, _)| g)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "{label}: tshark {} records, flowguard {}; {} tshark records without a matching flowguard record, {} flowguard records left over\n",
        oracle.len(),
        got.len(),
        missing.len(),
        extra.len()
    );
    // Which fields disagree, over all unmatched records (nearest flowguard candidate).
    let mut by_field: BTreeMap<&str, usize> = BTreeMap::new();
    let mut shown = 0;
    for t in &missing {
        let nearest = extra
            .iter()
            .map(|g| (differences(t, g), *g))
            .min_by_key(|(d, _)| d.len());
        if let Some((d, _)) = &nearest {
            for (field, _, _) in d {
                *by_field.entry(field).or_default() += 1;
            }
        }
        if shown < 4 {
            shown += 1;
            let _ = writeln!(msg, "  tshark:    {t}");
            match nearest {
                Some((d, g)) => {
                    let _ = write!(msg, "  nearest:   {g}\n  differs:  ");
                    for (field, want, have) in d {
                        let _ = write!(msg, " {field} tshark={want} flowguard={have};");
                    }
                    msg.push('\n');
                }
                None => msg.push_str("  (no flowguard record left to compare with)\n"),
            }
        }
    }
    if !by_field.is_empty() {
        let _ = writeln!(msg, "  fields differing (vs nearest): {by_field:?}");
    }
    if missing.is_empty() {
        for g in extra.iter().take(4) {
            let _ = writeln!(msg, "  flowguard only: {g}");
        }
    }
    bail!(msg)
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn addr_of(v: &Value, v4: &str, v6: &str) -> Result<Option<IpAddr>> {
    for key in [v4, v6] {
        if let Some(s) = v.get(key) {
            let s = s
                .as_str()
                .with_context(|| format!("{key} is not a string"))?;
            return Ok(Some(norm_addr(
                s.parse().with_context(|| format!("{key}={s}"))?,
            )));
        }
    }
    Ok(None)
}

/// Reads `flowguard decode --format json` output (one record per line).
///
/// # Errors
/// On a line that is not a JSON object with the documented keys, or on internally
/// inconsistent counters (scaled != raw × samplingInterval).
pub fn parse_flowguard(ndjson: &str) -> Result<Vec<Norm>> {
    let mut out = Vec::new();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("flowguard printed {line}"))?;
        let get = |k: &str| u64_of(&v, k).with_context(|| format!("no {k} in {line}"));
        let narrow = |k: &str| -> Result<Option<u32>> {
            u64_of(&v, k)
                .map(u32::try_from)
                .transpose()
                .map_err(Into::into)
        };
        let unspecified = Some(IpAddr::from([0, 0, 0, 0]));
        let proto = u8::try_from(u64_of(&v, "protocolIdentifier").unwrap_or(0))?;
        let bytes = get("octetDeltaCount")?;
        let packets = get("packetDeltaCount")?;
        let sampling = get("samplingInterval")?;
        for (scaled, raw) in [("scaledOctetCount", bytes), ("scaledPacketCount", packets)] {
            let s = get(scaled)?;
            if s != raw.saturating_mul(sampling) {
                bail!("{scaled}={s} is not raw {raw} x samplingInterval {sampling}: {line}");
            }
        }
        let icmp = ["icmpTypeCodeIPv4", "icmpTypeCodeIPv6"]
            .iter()
            .find_map(|k| u64_of(&v, k))
            .map(u16::try_from)
            .transpose()?;
        out.push(Norm {
            version: u16::try_from(get("exportVersion")?)?,
            exporter: addr_of(&v, "exporterIPv4Address", "exporterIPv6Address")?,
            domain: narrow("observationDomainId")?,
            src: addr_of(&v, "sourceIPv4Address", "sourceIPv6Address")?.or(unspecified),
            dst: addr_of(&v, "destinationIPv4Address", "destinationIPv6Address")?.or(unspecified),
            sport: Some(u16::try_from(
                u64_of(&v, "sourceTransportPort").unwrap_or(0),
            )?),
            dport: Some(u16::try_from(
                u64_of(&v, "destinationTransportPort").unwrap_or(0),
            )?),
            proto: Some(proto),
            tcp_flags: Some(u8::try_from(
                u64_of(&v, "tcpControlBits").unwrap_or(0) & 0xff,
            )?),
            icmp: if matches!(proto, 1 | 58) { icmp } else { None },
            bytes: Some(bytes),
            packets: Some(packets),
            start_ms: Some(get("flowStartMilliseconds")?),
            end_ms: Some(get("flowEndMilliseconds")?),
            input: Some(narrow("ingressInterface")?.unwrap_or(0)),
            output: Some(narrow("egressInterface")?.unwrap_or(0)),
            sampling: Some(u32::try_from(sampling)?),
            direction: u64_of(&v, "flowDirection").map(u8::try_from).transpose()?,
        });
    }
    Ok(out)
}
