//! Distinct counting: exact while small, `HyperLogLog` once large.
//!
//! [`DistinctCounter`] keeps up to [`EXACT_LIMIT`] 64-bit hashes in a vector (exact,
//! 8 bytes each) and then switches to a [`HyperLogLog`] of 2^8 registers (256 bytes,
//! standard error 1.04/√256 ≈ 6.5 %; Flajolet et al. 2007, with the linear-counting
//! correction for small cardinalities). Scan sources that contact millions of targets
//! therefore cost a fixed 256 bytes per counter.

use std::{
    hash::{Hash, Hasher},
    net::IpAddr,
};

use ipnet::IpNet;

/// Hashes kept exactly before switching to the sketch.
pub const EXACT_LIMIT: usize = 32;

const HLL_BITS: u32 = 8;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// The splitmix64 / Murmur3 64-bit finalizer: a bijective avalanche mix.
#[inline]
#[must_use]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A well-mixed 64-bit hash of an address (v4-mapped v6 hashes as v4).
#[inline]
#[must_use]
pub fn addr_hash(addr: IpAddr) -> u64 {
    match addr.to_canonical() {
        IpAddr::V4(a) => mix64(u64::from(a.to_bits()) | 0x4_0000_0000),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            #[expect(clippy::cast_possible_truncation, reason = "taking the low half")]
            let lo = b as u64;
            mix64(mix64((b >> 64) as u64) ^ lo)
        }
    }
}

/// A well-mixed 64-bit hash of anything hashable (fixed seed, deterministic).
#[must_use]
pub fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut h = crate::detect::lru::FxHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// A `HyperLogLog` sketch with 256 one-byte registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyperLogLog {
    registers: Box<[u8; HLL_REGISTERS]>,
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self {
            registers: Box::new([0; HLL_REGISTERS]),
        }
    }
}

impl HyperLogLog {
    /// Adds a (well-mixed) 64-bit hash.
    #[inline]
    pub fn insert_hash(&mut self, hash: u64) {
        #[expect(clippy::cast_possible_truncation, reason = "masked to 8 bits")]
        let index = (hash & (HLL_REGISTERS as u64 - 1)) as usize;
        let rest = hash >> HLL_BITS;
        // Rank: position of the first 1-bit in the remaining 56 bits, 1-based.
        #[expect(clippy::cast_possible_truncation, reason = "at most 57")]
        let rank = (rest.trailing_zeros().min(64 - HLL_BITS) + 1) as u8;
        if rank > self.registers[index] {
            self.registers[index] = rank;
        }
    }

    /// Estimated number of distinct hashes inserted.
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "register counts are small")]
    pub fn estimate(&self) -> f64 {
        let m = HLL_REGISTERS as f64;
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in self.registers.iter() {
            sum += (-f64::from(r)).exp2();
            if r == 0 {
                zeros += 1;
            }
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }

    /// Heap bytes.
    #[must_use]
    pub const fn heap_bytes() -> usize {
        HLL_REGISTERS
    }
}

/// Distinct count: exact up to [`EXACT_LIMIT`] elements, then a [`HyperLogLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DistinctCounter {
    /// The distinct hashes seen so far.
    Exact(Vec<u64>),
    /// The sketch, once more than [`EXACT_LIMIT`] were seen.
    Sketch(HyperLogLog),
}

impl Default for DistinctCounter {
    fn default() -> Self {
        Self::Exact(Vec::new())
    }
}

impl DistinctCounter {
    /// Adds a (well-mixed) hash.
    #[inline]
    pub fn insert_hash(&mut self, hash: u64) {
        match self {
            Self::Exact(v) => {
                if v.contains(&hash) {
                    return;
                }
                if v.len() < EXACT_LIMIT {
                    v.push(hash);
                    return;
                }
                let mut hll = HyperLogLog::default();
                for &h in v.iter() {
                    hll.insert_hash(h);
                }
                hll.insert_hash(hash);
                *self = Self::Sketch(hll);
            }
            Self::Sketch(hll) => hll.insert_hash(hash),
        }
    }

    /// Distinct elements seen (exact while small, then an estimate).
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    pub fn count(&self) -> f64 {
        match self {
            Self::Exact(v) => v.len() as f64,
            Self::Sketch(hll) => hll.estimate(),
        }
    }

