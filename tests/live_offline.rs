//! Same exports, same findings, whatever the path:
//! * live: `flowguard run` on native XDP while `flowguard replay` sends a scenario, against
//!   `flowguard analyze` on tcpdump's capture of those very exports;
//! * the old scripts' files: the Python `netflow` collector records the same exports into
//!   its JSON file, and `flowguard analyze --flow-file` must find what `--read` finds.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use flowguard_e2e::{COLLECTOR_V4, Collector, Lab, TempDir, flowguard_bin, require_root, wait_for};

/// (category, kind, src, dst) of every finding in a report.
fn findings(report: &Path) -> Result<BTreeSet<(String, String, String, String)>> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report)
            .with_context(|| format!("reading {}", report.display()))?,
    )?;
    let mut out = BTreeSet::new();
    for e in v["entities"].as_array().context("entities")? {
        for f in e["findings"].as_array().context("findings")? {
            let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_owned();
            out.insert((
                s(&f["category"]),
                s(&f["kind"]),
                s(&f["entities"]["src"]),
                s(&f["entities"]["dst"]),
            ));
        }
    }
    Ok(out)
}

fn scenario(dir: &Path, format: &str, config: Option<&str>) -> Result<PathBuf> {
    let out = dir.join(format!("scenario-{format}"));
    let mut cmd = Command::new(flowguard_bin());
    cmd.args(["scenario", "--out"])
        .arg(&out)
        .args(["--format", format, "--hours", "6"]);
    if let Some(json) = config {
        let path = dir.join("scenario.json");
        std::fs::write(&path, json)?;
        cmd.arg("--config").arg(path);
    }
    let status = cmd.stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("flowguard scenario failed");
    }
    Ok(out)
}

/// tcpdump on the exporter side of the lab, writing every export datagram it sends.
fn capture_exports(lab: &Lab, pcap: &Path) -> Result<Child> {
    let log = pcap.with_extension("log");
    let child = lab
        .in_exporter("tcpdump")
        .args([
            "-i",
            &lab.exporter_if,
            "-s",
            "9000",
            "-B",
            "65536",
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
        ])
        .arg(pcap)
        .arg("udp")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("spawning tcpdump")?;
    wait_for("tcpdump to listen", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("listening on"))
    })?;
    Ok(child)
}

fn stop_capture(mut child: Child, pcap: &Path) -> Result<()> {
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child (`ip netns exec` execs tcpdump).
    unsafe { libc::kill(i32::try_from(child.id())?, libc::SIGINT) };
    child.wait()?;
    let log = std::fs::read_to_string(pcap.with_extension("log")).unwrap_or_default();
    let dropped = log
        .lines()
        .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
        .and_then(|n| n.trim().parse::<u64>().ok());
    if dropped != Some(0) {
        bail!("tcpdump lost packets, so the capture is not the same traffic: {log}");
    }
    Ok(())
}

/// The receive queue (bytes) and drop count of the collector namespace's UDP socket on
/// `port`.
fn udp_socket(lab: &Lab, port: u16) -> Result<(u64, u64)> {
    flowguard_e2e::udp_socket(&lab.collector_ns, port)?
        .with_context(|| format!("no UDP socket on port {port} in the collector namespace"))
}

