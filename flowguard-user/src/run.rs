//! `flowguard run`: wires capture, workers and the control plane together.
//!
//! The data plane is plain threads: one pinned worker per shard. The control plane (signals,
//! the per-second counter line) runs on a current-thread tokio runtime on the main thread.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use flowguard_ebpf::Outcome;

use crate::{
    capture::{
        pcap::{PcapCounters, PcapFile},
        shard_for,
        socket::{self, ShardSockets},
        xdp::{self, Kernel},
    },
    cli::{Input, RunConfig},
    decode::{DecodeCounters, Decoder},
    detect::{
        Finding,
        engine::{DetectShard, DetectorFactory, Routed, ShardStats},
    },
    report::findings::{AlertStream, build_report},
    worker::{
        Counter, Counters, DetectLink, FlowSink, LiveInputs, SharedCounters, Worker, run_live,
    },
};

/// Batches a detection shard's queue from one worker holds before the worker drops
/// (and counts) what it cannot hand over.
const DETECT_QUEUE_BATCHES: usize = 256;

/// The running detection stage: shard threads and the reporter.
struct Detection {
    /// Per worker: its queues to every shard.
    links: Vec<Option<DetectLink>>,
    shards: Vec<std::thread::JoinHandle<ShardStats>>,
    reporter: std::thread::JoinHandle<Result<Vec<Finding>>>,
    report: Option<std::path::PathBuf>,
}

/// Starts one thread per detection shard and the reporter thread. Each shard owns its
/// detectors and reads one bounded queue per worker; findings go to the reporter, which
/// writes the alert stream and keeps them for the final report.
fn start_detection(
    config: &RunConfig,
    workers: usize,
    factory: DetectorFactory,
) -> Result<Option<Detection>> {
    let Some(settings) = &config.detect else {
        return Ok(None);
    };
    let detect_config = Arc::new(settings.config.clone());
    let (finding_tx, finding_rx) = crossbeam_channel::unbounded::<Finding>();
    let mut senders: Vec<Vec<crossbeam_channel::Sender<Vec<Routed>>>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut shards = Vec::new();
    let shard_count = settings.shards;
    for j in 0..settings.shards {
        let mut receivers = Vec::new();
        for per_worker in &mut senders {
            let (tx, rx) = crossbeam_channel::bounded(DETECT_QUEUE_BATCHES);
            per_worker.push(tx);
            receivers.push(rx);
        }
        let shard_config = Arc::clone(&detect_config);
        let out = finding_tx.clone();
        shards.push(
            std::thread::Builder::new()
                .name(format!("flowguard-d{j}"))
                .spawn(move || {
                    let id = crate::detect::ShardId {
                        index: j,
                        count: shard_count,
                    };
                    run_shard(&shard_config, factory, id, &receivers, &out)
                })
                .context("spawning detection shard")?,
        );
    }
    drop(finding_tx);
    let alerts_path = settings.alerts.clone();
    let reporter = std::thread::Builder::new()
        .name("flowguard-report".into())
        .spawn(move || -> Result<Vec<Finding>> {
            use std::io::Write as _;
            let mut out: Option<Box<dyn std::io::Write + Send>> = match &alerts_path {
                None => None,
                Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
                Some(p) => Some(Box::new(std::io::LineWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ))),
            };
            let mut stream = AlertStream::default();
            let mut all = Vec::new();
            for f in finding_rx {
                if let (Some(line), Some(out)) = (stream.offer(&f), out.as_mut()) {
                    out.write_all(line.as_bytes())?;
                    out.flush()?;
                }
                all.push(f);
            }
            Ok(all)
        })
        .context("spawning reporter")?;
    Ok(Some(Detection {
        links: senders
            .into_iter()
            .map(|q| Some(DetectLink::new(&detect_config, q)))
            .collect(),
        shards,
        reporter,
        report: settings.report.clone(),
    }))
}

/// A worker that has sent a detection shard nothing for this long (wall clock) no longer
/// holds the shard's watermark back.
const IDLE_INPUT: Duration = Duration::from_secs(5);

