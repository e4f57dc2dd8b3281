//! `cargo xtask bench e2e`: offered load against loss, CPU and memory for flowguard (XDP and
//! socket), nfcapd and the Python `netflow` collector, on the same traffic in the same run.
//!
//! The replayer (`flowguard replay`, sendmmsg, fixed packets/s) runs in the lab's exporter
//! namespace; each collector runs alone in the collector namespace, on the same port. For
//! every (collector, load) the benchmark records what the replayer sent, what the collector
//! decoded, the collector's CPU seconds (utime + stime from /proc) and its peak RSS (VmHWM).

use std::{
    fmt::Write as _,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use flowguard::{
    capture::pcap::PcapWriter,
    decode::{
        Direction, FlowRecord,
        encode::{Encoder, EncoderConfig, Format},
    },
};
use flowguard_e2e::{COLLECTOR_V4, EXPORTER_V4, Lab, TempDir, wait_for};

/// The collectors compared.
const COLLECTORS: [&str; 4] = [
    "flowguard-xdp",
    "flowguard-socket",
    "nfcapd",
    "python-netflow",
];

#[derive(Debug, Clone)]
struct Point {
    collector: &'static str,
    format: &'static str,
    offered_pps: f64,
    sent_packets: u64,
    sent_records: u64,
    decoded_records: u64,
    cpu_secs: f64,
    peak_rss_kib: u64,
}

impl Point {
    fn loss_pct(&self) -> f64 {
        if self.sent_records == 0 {
            return 0.0;
        }
        100.0 * self.sent_records.saturating_sub(self.decoded_records) as f64
            / self.sent_records as f64
    }

    fn cpu_per_million(&self) -> f64 {
        if self.decoded_records == 0 {
            f64::NAN
        } else {
            self.cpu_secs / (self.decoded_records as f64 / 1e6)
        }
    }
}

/// Realistic export packets: ~1,350 bytes, 22–26 records, templates refreshed every 20.
fn traffic_pcap(format: Format, path: &Path) -> Result<()> {
    let per_packet = if format == Format::Ipfix { 22 } else { 26 };
    let mut config = EncoderConfig::new(format);
    config.records_per_packet = per_packet;
    config.observation_domain_id = 1;
    let mut encoder = Encoder::new(config);
    let now = 1_780_000_000_000u64;
    let mut x = 0x2545_f491u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let records: Vec<FlowRecord> = (0..per_packet * 4000)
        .map(|_| {
            let mut r = FlowRecord {
                src_addr: std::net::Ipv4Addr::from(0x0a00_0000 | (next() as u32 & 0xffff)).into(),
                dst_addr: std::net::Ipv4Addr::from(0xcb00_7100 | (next() as u32 & 0xff)).into(),
                src_port: next() as u16,
                dst_port: [443u16, 80, 53][(next() % 3) as usize],
                protocol: 6,
                tcp_flags: 0x1b,
                direction: Direction::Ingress,
                start_ms: now - 30_000,
                end_ms: now - (next() % 1000),
                ..FlowRecord::default()
            };
            r.set_counts(100 + next() % 100_000, 1 + next() % 100, 1);
            r
        })
        .collect();
    let mut packets = Vec::new();
    encoder.encode(&records, now, &mut packets);
    let mut w = PcapWriter::new(std::io::BufWriter::new(std::fs::File::create(path)?))?;
    for (i, p) in packets.iter().enumerate() {
        w.udp(
            1_000_000_000 + i as u64 * 1000,
            (EXPORTER_V4, 5000).into(),
            (COLLECTOR_V4, 2055).into(),
            p,
        )?;
    }
    w.finish()?;
    Ok(())
}

/// utime + stime (seconds) and VmHWM (KiB) of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, hwm)
}

