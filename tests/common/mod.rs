//! Shared machinery for flowguard's end-to-end tests and the xtask lab and benchmarks.
//!
//! A [`Lab`] is two network namespaces joined by a veth pair: the *collector* side
//! (`198.18.0.1`, `2001:2::1`) where flowguard runs and XDP attaches, and the *exporter* side
//! (`198.18.0.2`, `2001:2::2`) that sends. Addresses are from the benchmarking ranges
//! (RFC 2544 198.18.0.0/15, RFC 5180 2001:2::/48). Because both ends live in namespaces the
//! lab never touches the host's routing table, and several labs can exist at once. Dropping
//! the `Lab` deletes both namespaces (which deletes the veth pair), also when a test panics;
//! labs left behind by a killed process are swept by the next [`Lab::new`].

use std::{
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Collector-side IPv4 address.
pub const COLLECTOR_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Exporter-side IPv4 address.
pub const EXPORTER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Collector-side IPv6 address.
pub const COLLECTOR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// Exporter-side IPv6 address.
pub const EXPORTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces and a veth pair between them.
#[derive(Debug)]
pub struct Lab {
    /// Namespace where the collector runs.
    pub collector_ns: String,
    /// Namespace where exporters run.
    pub exporter_ns: String,
    /// Collector-side interface (inside `collector_ns`).
    pub collector_if: String,
    /// Exporter-side interface (inside `exporter_ns`).
    pub exporter_if: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lab {
    /// Creates a lab with a unique name. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
    ///
    /// # Errors
    /// When namespaces or links cannot be created.
    pub fn new() -> Result<Self> {
        sweep_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{pid}-{n}");
        let lab = Lab {
            collector_ns: format!("fgc-{tag}"),
            exporter_ns: format!("fge-{tag}"),
            // Interface names are at most 15 bytes.
            collector_if: format!("fgc{:x}", (pid << 8) ^ n),
            exporter_if: format!("fge{:x}", (pid << 8) ^ n),
        };
        lab.build().inspect_err(|_| lab.teardown())?;
        Ok(lab)
    }

    /// A lab with fixed names (`fgc-<tag>`, `fge-<tag>`) that outlives this process, for
    /// `cargo xtask lab up`. Fails if it already exists.
    ///
    /// # Errors
    /// When namespaces or links cannot be created.
    pub fn persistent(tag: &str) -> Result<Self> {
        let lab = Self::named(tag);
        lab.build().inspect_err(|_| lab.teardown())?;
        Ok(lab)
    }

    /// The names of a persistent lab, without creating anything; dropping it deletes it.
    #[must_use]
    pub fn named(tag: &str) -> Self {
        Lab {
            collector_ns: format!("fgc-{tag}"),
            exporter_ns: format!("fge-{tag}"),
            collector_if: format!("fgc-{tag}"),
            exporter_if: format!("fge-{tag}"),
        }
    }

    /// Keeps the namespaces after this value is dropped.
    pub fn leak(self) {
        std::mem::forget(self);
    }

    fn build(&self) -> Result<()> {
        let (c, e) = (&self.collector_ns, &self.exporter_ns);
        ip(&["netns", "add", c])?;
        ip(&["netns", "add", e])?;
        ip(&[
            "link",
            "add",
            &self.collector_if,
            "netns",
            c,
            "type",
            "veth",
            "peer",
            "name",
            &self.exporter_if,
            "netns",
            e,
        ])?;
        for (ns, dev, v4, v6) in [
            (c, &self.collector_if, COLLECTOR_V4, COLLECTOR_V6),
            (e, &self.exporter_if, EXPORTER_V4, EXPORTER_V6),
        ] {
            // A quiet link: no link-local address, no router solicitations, no multicast. Only the tests' own packets cross it, which lets
            // them account for every frame exactly.
            ip(&[
                "-n",
                ns,
                "link",
                "set",
                dev,
                "addrgenmode",
                "none",
                "multicast",
                "off",
            ])?;
            for key in ["all", "default", dev.as_str()] {
                // Unsolicited MLD reports for the solicited-node groups of the addresses
                // still go out; a 1 ms report interval makes them all leave during set-up
                // (waited out below), before any test counts frames.
                for setting in [
                    "router_solicitations=0",
                    "mldv1_unsolicited_report_interval=1",
                    "mldv2_unsolicited_report_interval=1",
                ] {
                    let key = format!("net.ipv6.conf.{key}.{setting}");
                    let _ = Command::new("ip")
                        .args(["netns", "exec", ns, "sysctl", "-qw", &key])
                        .status();
                }
            }
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // Resolve neighbours up front so no ARP/ND exchange races the first datagrams.
        let c_mac = mac_of(c, &self.collector_if)?;
        let e_mac = mac_of(e, &self.exporter_if)?;
        ip(&[
            "-n",
            e,
            "neigh",
            "replace",
            &COLLECTOR_V4.to_string(),
            "lladdr",
            &c_mac,
            "dev",
            &self.exporter_if,
            "nud",
            "permanent",
        ])?;
        ip(&[
            "-n",
            e,
            "neigh",
            "replace",
            &COLLECTOR_V6.to_string(),
            "lladdr",
            &c_mac,
            "dev",
            &self.exporter_if,
            "nud",
            "permanent",
        ])?;
        ip(&[
            "-n",
            c,
            "neigh",
            "replace",
            &EXPORTER_V4.to_string(),
            "lladdr",
            &e_mac,
            "dev",
            &self.collector_if,
            "nud",
            "permanent",
        ])?;
        ip(&[
            "-n",
            c,
            "neigh",
            "replace",
            &EXPORTER_V6.to_string(),
            "lladdr",
            &e_mac,
            "dev",
            &self.collector_if,
            "nud",
            "permanent",
        ])?;
        // Wait until set-up traffic (MLD reports) is over: the counters hold still for 200 ms.
        let mut last = (u64::MAX, u64::MAX);
        let mut still = 0;
        for _ in 0..100 {
            let now = Self::link_packets(e, &self.exporter_if)?;
            still = if now == last { still + 1 } else { 0 };
            if still >= 4 {
                return Ok(());
            }
            last = now;
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("lab link never went quiet")
    }

    fn teardown(&self) {
        for ns in [&self.collector_ns, &self.exporter_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// A command run inside the collector namespace.
    #[must_use]
    pub fn in_collector(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.collector_ns]).arg(program);
        cmd
    }

    /// A command run inside the exporter namespace.
    #[must_use]
    pub fn in_exporter(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.exporter_ns]).arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered namespace `ns`; sockets it creates stay in `ns`.
    ///
    /// # Errors
    /// When the namespace cannot be entered, or `f` fails.
    pub fn within<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = PathBuf::from("/var/run/netns").join(ns);
        std::thread::spawn(move || {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: setns on a valid namespace fd; it affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error()).context("setns");
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }

    /// A UDP socket bound in the exporter namespace (v4 or v6, any port).
    ///
    /// # Errors
    /// When the socket cannot be created.
    pub fn exporter_socket(&self, v6: bool) -> Result<UdpSocket> {
        let addr: SocketAddr = if v6 {
            (EXPORTER_V6, 0).into()
        } else {
            (EXPORTER_V4, 0).into()
        };
        Self::within(&self.exporter_ns, move || Ok(UdpSocket::bind(addr)?))
    }

    /// A UDP socket bound to `port` in the collector namespace (dual-stack, any address).
    ///
    /// # Errors
    /// When the socket cannot be created.
    pub fn collector_socket(&self, port: u16) -> Result<UdpSocket> {
        Self::within(&self.collector_ns, move || {
            let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))?;
            Ok(s)
        })
    }

    /// (rx packets, tx packets) of `dev` in namespace `ns`.
    ///
    /// # Errors
    /// When `ip -s link` fails or prints something unexpected.
    pub fn link_packets(ns: &str, dev: &str) -> Result<(u64, u64)> {
        let out = Command::new("ip")
            .args(["-n", ns, "-s", "-j", "link", "show", "dev", dev])
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -s -j link")?;
        let stats = &v[0]["stats64"];
        Ok((
            stats["rx"]["packets"].as_u64().context("rx packets")?,
            stats["tx"]["packets"].as_u64().context("tx packets")?,
        ))
    }

    /// Whether any XDP program is attached to the collector interface (`ip link` output).
    ///
    /// # Errors
    /// When `ip link` fails.
    pub fn xdp_attached(&self) -> Result<bool> {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.collector_ns,
                "-d",
                "link",
                "show",
                "dev",
                &self.collector_if,
            ])
            .output()?;
        if !out.status.success() {
            bail!("ip link show: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.contains("xdp") || text.contains("prog/xdp"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn mac_of(ns: &str, dev: &str) -> Result<String> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"));
    if let Ok(t) = text {
        return Ok(t.trim().to_owned());
    }
    // The device lives in another namespace: ask there.
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "dev", dev])
        .output()?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("no MAC for {dev} in {ns}: {line}"))
}

