//! Loading the kernel programs, attaching XDP, and reading its rings and counters.
//!
//! The object is built by `build.rs` (aya-build) and embedded here. XDP attaches through a
//! `bpf_link` (kernel 5.9+), which the kernel detaches when the last file descriptor to it
//! closes — so the program goes away with the process even after SIGKILL.

// `XdpError` carries aya's error types (hundreds of bytes); it is returned once, at
// start-up, never on a packet path, so boxing it would buy nothing.
#![expect(clippy::result_large_err, reason = "set-up errors only; see above")]

use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{SkReuseport, Xdp, XdpMode},
};
use flowguard_ebpf::{
    CONFIG_MAP, COUNTERS_MAP, MAX_PORTS, MAX_SHARDS, Outcome, PORTS_MAP, REUSEPORT_PROGRAM,
    RING_HEADER_LEN, RingHeader, XDP_PROGRAM, config,
};

/// The eBPF object, embedded at build time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowguard"));

/// The program wakes a worker once 1/`WAKEUP_FRACTION` of its ring is queued; below that the
/// worker's poll timeout ([`crate::worker::RING_POLL_MS`]) bounds the latency.
const WAKEUP_FRACTION: u32 = 16;

/// Smallest ring size the kernel accepts: one page.
const MIN_RING_BYTES: u32 = 4096;

/// Errors setting up the kernel side.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The binary was built with `AYA_BUILD_SKIP=1` and holds no eBPF object.
    #[error(
        "this flowguard binary was built without its eBPF object (AYA_BUILD_SKIP); run `cargo xtask setup` and rebuild"
    )]
    NoObject,
    /// Loading the object failed (verifier, permissions, kernel version).
    #[error("loading the eBPF object failed (are you root, on kernel >= 5.18?)")]
    Load(#[source] aya::EbpfError),
    /// A program or map is missing or has the wrong type.
    #[error("eBPF object has no usable {what} `{name}`")]
    Missing {
        /// "program" or "map".
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Loading a program into the kernel failed.
    #[error("loading program `{name}` failed")]
    Program {
        /// Program name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Attaching XDP failed.
    #[error("attaching XDP to {iface} in {mode} mode failed{hint}")]
    Attach {
        /// Interface name.
        iface: String,
        /// Mode tried.
        mode: &'static str,
        /// What to try next.
        hint: &'static str,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("eBPF map `{name}`")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
}

/// How XDP is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// In the driver (fastest; needs driver support, e.g. veth, mlx5, i40e, ixgbe).
    Native,
    /// Generic XDP in the kernel stack, for drivers without native support (and `lo`).
    Skb,
}

/// The loaded kernel programs and the maps user space keeps.
pub struct Kernel {
    ebpf: Ebpf,
    num_shards: usize,
    xdp_link: Option<aya::programs::xdp::XdpLinkId>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("num_shards", &self.num_shards)
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// Loads the object with `num_shards` rings of `ring_bytes` each (the unused ring maps
    /// shrink to a page) and fills the port set and config.
    ///
    /// # Errors
    /// When the object is missing or the kernel refuses it.
    pub fn load(num_shards: usize, ring_bytes: u32, ports: &[u16]) -> Result<Self, XdpError> {
        if OBJECT.is_empty() {
            return Err(XdpError::NoObject);
        }
        if num_shards == 0 || num_shards > MAX_SHARDS {
            return Err(XdpError::Config(format!(
                "workers must be 1..={MAX_SHARDS}, got {num_shards}"
            )));
        }
        if ports.is_empty() || ports.len() > MAX_PORTS {
            return Err(XdpError::Config(format!(
                "between 1 and {MAX_PORTS} ports are supported, got {}",
                ports.len()
            )));
        }
        if !ring_bytes.is_power_of_two() || ring_bytes < MIN_RING_BYTES {
            return Err(XdpError::Config(format!(
                "--ring-bytes must be a power of two >= {MIN_RING_BYTES}, got {ring_bytes}"
            )));
        }
        let names: Vec<String> = (0..MAX_SHARDS).map(ring_name).collect();
        let mut loader = EbpfLoader::new();
        for (k, name) in names.iter().enumerate() {
            loader.map_max_entries(
                name,
                if k < num_shards {
                    ring_bytes
                } else {
                    MIN_RING_BYTES
                },
            );
        }
        let mut ebpf = loader.load(OBJECT).map_err(XdpError::Load)?;

        let shards = u32::try_from(num_shards).map_err(|e| XdpError::Config(e.to_string()))?;
        let mut cfg: Array<_, u32> =
            Array::try_from(map_mut(&mut ebpf, CONFIG_MAP)?).map_err(|source| XdpError::Map {
                name: CONFIG_MAP,
                source,
            })?;
        cfg.set(config::NUM_SHARDS, shards, 0)
            .map_err(|source| XdpError::Map {
                name: CONFIG_MAP,
                source,
            })?;
        cfg.set(config::WAKEUP_BYTES, ring_bytes / WAKEUP_FRACTION, 0)
            .map_err(|source| XdpError::Map {
                name: CONFIG_MAP,
                source,
            })?;

        let mut port_map: HashMap<_, u16, u8> = HashMap::try_from(map_mut(&mut ebpf, PORTS_MAP)?)
            .map_err(|source| XdpError::Map {
            name: PORTS_MAP,
            source,
        })?;
        for (slot, port) in ports.iter().enumerate() {
            let slot = u8::try_from(slot).map_err(|e| XdpError::Config(e.to_string()))?;
            port_map
                .insert(port, slot, 0)
                .map_err(|source| XdpError::Map {
                    name: PORTS_MAP,
                    source,
                })?;
        }
        Ok(Self {
            ebpf,
            num_shards,
            xdp_link: None,
        })
    }

    /// Loads the XDP program and attaches it to `iface`. The attachment lives as long as
    /// this `Kernel`.
    ///
    /// # Errors
    /// When the interface is missing or the driver refuses the mode.
    pub fn attach_xdp(&mut self, iface: &str, mode: AttachMode) -> Result<(), XdpError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(XDP_PROGRAM)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| XdpError::Missing {
                what: "program",
                name: XDP_PROGRAM.into(),
            })?;
        program.load().map_err(|source| XdpError::Program {
            name: XDP_PROGRAM,
            source,
        })?;
        let (aya_mode, mode_name, hint) = match mode {
            AttachMode::Native => (
                XdpMode::Driver,
                "native",
                "; if the driver has no native XDP, rerun with --xdp-mode skb",
            ),
            AttachMode::Skb => (XdpMode::Skb, "skb (generic)", ""),
        };
        let link = program
            .attach(iface, aya_mode)
            .map_err(|source| XdpError::Attach {
                iface: iface.to_owned(),
                mode: mode_name,
                hint,
                source,
            })?;
        self.xdp_link = Some(link);
        Ok(())
    }

    /// Detaches XDP (if attached); the maps stay readable.
    pub fn detach_xdp(&mut self) {
        let Some(link) = self.xdp_link.take() else {
            return;
        };
        if let Some(program) = self.ebpf.program_mut(XDP_PROGRAM) {
            let program: Result<&mut Xdp, _> = program.try_into();
            if let Ok(program) = program {
                let _ = program.detach(link);
            }
        }
    }

    /// Loads the `sk_reuseport` program and returns it for [`super::socket`] to attach.
    ///
    /// # Errors
    /// When the kernel refuses it.
    pub fn reuseport_program(&mut self) -> Result<&mut SkReuseport, XdpError> {
        let program: &mut SkReuseport = self
            .ebpf
            .program_mut(REUSEPORT_PROGRAM)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| XdpError::Missing {
                what: "program",
                name: REUSEPORT_PROGRAM.into(),
            })?;
        if program.fd().is_err() {
            program.load().map_err(|source| XdpError::Program {
                name: REUSEPORT_PROGRAM,
                source,
            })?;
        }
        Ok(program)
    }

    /// Mutable access to the loaded object (for the socket map).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Takes the rings of the shards in use, one per worker, in shard order.
    ///
    /// # Errors
    /// When a ring map is missing (or was already taken).
    pub fn take_rings(&mut self) -> Result<Vec<RingBuf<MapData>>, XdpError> {
        (0..self.num_shards)
            .map(|k| {
                let name = ring_name(k);
                let map = self.ebpf.take_map(&name).ok_or_else(|| XdpError::Missing {
                    what: "map",
                    name: name.clone(),
                })?;
                RingBuf::try_from(map).map_err(|source| XdpError::Map {
                    name: "RING_<k>",
                    source,
                })
            })
            .collect()
    }

    /// The XDP outcome counters summed over CPUs, in [`Outcome::ALL`] order.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn counters(&self) -> Result<[u64; Outcome::COUNT as usize], XdpError> {
        let map = self
            .ebpf
            .map(COUNTERS_MAP)
            .ok_or_else(|| XdpError::Missing {
                what: "map",
                name: COUNTERS_MAP.into(),
            })?;
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| XdpError::Map {
                name: COUNTERS_MAP,
                source,
            })?;
        let mut out = [0u64; Outcome::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            let per_cpu = counters.get(&idx, 0).map_err(|source| XdpError::Map {
                name: COUNTERS_MAP,
                source,
            })?;
            *slot = per_cpu.iter().sum();
        }
        Ok(out)
    }
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::maps::Map, XdpError> {
    ebpf.map_mut(name).ok_or_else(|| XdpError::Missing {
        what: "map",
        name: name.into(),
    })
}