    /// Whether the count is still exact.
    #[must_use]
    pub fn is_exact(&self) -> bool {
        matches!(self, Self::Exact(_))
    }

    /// Heap bytes held.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        match self {
            Self::Exact(v) => v.capacity() * 8,
            Self::Sketch(_) => HyperLogLog::heap_bytes(),
        }
    }
}

/// A 128-bit linear-counting bitmap (Whang et al. 1990): 16 bytes, good to a few
/// percent up to ~100 distinct elements and saturating near 600. Used for "how many
/// internal hosts talk to this destination" (prevalence), where only small counts matter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinearCounter(u128);

impl LinearCounter {
    /// Adds a (well-mixed) hash.
    #[inline]
    pub fn insert_hash(&mut self, hash: u64) {
        self.0 |= 1u128 << (hash & 127);
    }

    /// Estimated distinct elements.
    #[must_use]
    pub fn count(&self) -> f64 {
        let zeros = f64::from(self.0.count_zeros());
        if zeros == 0.0 {
            return 128.0 * 128f64.ln();
        }
        -128.0 * (zeros / 128.0).ln()
    }
}

/// The configured home networks as (network, mask) integers: the same answer as
/// `DetectConfig::is_internal` (v4-mapped v6 addresses test as v4; a network only
/// contains addresses of its own family) for a few instructions per network instead of
/// `IpNet::contains`' general path, which the detectors ask several times per record.
///
/// A v4 address is looked up by its first octet, then (for the few first octets that a
/// longer prefix splits) by its second. Each step says outside, inside, or split further;
/// only an address in a /16 that a prefix longer than /16 splits scans the list.
#[derive(Clone, Debug)]
pub struct HomeNets {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// Per first octet: [`OUTSIDE`], [`INSIDE`], [`SPLIT`], or [`BY_SECOND`] + the
    /// index of its table in `v4_second`.
    v4_first: [u8; 256],
    /// Per second octet (of a first octet that needs it): [`OUTSIDE`], [`INSIDE`] or
    /// [`SPLIT`].
    v4_second: Vec<[u8; 256]>,
}

/// No home network meets the range.
const OUTSIDE: u8 = 0;
/// A home network holds the whole range.
const INSIDE: u8 = 1;
/// Some home network meets part of the range: scan the list.
const SPLIT: u8 = 2;
/// The first of the values of `v4_first` that name a second-octet table.
const BY_SECOND: u8 = 3;

impl Default for HomeNets {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl HomeNets {
    /// The networks of `nets`.
    #[must_use]
    pub fn new(nets: &[IpNet]) -> Self {
        let mut h = Self {
            v4: Vec::new(),
            v6: Vec::new(),
            v4_first: [OUTSIDE; 256],
            v4_second: Vec::new(),
        };
        for n in nets {
            match n {
                IpNet::V4(n) => h.v4.push((n.network().to_bits(), n.netmask().to_bits())),
                IpNet::V6(n) => h.v6.push((n.network().to_bits(), n.netmask().to_bits())),
            }
        }
        for first in 0..=u8::MAX {
            let start = u32::from(first) << 24;
            let class = h.classify(start, 8);
            let class = if class == SPLIT && h.v4_second.len() < usize::from(u8::MAX - BY_SECOND) {
                let mut second = [OUTSIDE; 256];
                for (b, c) in (0u32..).zip(second.iter_mut()) {
                    *c = h.classify(start | b << 16, 16);
                }
                #[expect(clippy::cast_possible_truncation, reason = "checked above")]
                let index = h.v4_second.len() as u8;
                h.v4_second.push(second);
                BY_SECOND + index
            } else {
                class
            };
            h.v4_first[usize::from(first)] = class;
        }
        if h.v4_second.is_empty() {
            // `contains_v4` reads table 0 for every address.
            h.v4_second.push([OUTSIDE; 256]);
        }
        h
    }

    /// How the v4 networks meet the `/len` range that starts at `start`.
    fn classify(&self, start: u32, len: u32) -> u8 {
        let top = u32::MAX << (32 - len);
        let mut class = OUTSIDE;
        for &(n, m) in &self.v4 {
            let shared = m & top;
            if start & shared != n & shared {
                continue;
            }
            if m & !top == 0 {
                return INSIDE;
            }
            class = SPLIT;
        }
        class
    }