/// Deletes lab namespaces whose creating process is gone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("fgc-")
            .or_else(|| name.strip_prefix("fge-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The flowguard binary under test: `$FLOWGUARD_BIN` (set by `cargo xtask test`), else the
/// workspace's debug build.
///
/// # Panics
/// When neither exists: the test cannot run and says so rather than skipping.
#[must_use]
pub fn flowguard_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOWGUARD_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/flowguard");
    assert!(
        p.is_file(),
        "flowguard binary not found: run the suite with `cargo xtask test`, which builds it and sets FLOWGUARD_BIN"
    );
    p
}

/// Fails (never skips) when not root: the end-to-end tests need namespaces and XDP.
///
/// # Panics
/// When not running as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this end-to-end test needs root (namespaces, XDP); run `cargo xtask test` as root"
    );
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `/tmp/flowguard-<tag>-<pid>-<n>`.
    ///
    /// # Panics
    /// When the directory cannot be created.
    #[must_use]
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("flowguard-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    /// A path inside.
    #[must_use]
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `cond` holds, polling every 50 ms, or fails after `timeout`.
///
/// # Errors
/// On timeout, naming `what`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// A flowguard process with its stderr captured to a file.
#[derive(Debug)]
pub struct Collector {
    /// The child (`ip netns exec` execs flowguard, so this is flowguard itself).
    pub child: std::process::Child,
    /// Its stderr log.
    pub log: PathBuf,
}

impl Collector {
    /// Starts `flowguard run <args>` in the lab's collector namespace and waits until its
    /// sockets are bound on `ready_port` (so the capture path is up).
    ///
    /// # Errors
    /// When it does not start or exits early.
    pub fn start(lab: &Lab, args: &[&str], log: PathBuf, ready_port: u16) -> Result<Self> {
        let mut cmd = lab.in_collector(flowguard_bin());
        cmd.arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(File::create(&log)?);
        let mut child = cmd.spawn().context("spawning flowguard")?;
        let ns = lab.collector_ns.clone();
        let ready = wait_for(
            "flowguard to bind its sockets",
            Duration::from_secs(30),
            || {
                if let Ok(Some(_)) = child.try_wait() {
                    return true;
                }
                port_bound(&ns, ready_port)
            },
        );
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "flowguard exited early ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        ready?;
        Ok(Self { child, log })
    }

    /// Sends `signal` and waits for exit, returning the exit status.
    ///
    /// # Errors
    /// When the process does not exit within 30 s.
    pub fn stop(&mut self, signal: i32) -> Result<std::process::ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("flowguard did not exit within 30 s of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its stderr so far.
    #[must_use]
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether a UDP socket is bound on `port` inside namespace `ns`.
fn port_bound(ns: &str, port: u16) -> bool {
    udp_socket(ns, port).is_ok_and(|s| s.is_some())
}

/// The receive queue (bytes) and drop count of the UDP socket bound on `port` in
/// namespace `ns` (`/proc/net/udp6`, where dual-stack sockets are listed, then
/// `/proc/net/udp`), or `None` when no socket is bound there.
///
/// # Errors
/// When the namespace cannot be entered or a line cannot be read.
pub fn udp_socket(ns: &str, port: u16) -> Result<Option<(u64, u64)>> {
    let local = format!(":{port:04X}");
    let tables = Lab::within(ns, || {
        Ok(
            std::fs::read_to_string("/proc/thread-self/net/udp6").unwrap_or_default()
                + &std::fs::read_to_string("/proc/thread-self/net/udp").unwrap_or_default(),
        )
    })?;
    for line in tables.lines() {
        // sl local rem st tx_queue:rx_queue tr tm->when retrnsmt uid timeout inode ref
        // pointer drops
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 12 && f[1].ends_with(&local) {
            let rx = f[4].split_once(':').map_or("0", |(_, rx)| rx);
            return Ok(Some((u64::from_str_radix(rx, 16)?, f[12].parse()?)));
        }
    }
    Ok(None)
}

/// One datagram as a worker logged it (`--packet-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Worker shard.
    pub shard: usize,
    /// "xdp", "socket" or "pcap".
    pub source: String,
    /// Exporter address.
    pub exporter: IpAddr,
    /// Exporter port.
    pub src_port: u16,
    /// Collector port.
    pub dst_port: u16,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Reads every `shard-*.ndjson` in a packet-log directory.
///
/// # Errors
/// On unreadable or malformed logs.
pub fn read_packet_log(dir: &Path) -> Result<Vec<Logged>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("bad log line {line}"))?;
            let hex = v["payload"].as_str().context("payload")?;
            let payload = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?;
            out.push(Logged {
                shard: usize::try_from(v["shard"].as_u64().context("shard")?)?,
                source: v["source"].as_str().context("source")?.to_owned(),
                exporter: v["exporter"].as_str().context("exporter")?.parse()?,
                src_port: u16::try_from(v["src_port"].as_u64().context("src_port")?)?,
                dst_port: u16::try_from(v["dst_port"].as_u64().context("dst_port")?)?,
                payload,
            });
        }
    }
    Ok(out)
}