/// Name of shard `k`'s ring-buffer map.
#[must_use]
pub fn ring_name(k: usize) -> String {
    format!("RING_{k}")
}

/// Splits a ring record into its header and payload. Returns `None` for a record too short
/// for its own header's length (which the program never writes; counted by the caller).
#[must_use]
pub fn split_record(record: &[u8]) -> Option<(RingHeader, &[u8])> {
    let header_bytes = record.get(..RING_HEADER_LEN)?;
    // SAFETY: RingHeader is repr(C) plain data, any bit pattern is valid, and the slice is
    // RING_HEADER_LEN bytes; read_unaligned makes no alignment assumption.
    let header: RingHeader = unsafe { header_bytes.as_ptr().cast::<RingHeader>().read_unaligned() };
    let len = usize::from(header.payload_len);
    let payload = record.get(RING_HEADER_LEN..RING_HEADER_LEN + len)?;
    Some((header, payload))
}

/// Offset to add to `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) to get Unix-epoch nanoseconds.
#[must_use]
pub fn monotonic_to_unix_offset() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    let mono = Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    );
    let mono_ns = u64::try_from(mono.as_nanos()).unwrap_or(0);
    super::now_unix_ns().saturating_sub(mono_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_record_respects_the_header_length() {
        let mut rec = vec![0u8; RING_HEADER_LEN + 256];
        rec[28..30].copy_from_slice(&3u16.to_ne_bytes());
        rec[RING_HEADER_LEN..RING_HEADER_LEN + 3].copy_from_slice(b"abc");
        let (h, p) = split_record(&rec).unwrap();
        assert_eq!(h.payload_len, 3);
        assert_eq!(p, b"abc");
        rec[28..30].copy_from_slice(&300u16.to_ne_bytes());
        assert!(split_record(&rec).is_none(), "length past the slot");
        assert!(split_record(&rec[..10]).is_none());
    }
}