fn port_open(lab: &Lab, port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    let ns = lab.collector_ns.clone();
    Lab::within(&ns, move || {
        let text = std::fs::read_to_string("/proc/thread-self/net/udp").unwrap_or_default()
            + &std::fs::read_to_string("/proc/thread-self/net/udp6").unwrap_or_default();
        Ok(text.lines().any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| format!("{a} ").contains(&hex))
        }))
    })
    .unwrap_or(false)
}

struct Running {
    child: Child,
    out: PathBuf,
}

fn start_collector(lab: &Lab, bin: &Path, which: &str, dir: &Path) -> Result<Running> {
    let out = dir.join(format!("{which}.out"));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = match which {
        "flowguard-xdp" | "flowguard-socket" => {
            let mut c = lab.in_collector(bin);
            c.args([
                "run",
                "--workers",
                "2",
                "--port",
                "2055",
                "--stats-interval",
                "0",
                "--stats-json",
            ])
            .arg(&out);
            if which == "flowguard-xdp" {
                c.args(["--iface", &lab.collector_if]);
            } else {
                c.args(["--capture", "socket"]);
            }
            c
        }
        "nfcapd" => {
            std::fs::create_dir_all(&out)?;
            let mut c = lab.in_collector("nfcapd");
            c.args(["-p", "2055", "-t", "3600", "-B", "16777216", "-w"])
                .arg(&out);
            c
        }
        _ => {
            let mut c = lab.in_collector("python3");
            c.args(["-m", "netflow.collector", "-p", "2055", "-o"])
                .arg(&out);
            c
        }
    };
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {which}"))?;
    wait_for(
        &format!("{which} to listen"),
        Duration::from_secs(30),
        || port_open(lab, 2055),
    )?;
    Ok(Running { child, out })
}

fn stop(mut r: Running, signal: i32) -> Result<PathBuf> {
    // SAFETY: signalling our own child.
    unsafe { libc_kill(i32::try_from(r.child.id())?, signal) };
    for _ in 0..600 {
        if r.child.try_wait()?.is_some() {
            return Ok(r.out);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = r.child.kill();
    let _ = r.child.wait();
    Ok(r.out)
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn decoded(which: &str, out: &Path) -> Result<u64> {
    match which {
        "flowguard-xdp" | "flowguard-socket" => {
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out)?)?;
            v["decode"]["records"].as_u64().context("decode.records")
        }
        "nfcapd" => {
            let o = Command::new("nfdump")
                .args(["-R"])
                .arg(out)
                .args(["-q", "-o", "csv"])
                .output()?;
            Ok(String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("ts,"))
                .count() as u64)
        }
        _ => {
            if !out.exists() {
                return Ok(0);
            }
            let script = "import gzip,json,sys\nn=0\nwith gzip.open(sys.argv[1],'rb') as f:\n  for l in f:\n    e=json.loads(l)\n    n+=sum(len(v['flows']) for v in e.values())\nprint(n)";
            let o = Command::new("python3")
                .args(["-c", script])
                .arg(out)
                .output()?;
            Ok(String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(0))
        }
    }
}

fn replay(lab: &Lab, bin: &Path, pcap: &Path, pps: f64, seconds: u64) -> Result<(u64, u64)> {
    let mut cmd = lab.in_exporter(bin);
    cmd.args(["replay", "--read"]).arg(pcap).args([
        "--to",
        &format!("{COLLECTOR_V4}:2055"),
        "--port",
        "2055",
        "--loop",
        "0",
        "--duration",
        &seconds.to_string(),
    ]);
    if pps.is_finite() {
        cmd.args(["--rate", &format!("{pps}")]);
    } else {
        cmd.args(["--rate", "max"]);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let mut err = String::new();
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut err)?;
    child.wait()?;
    // "flowguard: replayed N packets, B bytes, R records in …"
    let words: Vec<&str> = err.split_whitespace().collect();
    let find = |label: &str| {
        words
            .windows(2)
            .find(|w| w[1].trim_end_matches(',') == label)
            .and_then(|w| w[0].parse::<u64>().ok())
    };
    match (find("packets"), find("records")) {
        (Some(p), Some(r)) => Ok((p, r)),
        _ => bail!("unexpected replay output: {err}"),
    }
}