/// An export-like payload of `len` bytes (at least 2): a v9 header when `len >= 20`
/// (source id `domain` at byte 16), or an IPFIX header when `ipfix` (domain at byte 12,
/// length field set), then a counter pattern that makes every datagram unique.
#[must_use]
pub fn export_payload(len: usize, domain: u32, ipfix: bool, seq: u32) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8)
        .collect();
    if len >= 20 {
        if ipfix {
            p[0..2].copy_from_slice(&10u16.to_be_bytes());
            p[2..4].copy_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
            p[12..16].copy_from_slice(&domain.to_be_bytes());
        } else {
            p[0..2].copy_from_slice(&9u16.to_be_bytes());
            p[16..20].copy_from_slice(&domain.to_be_bytes());
        }
        p[4..8].copy_from_slice(&seq.to_be_bytes());
    }
    p
}

/// Sends datagrams from `socket` to `dst` with `sendmmsg`, as fast as one core can, for
/// `duration`. Returns the number of datagrams the kernel accepted.
///
/// # Errors
/// On socket errors other than a full queue.
pub fn blast(
    socket: &UdpSocket,
    dst: SocketAddr,
    payloads: &[Vec<u8>],
    duration: Duration,
) -> Result<u64> {
    socket.connect(dst)?;
    let batch = payloads.len().clamp(1, 64);
    let mut iovecs: Vec<libc::iovec> = payloads[..batch]
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr().cast_mut().cast(),
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zero is a valid start.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
    for (m, iov) in msgs.iter_mut().zip(iovecs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let deadline = Instant::now() + duration;
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..64 {
            // SAFETY: msgs points at iovecs that point at payloads, all alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    u32::try_from(batch)?,
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::ECONNREFUSED) => continue,
                    _ => return Err(err.into()),
                }
            }
            sent += u64::try_from(n)?;
        }
    }
    Ok(sent)
}