/// The live watermark: the slowest active input's event time, minus the allowed lateness.
fn advance_live(
    shard: &mut DetectShard,
    progress: &[Option<(u64, Instant)>],
    open: &[usize],
    idle: Duration,
    out: &mut Vec<Finding>,
) {
    let slowest = open
        .iter()
        .filter_map(|&i| progress[i])
        .filter(|(_, seen)| seen.elapsed() < idle)
        .map(|(max, _)| max)
        .min();
    if let Some(t) = slowest {
        shard.advance_to(t.saturating_sub(shard.lateness_ms()), out);
    }
}

fn run_shard(
    config: &crate::detect::DetectConfig,
    factory: DetectorFactory,
    id: crate::detect::ShardId,
    receivers: &[crossbeam_channel::Receiver<Vec<Routed>>],
    out: &crossbeam_channel::Sender<Finding>,
) -> ShardStats {
    let mut shard = DetectShard::new(config, factory, id);
    let mut findings = Vec::new();
    // Event time per input: a worker that is behind holds the watermark back, so its records
    // are not late just because another worker's exporters are ahead. A worker that has
    // sent nothing for IDLE_INPUT (wall clock) no longer holds it back.
    let mut progress: Vec<Option<(u64, Instant)>> = vec![None; receivers.len()];
    let mut open: Vec<usize> = (0..receivers.len()).collect();
    while !open.is_empty() {
        let mut select = crossbeam_channel::Select::new();
        for &i in &open {
            select.recv(&receivers[i]);
        }
        let Ok(op) = select.select_timeout(IDLE_INPUT) else {
            advance_live(&mut shard, &progress, &open, IDLE_INPUT, &mut findings);
            for f in findings.drain(..) {
                let _ = out.send(f);
            }
            continue;
        };
        let slot = op.index();
        let input = open[slot];
        match op.recv(&receivers[input]) {
            Ok(batch) => {
                let max = batch
                    .iter()
                    .map(|r| r.record.end_ms)
                    .fold(progress[input].map_or(0, |p| p.0), u64::max);
                shard.observe_batch(&batch);
                progress[input] = Some((max, Instant::now()));
                advance_live(&mut shard, &progress, &open, IDLE_INPUT, &mut findings);
                for f in findings.drain(..) {
                    let _ = out.send(f);
                }
            }
            // That worker is done.
            Err(_) => {
                open.swap_remove(slot);
            }
        }
    }
    shard.finish(&mut findings);
    for f in findings.drain(..) {
        let _ = out.send(f);
    }
    shard.stats()
}