pub fn run(steps: &[f64], seconds: u64, formats: &[String]) -> Result<()> {
    let bin = crate::build_flowguard(true)?;
    let lab = Lab::new().context("creating the lab (needs root)")?;
    let dir = TempDir::new("bench-e2e");
    let mut points = Vec::new();
    for format_name in formats {
        let (format, name): (Format, &'static str) = match format_name.as_str() {
            "v9" => (Format::V9, "v9"),
            "ipfix" => (Format::Ipfix, "ipfix"),
            other => bail!("unknown format {other} (v9 or ipfix)"),
        };
        let pcap = dir.join(&format!("{name}.pcap"));
        traffic_pcap(format, &pcap)?;
        for &pps in steps {
            for which in COLLECTORS {
                let running = start_collector(&lab, &bin, which, &dir.0)?;
                let pid = running.child.id();
                let (sent_packets, sent_records) = replay(&lab, &bin, &pcap, pps, seconds)?;
                // Let queues drain before taking the collector's figures.
                std::thread::sleep(Duration::from_millis(1500));
                let (cpu_secs, peak_rss_kib) = usage(pid);
                let out = stop(running, if which == "python-netflow" { 2 } else { 15 })?;
                let decoded_records = decoded(which, &out).unwrap_or(0);
                let p = Point {
                    collector: which,
                    format: name,
                    offered_pps: pps,
                    sent_packets,
                    sent_records,
                    decoded_records,
                    cpu_secs,
                    peak_rss_kib,
                };
                eprintln!(
                    "e2e {name} {which:>16} offered {:>8} pps: sent {sent_records} records, decoded {decoded_records} ({:.3}% loss), cpu {cpu_secs:.2}s ({:.2} s/M), rss {} MiB",
                    fmt_pps(pps),
                    p.loss_pct(),
                    p.cpu_per_million(),
                    peak_rss_kib / 1024
                );
                points.push(p);
            }
        }
    }
    let table = render_table(&points, seconds);
    println!("{table}");
    let svg_path = crate::root().join("target/bench-e2e.svg");
    std::fs::write(&svg_path, render_svg(&points))?;
    let md_path = crate::root().join("target/bench-e2e.md");
    std::fs::write(&md_path, &table)?;
    println!("plot: {}\ntable: {}", svg_path.display(), md_path.display());
    let steps_s: Vec<String> = steps.iter().map(|s| fmt_pps(*s)).collect();
    println!(
        "rerun: cargo xtask bench e2e --steps {} --seconds {seconds} --formats {}",
        steps_s.join(","),
        formats.join(",")
    );
    Ok(())
}

fn fmt_pps(pps: f64) -> String {
    if pps.is_finite() {
        format!("{pps:.0}")
    } else {
        "max".into()
    }
}

fn render_table(points: &[Point], seconds: u64) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n## flowguard e2e benchmark ({seconds}s per step, ~1,350-byte packets)\n"
    );
    let _ = writeln!(
        t,
        "| format | collector | offered pps | sent records | decoded | loss % | CPU s / M records | peak RSS MiB |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|");
    for p in points {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {:.3} | {:.2} | {} |",
            p.format,
            p.collector,
            fmt_pps(p.offered_pps),
            p.sent_records,
            p.decoded_records,
            p.loss_pct(),
            p.cpu_per_million(),
            p.peak_rss_kib / 1024
        );
    }
    let _ = writeln!(
        t,
        "\n### highest offered rate with < 0.1% loss (records/s actually sent)\n"
    );
    let _ = writeln!(
        t,
        "| format | collector | loss-free records/s | flowguard-xdp / this |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|");
    let formats: Vec<&str> = {
        let mut f: Vec<&str> = points.iter().map(|p| p.format).collect();
        f.dedup();
        f
    };
    for format in formats {
        let best = |c: &str| {
            points
                .iter()
                .filter(|p| p.format == format && p.collector == c && p.loss_pct() < 0.1)
                .map(|p| p.sent_records as f64 / seconds as f64)
                .fold(0.0f64, f64::max)
        };
        let xdp = best("flowguard-xdp");
        for c in COLLECTORS {
            let b = best(c);
            let ratio = if b > 0.0 {
                format!("{:.1}x", xdp / b)
            } else {
                "n/a (loses at every step)".into()
            };
            let _ = writeln!(t, "| {format} | {c} | {b:.0} | {ratio} |");
        }
    }
    t
}