/// Runs softflowd on `traffic` inside the lab's collector namespace, exporting version
/// `version` to 127.0.0.1:`port`, and captures the exports on that namespace's loopback.
/// Returns the capture and the number of records softflowd says it exported.
///
/// # Errors
/// When softflowd or tcpdump fail, stall, or lose packets.
#[expect(
    clippy::too_many_lines,
    reason = "one linear procedure: start capture, run and poke softflowd, stop, check"
)]
pub fn export_with_softflowd(
    lab: &Lab,
    dir: &Path,
    traffic: &Path,
    version: u16,
    port: u16,
) -> Result<(PathBuf, usize)> {
    // A receiver, so the exports are not answered with port-unreachable errors.
    let _sink = lab.collector_socket(port)?;
    let pcap = dir.join(format!("exports-v{version}.pcap"));
    let tcpdump_log = dir.join(format!("tcpdump-v{version}.log"));
    let mut tcpdump = lab
        .in_collector("tcpdump")
        // A small snap length and a large buffer: with --immediate-mode the kernel ring
        // holds few snaplen-sized frames, and softflowd's burst at exit overflows the
        // default one (tcpdump then reports packets "dropped by kernel").
        .args([
            "-s",
            "9000",
            "-B",
            "32768",
            "-i",
            "lo",
            "-n",
            "-U",
            "--immediate-mode",
        ])
        .arg("-w")
        .arg(&pcap)
        .args(["udp", "port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(File::create(&tcpdump_log)?)
        .spawn()
        .context("spawning tcpdump")?;
    let listening = wait_for("tcpdump to listen", Duration::from_secs(10), || {
        std::fs::read_to_string(&tcpdump_log).is_ok_and(|s| s.contains("listening on"))
    });
    if let Err(e) = listening {
        let _ = tcpdump.kill();
        let _ = tcpdump.wait();
        return Err(e.context(std::fs::read_to_string(&tcpdump_log).unwrap_or_default()));
    }

    let ctl = dir.join(format!("softflowd-v{version}.ctl"));
    let log = dir.join(format!("softflowd-v{version}.log"));
    // -a: clock softflowd by the capture's timestamps (flow times, sysUpTime and export
    // times then describe the capture, not the wall clock of the replay).
    let mut softflowd = lab
        .in_collector("softflowd")
        .arg("-r")
        .arg(traffic)
        .args(["-n", &format!("127.0.0.1:{port}")])
        .args(["-v", &version.to_string(), "-d", "-a"])
        .arg("-p")
        .arg(dir.join(format!("softflowd-v{version}.pid")))
        .arg("-c")
        .arg(&ctl)
        .stdout(File::create(&log)?)
        .stderr(File::create(&log)?.try_clone()?)
        .spawn()
        .context("spawning softflowd")?;
    // softflowd 1.1.0 reading a file blocks at the top of its main loop in accept() on its
    // control socket, so it only moves on when a control client connects. Poke it with
    // `softflowctl statistics` until it reaches the end of the capture, which makes it
    // expire and export every flow and exit.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = softflowd.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = softflowd.kill();
            let _ = softflowd.wait();
            let _ = tcpdump.kill();
            let _ = tcpdump.wait();
            bail!(
                "softflowd -v {version} did not finish within 30 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if ctl.exists() {
            let _ = Command::new("softflowctl")
                .arg("-c")
                .arg(&ctl)
                .arg("statistics")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let tcpdump write the last datagrams, then stop it (its pid is tcpdump's own:
    // `ip netns exec` execs it).
    std::thread::sleep(Duration::from_millis(300));
    let pid = libc::pid_t::try_from(tcpdump.id())?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tcpdump.wait()?;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        bail!("softflowd -v {version} failed ({status}): {log_text}");
    }
    let tcpdump_text = std::fs::read_to_string(&tcpdump_log).unwrap_or_default();
    let dropped = tcpdump_text
        .lines()
        .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
        .and_then(|n| n.trim().parse::<u64>().ok());
    if dropped != Some(0) {
        bail!("tcpdump lost export packets: {tcpdump_text}");
    }
    // softflowd's summary at exit: "Flows exported: F (R records) in P packets (0 failures)".
    let records = log_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Flows exported: "))
        .and_then(|rest| {
            let (_, r) = rest.split_once('(')?;
            let (records, rest) = r.split_once(" records) in ")?;
            let (_, failures) = rest.split_once('(')?;
            failures
                .starts_with("0 failures")
                .then(|| records.parse::<usize>().ok())?
        })
        .with_context(|| {
            format!("softflowd -v {version} reported no export or failures: {log_text}")
        })?;
    Ok((pcap, records))
}