    /// Whether `addr` is in one of the networks.
    #[inline]
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.contains_v4(a.to_bits()),
            IpAddr::V6(a) => self.contains_v6(a.to_bits()),
        }
    }

    /// Whether the (canonical) v4 address `a` is in one of the networks.
    #[inline]
    #[must_use]
    pub fn contains_v4(&self, a: u32) -> bool {
        // The second octet's class is read whether or not the first octet asks for it
        // (from table 0 when it does not: there always is one) and chosen without a
        // branch. A record's ends are inside and outside about as randomly as its
        // direction, and a branch here mispredicted about once a record.
        let first = self.v4_first[(a >> 24) as usize];
        let row = usize::from(first.saturating_sub(BY_SECOND));
        let second = self.v4_second[row][(a >> 16) as usize & 0xff];
        let class = std::hint::select_unpredictable(first >= BY_SECOND, second, first);
        if class < SPLIT {
            class == INSIDE
        } else {
            self.scan_v4(a)
        }
    }

    /// Asks every v4 network: for a /16 that a longer prefix splits.
    #[cold]
    #[inline(never)]
    fn scan_v4(&self, a: u32) -> bool {
        self.v4.iter().any(|&(n, m)| a & m == n)
    }

    /// Whether the v6 address `a` (not v4-mapped) is in one of the networks.
    #[inline]
    #[must_use]
    pub fn contains_v6(&self, a: u128) -> bool {
        self.v6.iter().any(|&(n, m)| a & m == n)
    }
}

/// A count-min sketch (Cormode and Muthukrishnan 2005) of saturating 32-bit counters,
/// used as an admission filter: per-key state is created only once a key's estimated
/// total reaches a threshold. The estimate never falls below the true total (collisions
/// only add), so no key that reaches the threshold is ever kept out; keys that never do
/// (almost all of them, for per-pair state) cost a few bytes of a fixed table instead of a
/// map entry. Memory: 2 × `width` × 4 bytes, plus one generation byte per 64-byte line,
/// fixed.
///
/// Blocked: a key's two counters sit in one 64-byte line (16 counters), chosen by one
/// part of the hash, at two different offsets chosen by another. Two independent rows
/// cost two cache misses per record once the table outgrows the cache, which made this
/// sketch the largest single cost of the exfiltration detector; one line per key keeps
/// the never-underestimate guarantee and costs a slightly higher collision rate.
///
/// Cleared lazily: [`CountMin::clear`] starts a new generation, and a line is zeroed when
/// it is first touched in it (its generation byte is stale). A clear per window used to
/// write the whole table (2 MB at the default cap) even when a window touched a few
/// hundred lines. The generation byte wraps after 255 clears; that clear zeroes
/// everything, so a stale byte never matches by accident.
#[derive(Clone, Debug)]
pub struct CountMin {
    lines: Box<[[u32; LINE]]>,
    /// Per line: the generation its counters belong to.
    line_generation: Box<[u8]>,
    generation: u8,
    /// Lines − 1 (a power of two).
    line_mask: usize,
}

/// Counters per 64-byte line.
const LINE: usize = 16;

impl CountMin {
    /// A sketch of 2 × `width` counters (`width` rounded up to a power of two, at least
    /// 64).
    #[must_use]
    pub fn new(width: usize) -> Self {
        let lines = 2 * width.max(64).next_power_of_two() / LINE;
        Self {
            lines: vec![[0; LINE]; lines].into_boxed_slice(),
            line_generation: vec![0; lines].into_boxed_slice(),
            generation: 0,
            line_mask: lines - 1,
        }
    }

    /// Adds `amount` to the counters of a (well-mixed) `hash`; returns the new estimate.
    #[inline]
    pub fn add(&mut self, hash: u64, amount: u32) -> u32 {
        let index = (hash >> 32) as usize & self.line_mask;
        let line = &mut self.lines[index];
        let generation = &mut self.line_generation[index];
        if *generation != self.generation {
            *generation = self.generation;
            *line = [0; LINE];
        }
        #[expect(clippy::cast_possible_truncation, reason = "the low bits only")]
        let first = hash as usize % LINE;
        // A second offset, never the first: one of the other 15 counters.
        let second = (first + 1 + (hash >> 4) as usize % (LINE - 1)) % LINE;
        let x = line[first].saturating_add(amount);
        line[first] = x;
        let y = line[second].saturating_add(amount);
        line[second] = y;
        x.min(y)
    }