/// Two panels (loss %, CPU s per million records) against offered packets/s, one line per
/// collector and format. Plain SVG, no dependencies.
fn render_svg(points: &[Point]) -> String {
    let (w, h, pad) = (900.0, 360.0, 60.0);
    let colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"];
    let max_x = points
        .iter()
        .map(|p| p.sent_packets as f64)
        .fold(1.0, f64::max);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{}' font-family='sans-serif' font-size='12'>\n",
        2.0 * h
    );
    for (panel, (title, value)) in [
        (
            "loss % (lower is better)",
            (|p: &Point| p.loss_pct()) as fn(&Point) -> f64,
        ),
        (
            "CPU seconds per million records (lower is better)",
            |p: &Point| p.cpu_per_million(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let top = panel as f64 * h;
        let max_y = points
            .iter()
            .map(value)
            .filter(|v| v.is_finite())
            .fold(1e-9, f64::max)
            * 1.1;
        let _ = writeln!(
            svg,
            "<text x='{pad}' y='{}' font-weight='bold'>{title}</text>",
            top + 20.0
        );
        let _ = writeln!(
            svg,
            "<line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='black'/><line x1='{pad}' y1='{}' x2='{pad}' y2='{}' stroke='black'/>",
            top + h - pad,
            w - pad,
            top + h - pad,
            top + 30.0,
            top + h - pad
        );
        let _ = writeln!(
            svg,
            "<text x='{}' y='{}'>offered packets (total sent)</text>",
            w / 2.0 - 60.0,
            top + h - 20.0
        );
        let _ = writeln!(svg, "<text x='5' y='{}'>{max_y:.2}</text>", top + 40.0);
        for (i, collector) in COLLECTORS.iter().enumerate() {
            for (j, format) in ["v9", "ipfix"].iter().enumerate() {
                let mut line: Vec<&Point> = points
                    .iter()
                    .filter(|p| p.collector == *collector && p.format == *format)
                    .collect();
                line.sort_by(|a, b| a.sent_packets.cmp(&b.sent_packets));
                let coords: Vec<String> = line
                    .iter()
                    .filter(|p| value(p).is_finite())
                    .map(|p| {
                        let x = pad + (w - 2.0 * pad) * p.sent_packets as f64 / max_x;
                        let y = top + h - pad - (h - pad - 30.0) * value(p) / max_y;
                        format!("{x:.1},{y:.1}")
                    })
                    .collect();
                if coords.is_empty() {
                    continue;
                }
                let dash = if j == 1 {
                    " stroke-dasharray='6 3'"
                } else {
                    ""
                };
                let _ = writeln!(
                    svg,
                    "<polyline fill='none' stroke='{}' stroke-width='2'{dash} points='{}'/>",
                    colors[i],
                    coords.join(" ")
                );
                if panel == 0 {
                    let _ = writeln!(
                        svg,
                        "<text x='{}' y='{}' fill='{}'>{collector} {format}{}</text>",
                        w - 250.0,
                        top + 45.0 + (i * 2 + j) as f64 * 15.0,
                        colors[i],
                        if j == 1 { " (dashed)" } else { "" }
                    );
                }
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}