impl Detection {
    /// Joins the shards and the reporter (after every worker has dropped its link) and
    /// writes the report.
    fn finish(self) -> Result<(Vec<ShardStats>, usize)> {
        let mut stats = Vec::new();
        for h in self.shards {
            stats.push(
                h.join()
                    .map_err(|_| anyhow!("a detection shard panicked"))?,
            );
        }
        let findings = self
            .reporter
            .join()
            .map_err(|_| anyhow!("the reporter panicked"))??;
        let input = serde_json::json!({ "live": true, "shards": &stats });
        let report = build_report(findings, input);
        let count = report.entities.iter().map(|e| e.findings.len()).sum();
        if let Some(path) = &self.report {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok((stats, count))
    }
}

/// Template snapshots found in `--template-dir`, read before the workers start.
fn read_snapshots(config: &RunConfig) -> Result<Vec<Vec<u8>>> {
    let Some(dir) = &config.template_dir else {
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut snaps = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(k) = name
            .strip_prefix("shard-")
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        snaps.push(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        // Snapshots of shards that no longer exist are now loaded into every worker;
        // remove them so they are not loaded again after this run saves its own.
        if k.parse::<usize>().is_ok_and(|k| k >= config.workers) {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(snaps)
}

/// Builds shard `k`'s worker: its decoder (with every snapshot loaded: the shard count may
/// have changed since they were written, and templates of exporters that now hash
/// elsewhere simply expire), its flow sink and its packet log.
fn make_worker(
    k: usize,
    shared: Arc<SharedCounters>,
    config: &RunConfig,
    snapshots: &[Vec<u8>],
    flows: Option<FlowSink>,
    detect: Option<DetectLink>,
) -> Result<Worker> {
    let mut decoder = Decoder::new(config.decoder.clone());
    for snap in snapshots {
        if let Err(e) = decoder.load_snapshot(snap.as_slice()) {
            eprintln!("flowguard: worker {k}: ignoring a template snapshot: {e}");
        }
    }
    let mut worker = Worker::new(k, shared, config.packet_log.as_deref())
        .context("creating packet log")?
        .with_decoder(decoder);
    if let Some(sink) = flows {
        worker = worker.with_flows(sink);
    }
    if let Some(link) = detect {
        worker = worker.with_detection(link);
    }
    Ok(worker)
}

/// Saves shard `k`'s templates to `--template-dir` (write, then rename, so a crash never
/// leaves half a snapshot).
fn save_templates(config: &RunConfig, k: usize, worker: &Worker) -> Result<()> {
    let Some(dir) = &config.template_dir else {
        return Ok(());
    };
    let path = dir.join(format!("shard-{k}.json"));
    let tmp = dir.join(format!(".shard-{k}.json.tmp"));
    let file = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    worker
        .decoder()
        .save_snapshot(std::io::BufWriter::new(file))
        .with_context(|| format!("saving templates to {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Starts the `--flows-out` writer thread. Workers send NDJSON chunks; the thread ends when
/// every sender is gone.
fn flows_writer(
    config: &RunConfig,
) -> Result<Option<(FlowSink, std::thread::JoinHandle<std::io::Result<()>>)>> {
    use std::io::Write as _;
    let Some(path) = &config.flows_out else {
        return Ok(None);
    };
    let mut out: Box<dyn std::io::Write + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ))
    };
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1024);
    let handle = std::thread::Builder::new()
        .name("flowguard-flows".into())
        .spawn(move || {
            for chunk in rx {
                out.write_all(&chunk)?;
            }
            out.flush()
        })?;
    Ok(Some((tx, handle)))
}

/// Final counters of a run, as printed and written to `--stats-json`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Per-worker counters, by shard.
    pub workers: Vec<serde_json::Map<String, serde_json::Value>>,
    /// XDP outcome counters (XDP mode only).
    pub xdp: Option<serde_json::Map<String, serde_json::Value>>,
    /// Datagrams the kernel dropped on our sockets (receive buffer full).
    pub socket_kernel_drops: u64,
    /// Capture-file reader counters (`--read` only).
    pub pcap: Option<PcapCounters>,
    /// Decoder counters, summed over workers.
    pub decode: DecodeCounters,
    /// Detection shard counters (when detection ran).
    pub detect: Vec<ShardStats>,
    /// Findings reported (after de-duplication).
    pub findings: usize,
    /// Seconds the run took.
    pub elapsed_secs: f64,
}

/// Runs `flowguard run` to completion.
///
/// # Errors
/// Set-up failures (load, attach, bind, files), with context.
pub fn run(config: &RunConfig, factory: DetectorFactory) -> Result<Summary> {
    if let Some(dir) = &config.packet_log {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let summary = match &config.input {
        Input::Files(files) => run_files(config, files, factory)?,
        Input::Xdp { .. } | Input::Socket => run_live_capture(config, factory)?,
    };
    if let Some(path) = &config.stats_json {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("{}", render_summary(&summary));
    Ok(summary)
}

fn run_files(
    config: &RunConfig,
    files: &[std::path::PathBuf],
    factory: DetectorFactory,
) -> Result<Summary> {
    let started = Instant::now();
    let shared: Vec<Arc<SharedCounters>> = (0..config.workers).map(|_| Arc::default()).collect();
    let snapshots = read_snapshots(config)?;
    let writer = flows_writer(config)?;
    let mut detection = start_detection(config, config.workers, factory)?;
    let mut workers = shared
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let link = detection.as_mut().and_then(|d| d.links[k].take());
            make_worker(
                k,
                Arc::clone(s),
                config,
                &snapshots,
                writer.as_ref().map(|(tx, _)| tx.clone()),
                link,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let mut counters = PcapCounters::default();
    for path in files {
        let file = PcapFile::open(path)?;
        file.for_each_datagram(&config.ports, &mut counters, |packet| {
            let k = shard_for(packet.exporter.ip(), packet.payload, workers.len());
            workers[k].handle(packet);
        })?;
    }
    let mut decode = DecodeCounters::default();
    for (k, w) in workers.iter_mut().enumerate() {
        w.finish();
        decode.merge(&w.decode_counters());
        save_templates(config, k, w)?;
    }
    drop(workers);
    if let Some((tx, handle)) = writer {
        drop(tx);
        handle
            .join()
            .map_err(|_| anyhow!("flows writer panicked"))?
            .context("writing flows")?;
    }
    let (detect, findings) = detection
        .map(Detection::finish)
        .transpose()?
        .unwrap_or_default();
    Ok(Summary {
        workers: shared.iter().map(|s| counters_json(&s.load())).collect(),
        xdp: None,
        socket_kernel_drops: 0,
        pcap: Some(counters),
        decode,
        detect,
        findings,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

fn run_live_capture(config: &RunConfig, factory: DetectorFactory) -> Result<Summary> {
    let started = Instant::now();
    let n = config.workers;
    let mut kernel = Kernel::load(n, config.ring_bytes, &config.ports)
        .context("setting up the eBPF programs")?;
    if let Input::Xdp { iface, mode } = &config.input {
        kernel.attach_xdp(iface, *mode)?;
    }
    let rings: Vec<Option<_>> = match config.input {
        Input::Xdp { .. } => kernel.take_rings()?.into_iter().map(Some).collect(),
        _ => (0..n).map(|_| None).collect(),
    };
    let ShardSockets { groups, inodes } =
        socket::bind(&config.ports, n, config.socket_rcvbuf, Some(&mut kernel))
            .context("binding the UDP sockets")?;

    let stop = Arc::new(AtomicBool::new(false));
    let shared: Vec<Arc<SharedCounters>> = (0..n).map(|_| Arc::default()).collect();
    let snapshots = Arc::new(read_snapshots(config)?);
    let writer = flows_writer(config)?;
    let mut detection = start_detection(config, n, factory)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let offset = xdp::monotonic_to_unix_offset();
    let mut handles = Vec::with_capacity(n);
    for (k, (ring, sockets)) in rings.into_iter().zip(groups).enumerate() {
        let inputs = LiveInputs {
            ring,
            sockets,
            monotonic_offset_ns: offset,
            stall: config.stall,
        };
        let stop = Arc::clone(&stop);
        let counters = Arc::clone(&shared[k]);
        let core = cores.get(k % cores.len().max(1)).copied();
        let config = config.clone();
        let snapshots = Arc::clone(&snapshots);
        let sink = writer.as_ref().map(|(tx, _)| tx.clone());
        let link = detection.as_mut().and_then(|d| d.links[k].take());
        let handle = std::thread::Builder::new()
            .name(format!("flowguard-w{k}"))
            .spawn(move || -> Result<DecodeCounters> {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                // The worker's state is built here, on its own core.
                let mut worker = make_worker(k, counters, &config, &snapshots, sink, link)?;
                run_live(&mut worker, inputs, &stop);
                save_templates(&config, k, &worker)?;
                Ok(worker.decode_counters())
            })
            .context("spawning worker")?;
        handles.push(handle);
    }

    control_plane(config, &kernel, &shared, &inodes)?;

    // Stop steering first so nothing new lands in rings the workers are about to leave,
    // then let the workers drain what is queued.
    kernel.detach_xdp();
    stop.store(true, Ordering::Release);
    let mut decode = DecodeCounters::default();
    for h in handles {
        decode.merge(&h.join().map_err(|_| anyhow!("a worker panicked"))??);
    }
    if let Some((tx, handle)) = writer {
        drop(tx);
        handle
            .join()
            .map_err(|_| anyhow!("flows writer panicked"))?
            .context("writing flows")?;
    }
    let xdp_counters = matches!(config.input, Input::Xdp { .. })
        .then(|| kernel.counters())
        .transpose()?;
    let (detect, findings) = detection
        .map(Detection::finish)
        .transpose()?
        .unwrap_or_default();
    Ok(Summary {
        workers: shared.iter().map(|s| counters_json(&s.load())).collect(),
        xdp: xdp_counters.map(|c| outcome_json(&c)),
        socket_kernel_drops: socket::kernel_drops(&inodes),
        pcap: None,
        decode,
        detect,
        findings,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// Waits for SIGINT/SIGTERM (or `--duration`), printing counters every interval.
fn control_plane(
    config: &RunConfig,
    kernel: &Kernel,
    shared: &[Arc<SharedCounters>],
    inodes: &[u64],
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let period = Duration::from_secs(config.stats_interval.max(1));
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
        let sleep_until = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep_until);
        let mut last: Vec<Counters> = vec![Counters::default(); shared.len()];
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                () = &mut sleep_until => break,
                _ = tick.tick() => {
                    if config.stats_interval > 0 {
                        eprintln!("{}", render_tick(started.elapsed(), kernel, shared, &mut last, inodes));
                    }
                    if let Some(path) = &config.stats_json {
                        write_live_stats(path, started.elapsed(), kernel, shared, inodes);
                    }
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    })
}

/// While running, `--stats-json` holds the latest counters (rewritten every interval, by
/// rename, so readers never see half a file); the final summary replaces it at exit.
fn write_live_stats(
    path: &std::path::Path,
    elapsed: Duration,
    kernel: &Kernel,
    shared: &[Arc<SharedCounters>],
    inodes: &[u64],
) {
    let live = serde_json::json!({
        "live": true,
        "elapsed_secs": elapsed.as_secs_f64(),
        "workers": shared.iter().map(|s| counters_json(&s.load())).collect::<Vec<_>>(),
        "xdp": kernel.counters().ok().map(|c| outcome_json(&c)),
        "socket_kernel_drops": socket::kernel_drops(inodes),
    });
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, live.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn render_tick(
    elapsed: Duration,
    kernel: &Kernel,
    shared: &[Arc<SharedCounters>],
    last: &mut [Counters],
    inodes: &[u64],
) -> String {
    let mut line = format!("[{:>5}s]", elapsed.as_secs());
    if let Ok(c) = kernel.counters() {
        let _ = write!(line, " xdp:");
        for o in Outcome::ALL {
            let v = c[o as usize];
            if v > 0 {
                let _ = write!(line, " {}={v}", o.name());
            }
        }
    }
    for (k, s) in shared.iter().enumerate() {
        let now = s.load();
        let pps = now.get(Counter::Packets) - last[k].get(Counter::Packets);
        let _ = write!(
            line,
            " | w{k}: {pps} pkt/s total={} xdp={} sock={}",
            now.get(Counter::Packets),
            now.get(Counter::FromXdp),
            now.get(Counter::FromSocket)
        );
        let invalid: u64 = Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("invalid_"))
            .map(|c| now.get(*c))
            .sum();
        if invalid > 0 {
            let _ = write!(line, " invalid={invalid}");
        }
        last[k] = now;
    }
    let drops = socket::kernel_drops(inodes);
    if drops > 0 {
        let _ = write!(line, " | socket_drops={drops}");
    }
    line
}

fn counters_json(c: &Counters) -> serde_json::Map<String, serde_json::Value> {
    Counter::ALL
        .iter()
        .map(|k| (k.name().to_owned(), c.get(*k).into()))
        .collect()
}

fn outcome_json(c: &[u64; Outcome::COUNT as usize]) -> serde_json::Map<String, serde_json::Value> {
    Outcome::ALL
        .iter()
        .map(|o| (o.name().to_owned(), c[*o as usize].into()))
        .collect()
}

/// The human-readable final summary.
#[must_use]
pub fn render_summary(s: &Summary) -> String {
    let mut out = format!("flowguard: summary after {:.1}s\n", s.elapsed_secs);
    if let Some(xdp) = &s.xdp {
        let _ = write!(out, "  xdp:");
        for (k, v) in xdp {
            let _ = write!(out, " {k}={v}");
        }
        out.push('\n');
    }
    for (k, w) in s.workers.iter().enumerate() {
        let _ = write!(out, "  worker {k}:");
        for (name, v) in w {
            if v.as_u64() != Some(0) {
                let _ = write!(out, " {name}={v}");
            }
        }
        out.push('\n');
    }
    if s.socket_kernel_drops > 0 || s.xdp.is_some() {
        let _ = writeln!(out, "  socket kernel drops: {}", s.socket_kernel_drops);
    }
    if let Ok(serde_json::Value::Object(decode)) = serde_json::to_value(s.decode) {
        let nonzero: Vec<String> = decode
            .iter()
            .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !nonzero.is_empty() {
            let _ = writeln!(out, "  decode: {}", nonzero.join(" "));
        }
    }
    if !s.detect.is_empty() {
        let records: u64 = s.detect.iter().map(|d| d.records).sum();
        let state: u64 = s.detect.iter().map(|d| d.state_bytes).sum();
        let evictions: u64 = s.detect.iter().map(|d| d.evictions).sum();
        let _ = writeln!(
            out,
            "  detect: records={records} findings={} state_bytes={state} evictions={evictions}",
            s.findings
        );
    }
    if let Some(p) = &s.pcap {
        let _ = writeln!(
            out,
            "  pcap: {}",
            serde_json::to_string(p).unwrap_or_default()
        );
    }
    out
}

/// What `flowguard decode` did.
#[derive(Debug, Default)]
pub struct DecodeTotals {
    /// Datagrams fed to the decoder.
    pub datagrams: u64,
    /// Records printed.
    pub records: u64,
    /// Datagrams that reported a decode problem.
    pub datagrams_with_errors: u64,
}

/// `flowguard decode`: every file in order through one decoder, records to stdout.
///
/// # Errors
/// Unreadable files or a closed stdout.
pub fn decode_files(args: &crate::cli::DecodeArgs) -> Result<DecodeTotals> {
    use std::io::Write as _;

    use crate::{
        decode::{Decoder, DecoderConfig},
        report::flows::{FlowFormat, TABLE_HEADER, write_json, write_table_row},
    };

    let ports = args.ports();
    let mut decoder = Decoder::new(DecoderConfig::default());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = String::with_capacity(1 << 16);
    if args.format == FlowFormat::Table {
        buf.push_str(TABLE_HEADER);
    }
    let mut totals = DecodeTotals::default();
    let mut pcap = PcapCounters::default();
    let mut io_error = None;
    for path in &args.read {
        let file = PcapFile::open(path)?;
        file.for_each_datagram(&ports, &mut pcap, |packet| {
            totals.datagrams += 1;
            let now_ms = packet.received_ns / 1_000_000;
            let result = decoder.decode(packet.exporter.ip(), now_ms, packet.payload, &mut |r| {
                totals.records += 1;
                match args.format {
                    FlowFormat::Json => write_json(&mut buf, r),
                    FlowFormat::Table => write_table_row(&mut buf, r),
                }
            });
            if result.is_err() {
                totals.datagrams_with_errors += 1;
            }
            if buf.len() > 1 << 15 && io_error.is_none() {
                io_error = out.write_all(buf.as_bytes()).err();
                buf.clear();
            }
        })?;
    }
    if let Some(e) = io_error {
        return Err(e).context("writing records");
    }
    out.write_all(buf.as_bytes()).context("writing records")?;
    out.flush().context("writing records")?;
    let counters = decoder.counters();
    let mut line = format!(
        "flowguard: {} file(s), {} datagram(s), {} record(s)",
        args.read.len(),
        totals.datagrams,
        totals.records
    );
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(counters) {
        let problems: Vec<String> = map
            .iter()
            .filter(|(k, v)| {
                v.as_u64().unwrap_or(0) > 0
                    && !matches!(
                        k.as_str(),
                        "packets"
                            | "records"
                            | "options_records"
                            | "templates"
                            | "options_templates"
                    )
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !problems.is_empty() {
            let _ = write!(line, "; {}", problems.join(" "));
        }
    }
    eprintln!("{line}");
    Ok(totals)
}