    /// Forgets everything (a new generation; lines are zeroed when next touched).
    pub fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.lines.fill([0; LINE]);
            self.line_generation.fill(0);
        }
    }

    /// Bytes held.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.lines.len() * size_of::<[u32; LINE]>() + self.line_generation.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_sketch_within_error() {
        let mut d = DistinctCounter::default();
        for i in 0..20u64 {
            d.insert_hash(mix64(i));
            d.insert_hash(mix64(i));
        }
        assert!(d.is_exact());
        assert!((d.count() - 20.0).abs() < f64::EPSILON);
        for i in 0..100_000u64 {
            d.insert_hash(mix64(i));
        }
        assert!(!d.is_exact());
        let est = d.count();
        assert!((est - 100_000.0).abs() / 100_000.0 < 0.2, "estimate {est}");
        assert_eq!(d.heap_bytes(), 256);
    }

    #[test]
    fn home_nets_agree_with_ipnet() {
        let nets: Vec<IpNet> = [
            "10.0.0.0/8",
            "192.168.1.77/24",
            "198.18.0.0/15",
            "96.0.0.0/6",
            "172.16.0.0/12",
            "fc00::/7",
            "2001:2::/48",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
        let h = HomeNets::new(&nets);
        for a in [
            "10.1.2.3",
            "11.0.0.1",
            "9.255.255.255",
            "98.1.2.3",
            "100.0.0.1",
            "95.255.255.255",
            "172.31.0.1",
            "172.32.0.1",
            "172.15.255.255",
            "192.168.1.5",
            "192.168.2.5",
            "::ffff:10.0.0.1",
            "fd00::1",
            "2001:2::9",
            "2001:3::9",
            "::1",
        ] {
            let a: IpAddr = a.parse().unwrap();
            let c = a.to_canonical();
            assert_eq!(h.contains(a), nets.iter().any(|n| n.contains(&c)), "{a}");
        }
        // Every first octet, and every second octet of the split ones, at random
        // addresses within them.
        for i in 0..65_536u64 {
            #[expect(clippy::cast_possible_truncation, reason = "random low bits")]
            let r = mix64(i) as u32;
            for first in [r >> 24, 0xac, 0xc0, 0xc6] {
                let bits = r & 0x00ff_ffff | first << 24;
                let a = IpAddr::from(std::net::Ipv4Addr::from_bits(bits));
                assert_eq!(h.contains(a), nets.iter().any(|n| n.contains(&a)), "{a}");
            }
        }
    }

    #[test]
    fn count_min_never_underestimates() {
        let mut c = CountMin::new(64);
        let mut truth = vec![0u32; 1000];
        for i in 0..20_000u64 {
            let k = mix64(i * 7) % 1000;
            truth[k as usize] += 3;
            let est = c.add(mix64(k), 3);
            assert!(est >= truth[k as usize]);
        }
        c.clear();
        assert_eq!(c.add(mix64(5), 1), 1);
        // Lazy clearing holds across the generation byte's wrap.
        for round in 0..600u32 {
            c.clear();
            assert_eq!(c.add(mix64(5), 1), 1, "round {round}");
            assert_eq!(c.add(mix64(5), 2), 3, "round {round}");
        }
        // Roomy: 2,000 keys in 65,536 counters are 99% exact.
        let mut c = CountMin::new(1 << 15);
        let exact = (0..2_000u64).filter(|&k| c.add(mix64(k), 1) == 1).count();
        assert!(exact >= 1_980, "{exact} of 2000 exact");
    }

    #[test]
    fn linear_counter_is_close_for_small_counts() {
        let mut c = LinearCounter::default();
        for i in 0..10u64 {
            c.insert_hash(mix64(i + 77));
        }
        assert!((c.count() - 10.0).abs() < 2.0, "{}", c.count());
    }
}