fn replay(lab: &Lab, scenario: &Path, rate: &str) -> Result<()> {
    let out = lab
        .in_exporter(flowguard_bin())
        .args(["replay", "--scenario"])
        .arg(scenario)
        .args([
            "--to",
            &format!("{COLLECTOR_V4}:2055"),
            "--keep-ports",
            "--port",
            "2055,4739",
            "--rate",
            rate,
        ])
        .stdout(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("replay: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn analyze(dir: &Path, scenario: &Path, input: &[&str], name: &str) -> Result<PathBuf> {
    let report = dir.join(format!("{name}.json"));
    let out = Command::new(flowguard_bin())
        .args(["analyze", "--no-progress", "--port", "2055,4739"])
        .args(input)
        .arg("--detect-config")
        .arg(scenario.join("detect_config.json"))
        .arg("--output")
        .arg(&report)
        .output()?;
    if !out.status.success() {
        bail!("analyze {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(report)
}

#[test]
fn live_xdp_collection_and_offline_analysis_give_the_same_findings() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("live-offline");
    let scenario = scenario(&dir.0, "ipfix", None)?;
    let live_report = dir.join("live.json");
    let pcap = dir.join("exports.pcap");
    let mut collector = Collector::start(
        &lab,
        &[
            "--iface",
            &lab.collector_if,
            "--workers",
            "2",
            "--port",
            "2055,4739",
            "--stats-interval",
            "0",
            "--report",
            live_report.to_str().unwrap(),
            "--detect-config",
            scenario.join("detect_config.json").to_str().unwrap(),
        ],
        dir.join("flowguard.log"),
        4739,
    )?;
    let tcpdump = capture_exports(&lab, &pcap)?;
    // 1,000 datagrams/s (~20,000 records/s): the test binary is a debug build.
    replay(&lab, &scenario, "1000")?;
    stop_capture(tcpdump, &pcap)?;
    let status = collector.stop(15)?;
    assert!(status.success(), "{}", collector.log_text());
    let log = collector.log_text();
    assert!(
        !log.contains("detect_queue_full"),
        "live detection dropped records: {log}"
    );
    let live = findings(&live_report)?;
    let offline = findings(&analyze(
        &dir.0,
        &scenario,
        &["--read", pcap.to_str().unwrap()],
        "offline",
    )?)?;
    assert!(
        live.len() >= 10,
        "the scenario's attacks are found live: {live:?}"
    );
    assert_eq!(live, offline, "live and offline findings differ");
    Ok(())
}

#[test]
fn the_python_collectors_file_gives_the_same_findings_as_the_pcap() -> Result<()> {
    require_root();
    let lab = Lab::new()?;
    let dir = TempDir::new("pyflows");
    // A smaller site keeps the Python collector (tens of thousands of records a second at
    // best) from dropping anything at the replay rate below.
    let scenario = scenario(
        &dir.0,
        "v9",
        Some(r#"{"background": {"workstations": 30}}"#),
    )?;
    let flow_file = dir.join("captured_flows.json.gz");
    let mut python = lab
        .in_collector("python3")
        .args(["-m", "netflow.collector", "-p", "2055", "-o"])
        .arg(&flow_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning the Python netflow collector (pip package `netflow`; cargo xtask setup installs it)")?;
    wait_for(
        "the Python collector to listen",
        Duration::from_secs(20),
        || udp_socket(&lab, 2055).is_ok(),
    )?;
    let pcap = dir.join("exports.pcap");
    let tcpdump = capture_exports(&lab, &pcap)?;
    // 200 export packets/s: the collector's socket buffer (the default 208 KiB, about a
    // hundred datagrams with their kernel overhead) then covers a stall of half a second
    // in the Python process. At 400/s it overflowed in 2 of 7 runs on a busy host.
    replay(&lab, &scenario, "200")?;
    stop_capture(tcpdump, &pcap)?;
    // Stop it as its users do (Ctrl-C), but only once it has written everything it
    // received: it drops whatever is still queued when interrupted, and appends each
    // export packet to the file as it parses it. So wait for an empty socket queue and a
    // file that has stopped growing. (A fixed three seconds was too short when the
    // host ran at half speed.)
    let mut last = (u64::MAX, Instant::now());
    wait_for(
        "the Python collector to write what it received",
        Duration::from_mins(2),
        || {
            let size = std::fs::metadata(&flow_file).map_or(0, |m| m.len());
            let (queued, _) = udp_socket(&lab, 2055).unwrap_or((1, 0));
            if size != last.0 || queued > 0 {
                last = (size, Instant::now());
                return false;
            }
            last.1.elapsed() >= Duration::from_secs(2)
        },
    )?;
    let (_, drops) = udp_socket(&lab, 2055)?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(python.id())?, libc::SIGINT) };
    python.wait()?;
    if drops > 0 {
        bail!(
            "the Python collector's socket dropped {drops} datagrams (it could not keep up \
             with the replay), so its file cannot hold every record"
        );
    }
    let from_file = findings(&analyze(
        &dir.0,
        &scenario,
        &["--flow-file", flow_file.to_str().unwrap()],
        "flowfile",
    )?)?;
    let from_pcap = findings(&analyze(
        &dir.0,
        &scenario,
        &["--read", pcap.to_str().unwrap()],
        "pcap",
    )?)?;
    assert!(
        from_pcap.len() >= 8,
        "the scenario's attacks are found: {from_pcap:?}"
    );
    assert_eq!(
        from_file, from_pcap,
        "--flow-file and --read findings differ"
    );
    Ok(())
}
