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
    worker::{Counter, Counters, FlowSink, LiveInputs, SharedCounters, Worker, run_live},
};

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
    /// Seconds the run took.
    pub elapsed_secs: f64,
}

/// Runs `flowguard run` to completion.
///
/// # Errors
/// Set-up failures (load, attach, bind, files), with context.
pub fn run(config: &RunConfig) -> Result<Summary> {
    if let Some(dir) = &config.packet_log {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let summary = match &config.input {
        Input::Files(files) => run_files(config, files)?,
        Input::Xdp { .. } | Input::Socket => run_live_capture(config)?,
    };
    if let Some(path) = &config.stats_json {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("{}", render_summary(&summary));
    Ok(summary)
}

fn run_files(config: &RunConfig, files: &[std::path::PathBuf]) -> Result<Summary> {
    let started = Instant::now();
    let shared: Vec<Arc<SharedCounters>> = (0..config.workers).map(|_| Arc::default()).collect();
    let snapshots = read_snapshots(config)?;
    let writer = flows_writer(config)?;
    let mut workers = shared
        .iter()
        .enumerate()
        .map(|(k, s)| {
            make_worker(
                k,
                Arc::clone(s),
                config,
                &snapshots,
                writer.as_ref().map(|(tx, _)| tx.clone()),
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
    Ok(Summary {
        workers: shared.iter().map(|s| counters_json(&s.load())).collect(),
        xdp: None,
        socket_kernel_drops: 0,
        pcap: Some(counters),
        decode,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

fn run_live_capture(config: &RunConfig) -> Result<Summary> {
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
        let handle = std::thread::Builder::new()
            .name(format!("flowguard-w{k}"))
            .spawn(move || -> Result<DecodeCounters> {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                // The worker's state is built here, on its own core.
                let mut worker = make_worker(k, counters, &config, &snapshots, sink)?;
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
    let xdp_before_detach = matches!(config.input, Input::Xdp { .. })
        .then(|| kernel.counters())
        .transpose()?;
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
    let xdp_counters = match xdp_before_detach {
        Some(_) => Some(kernel.counters()?),
        None => None,
    };
    Ok(Summary {
        workers: shared.iter().map(|s| counters_json(&s.load())).collect(),
        xdp: xdp_counters.map(|c| outcome_json(&c)),
        socket_kernel_drops: socket::kernel_drops(&inodes),
        pcap: None,
        decode,
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
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    })
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
