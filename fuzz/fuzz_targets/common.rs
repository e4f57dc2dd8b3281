//! Shared harness: one fuzz input is split into several datagrams fed through one
//! `Decoder`, so that templates, options data and data sets of different packets
//! interact (a decoder cannot outlive one libFuzzer input without making runs
//! irreproducible).
//!
//! Input layout, repeated: `[len_lo, len_hi, flags, payload[len]]`. `flags` bit 0 picks
//! one of two exporters, bits 1–3 advance the clock (up to 7 × 10 minutes, to reach
//! template TTL and pending timeouts), bit 4 patches the IPFIX length to the payload
//! length. The version field of each payload is forced to the target's version so the
//! fuzzer does not waste time on the version dispatch. When the first byte has its top
//! bit set, the decoder is first primed with a valid packet from the project's encoder
//! (templates 256/257, options template 258 and sampler data), so that fuzzed data sets
//! meet real templates without the fuzzer having to discover one.

use std::net::{IpAddr, Ipv4Addr};

use flowguard::decode::encode::{Encoder, EncoderConfig, Format};
use flowguard::decode::{Decoder, DecoderConfig, FlowRecord};

pub fn run(data: &[u8], version: u16) {
    // Small limits so that the limit paths are reachable with small inputs.
    let config = DecoderConfig {
        max_exporters: 2,
        max_domains_per_exporter: 4,
        max_templates_per_exporter: 8,
        max_template_bytes_per_exporter: 16 << 10,
        max_fields_per_template: 64,
        max_samplers_per_domain: 4,
        max_pending_bytes_per_domain: 2048,
        max_pending_bytes_total: 4096,
        template_ttl_ms: 30 * 60 * 1000,
        pending_timeout_ms: 5 * 60 * 1000,
        ..DecoderConfig::default()
    };
    let mut decoder = Decoder::new(config.clone());
    let mut now: u64 = 1_700_000_000_000;
    let mut records = 0u64;
    let mut sink = |r: &FlowRecord| {
        // Touch the record so the optimizer keeps the decode.
        records = records.wrapping_add(r.bytes ^ r.start_ms);
    };
    if version != 5 && data.first().is_some_and(|b| b & 0x80 != 0) {
        let format = if version == 9 { Format::V9 } else { Format::Ipfix };
        let mut encoder = Encoder::new(EncoderConfig::new(format));
        let mut primer = FlowRecord { sampling_interval: 10, start_ms: now - 1000, end_ms: now, ..FlowRecord::default() };
        primer.set_counts(1500, 1, 10);
        let mut packets = Vec::new();
        encoder.encode(&[primer; 2], now, &mut packets);
        for p in &packets {
            let _ = decoder.decode(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), now, p, &mut sink);
        }
    }
    let mut rest = data;
    let mut packet = Vec::with_capacity(2048);
    while rest.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % 4096;
        let flags = rest[2];
        rest = &rest[3..];
        let take = len.min(rest.len());
        packet.clear();
        packet.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        if packet.len() >= 2 {
            packet[..2].copy_from_slice(&version.to_be_bytes());
        }
        if version == 10 && flags & 0x10 != 0 && packet.len() >= 4 {
            let l = u16::try_from(packet.len()).unwrap_or(u16::MAX);
            packet[2..4].copy_from_slice(&l.to_be_bytes());
        }
        let exporter = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (flags & 1)));
        now += u64::from((flags >> 1) & 7) * 600_000;
        let _ = decoder.decode(exporter, now, &packet, &mut sink);
    }
    // The cache must survive a snapshot round trip whatever state the input left.
    let mut snap = Vec::new();
    decoder.save_snapshot(&mut snap).expect("snapshot to memory");
    let mut restarted = Decoder::new(config);
    restarted.load_snapshot(&snap[..]).expect("own snapshot loads");
    let usage = decoder.cache_usage();
    assert!(usage.pending_bytes <= 4096);
    assert!(usage.templates <= 2 * 8);
    std::hint::black_box(records);
}
