//! Detection quality on generated scenarios (issue 4, "Must show" 1).
//!
//! For v9 and IPFIX, unsampled and at 1:100, the real `flowguard` binary writes a 6-hour
//! scenario (`flowguard scenario`: benign background plus injected attacks, with ground
//! truth) and analyzes it (`flowguard analyze`). Findings are matched to the ground-truth
//! attacks: a finding matches an attack when it has the same category and its source or
//! destination is the attack's source or destination.
//!
//! Per run and per detector category the test prints TP (attacks found), FP (findings
//! that match no attack), FN (observable attacks not found), precision TP/(TP+FP) and
//! recall TP/(TP+FN). Attacks the generator marks unobservable (sampling left too little
//! of them) are listed as "not observable at 1:N" and not counted.
//!
//! It asserts that every observable attack is found with the right entities (the scanner,
//! implant or uploader as the source; a flood's victim as the destination) and that no
//! finding at all falls on the benign background: a finding matching no attack fails the
//! test, and is named.
//!
//! `FLOWGUARD_QUALITY_SEEDS=1,2,3` runs the four scenarios for each listed seed (default:
//! seed 1).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use flowguard_e2e::{TempDir, flowguard_bin};
use serde_json::Value;

/// Event time per scenario. The issue asks for at least 6 hours; 10 gives the 1-hour beacon
/// (20% of beats missing) the six connections any beacon test needs.
const HOURS: &str = "10";
const CATEGORIES: [&str; 4] = ["port_scan", "exfiltration", "beaconing", "volumetric"];

#[derive(Clone, Copy, Debug)]
struct RunSpec {
    format: &'static str,
    sampling: u32,
    seed: u64,
}

#[derive(Debug)]
struct Attack {
    id: String,
    category: String,
    kind: String,
    src: Option<String>,
    dst: Option<String>,
    observable: bool,
    observed_units: u64,
    sent_units: u64,
    start_ms: u64,
    end_ms: u64,
}

#[derive(Debug)]
struct Found {
    category: String,
    kind: String,
    src: Option<String>,
    dst: Option<String>,
    score: f64,
    summary: String,
    first_seen_ms: u64,
    last_seen_ms: u64,
}

impl Found {
    fn matches(&self, a: &Attack) -> bool {
        if self.category != a.category {
            return false;
        }
        // A site-wide finding (total traffic, no host) belongs to the attack it overlaps.
        if self.src.is_none() && self.dst.is_none() {
            return self.first_seen_ms <= a.end_ms && a.start_ms <= self.last_seen_ms;
        }
        let ends = [a.src.as_ref(), a.dst.as_ref()];
        [self.src.as_ref(), self.dst.as_ref()]
            .into_iter()
            .flatten()
            .any(|e| ends.contains(&Some(e)))
    }

    /// The attack's main entity in its role: the actor as the source, or (for a flood) the
    /// victim as the destination.
    fn right_entities(&self, a: &Attack) -> bool {
        if a.category == "volumetric" {
            a.dst.is_some() && self.dst == a.dst
        } else {
            let src_ok = a.src.is_none() || self.src == a.src;
            // Vertical scans, beacons and exfiltration also name their target.
            let dst_ok = a.dst.is_none() || a.category == "port_scan" || self.dst == a.dst;
            src_ok && dst_ok
        }
    }
}

#[derive(Debug)]
struct Outcome {
    spec: RunSpec,
    table: String,
    failures: Vec<String>,
    elapsed: Duration,
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn run_bin(args: &[&str]) {
    let out = Command::new(flowguard_bin())
        .args(args)
        .output()
        .expect("running flowguard");
    assert!(
        out.status.success(),
        "flowguard {} failed: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn attacks(truth: &Value) -> Vec<Attack> {
    truth["attacks"]
        .as_array()
        .expect("ground truth has attacks")
        .iter()
        .map(|a| Attack {
            id: str_field(a, "id").expect("attack id"),
            category: str_field(a, "category").expect("attack category"),
            kind: str_field(a, "kind").unwrap_or_default(),
            src: str_field(a, "src"),
            dst: str_field(a, "dst"),
            observable: a["observable"].as_bool().expect("observable flag"),
            observed_units: a["observed_units"].as_u64().unwrap_or(0),
            sent_units: a["sent_units"].as_u64().unwrap_or(0),
            start_ms: a["start_ms"].as_u64().unwrap_or(0),
            end_ms: a["end_ms"].as_u64().unwrap_or(u64::MAX),
        })
        .collect()
}

fn findings(report: &Value) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for group in report["entities"].as_array().expect("report has entities") {
        for f in group["findings"].as_array().expect("entity has findings") {
            let found = Found {
                category: str_field(f, "category").expect("finding category"),
                kind: str_field(f, "kind").unwrap_or_default(),
                src: str_field(&f["entities"], "src"),
                dst: str_field(&f["entities"], "dst"),
                score: f["final_score"].as_f64().unwrap_or(0.0),
                summary: str_field(f, "summary").unwrap_or_default(),
                first_seen_ms: f["first_seen_ms"].as_u64().unwrap_or(0),
                last_seen_ms: f["last_seen_ms"].as_u64().unwrap_or(u64::MAX),
            };
            // A finding is listed once, under its primary entity; keep it once anyway.
            if !out.iter().any(|o| {
                (&o.category, &o.kind, &o.src, &o.dst)
                    == (&found.category, &found.kind, &found.src, &found.dst)
            }) {
                out.push(found);
            }
        }
    }
    out
}

#[expect(clippy::cast_precision_loss, reason = "ratios of small counts")]
fn ratio(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.2}", n as f64 / d as f64)
    }
}

fn or_dash(a: Option<&String>) -> &str {
    a.map_or("-", String::as_str)
}

/// Scores one analyzed scenario: the table, and what fails.
#[expect(clippy::too_many_lines, reason = "one table, row by row")]
fn evaluate(spec: RunSpec, attacks: &[Attack], found: &[Found]) -> (String, Vec<String>) {
    let label = format!("{} 1:{} seed {}", spec.format, spec.sampling, spec.seed);
    let mut t = String::new();
    let mut failures = Vec::new();
    let _ = writeln!(t, "=== {label}: {} findings ===", found.len());
    let mut per: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for a in attacks {
        let matched: Vec<&Found> = found.iter().filter(|f| f.matches(a)).collect();
        let right = matched.iter().any(|f| f.right_entities(a));
        let scores = matched
            .iter()
            .map(|f| format!("{:.2}", f.score))
            .collect::<Vec<_>>()
            .join(",");
        let status = match (a.observable, right, matched.is_empty()) {
            (true, true, _) => {
                per.entry(category_key(&a.category)).or_default()[0] += 1;
                "found"
            }
            (true, false, empty) => {
                per.entry(category_key(&a.category)).or_default()[2] += 1;
                failures.push(format!(
                    "{label}: {} ({}, {} -> {}) {}",
                    a.id,
                    a.category,
                    or_dash(a.src.as_ref()),
                    or_dash(a.dst.as_ref()),
                    if empty {
                        "not found".to_owned()
                    } else {
                        format!("found without the right entities: {matched:?}")
                    }
                ));
                "MISSED"
            }
            (false, _, true) => "not observable",
            (false, _, false) => "found (not observable, not counted)",
        };
        let _ = writeln!(
            t,
            "  {status:<14} {:<22} {:<13} {:<20} {:>15} -> {:<17} seen {}/{}{}{}",
            a.id,
            a.category,
            a.kind,
            or_dash(a.src.as_ref()),
            or_dash(a.dst.as_ref()),
            a.observed_units,
            a.sent_units,
            if a.observable {
                String::new()
            } else {
                format!(" (not observable at 1:{})", spec.sampling)
            },
            if scores.is_empty() {
                String::new()
            } else {
                format!("  score {scores}")
            },
        );
    }
    for f in found {
        if !attacks.iter().any(|a| f.matches(a)) {
            per.entry(category_key(&f.category)).or_default()[1] += 1;
            let line = format!(
                "{label}: false positive {} {} {} -> {} (score {:.2}): {}",
                f.category,
                f.kind,
                or_dash(f.src.as_ref()),
                or_dash(f.dst.as_ref()),
                f.score,
                f.summary
            );
            let _ = writeln!(t, "  FALSE POSITIVE {line}");
            failures.push(line);
        }
    }
    let _ = writeln!(
        t,
        "  {:<14} {:>4} {:>4} {:>4} {:>10} {:>7}",
        "category", "TP", "FP", "FN", "precision", "recall"
    );
    let mut total = [0usize; 3];
    for c in CATEGORIES {
        let [tp, fp, fn_] = per.get(c).copied().unwrap_or_default();
        for (s, v) in total.iter_mut().zip([tp, fp, fn_]) {
            *s += v;
        }
        let _ = writeln!(
            t,
            "  {c:<14} {tp:>4} {fp:>4} {fn_:>4} {:>10} {:>7}",
            ratio(tp, tp + fp),
            ratio(tp, tp + fn_)
        );
    }
    let [tp, fp, fn_] = total;
    let _ = writeln!(
        t,
        "  {:<14} {tp:>4} {fp:>4} {fn_:>4} {:>10} {:>7}",
        "all",
        ratio(tp, tp + fp),
        ratio(tp, tp + fn_)
    );
    (t, failures)
}

fn category_key(c: &str) -> &'static str {
    CATEGORIES
        .into_iter()
        .find(|k| *k == c)
        .unwrap_or("unknown")
}

fn run_one(spec: RunSpec) -> Outcome {
    let started = Instant::now();
    let dir = TempDir::new(&format!("quality-{}-{}", spec.format, spec.sampling));
    let out = dir.0.to_str().expect("utf-8 temp path").to_owned();
    let (sampling, seed) = (spec.sampling.to_string(), spec.seed.to_string());
    run_bin(&[
        "scenario",
        "--out",
        &out,
        "--format",
        spec.format,
        "--hours",
        HOURS,
        "--sampling",
        &sampling,
        "--seed",
        &seed,
    ]);
    let pcap = dir.join("exports.pcap");
    let config = dir.join("detect_config.json");
    let report = dir.join("report.json");
    run_bin(&[
        "analyze",
        "--no-progress",
        "--read",
        pcap.to_str().expect("utf-8"),
        "--detect-config",
        config.to_str().expect("utf-8"),
        "--output",
        report.to_str().expect("utf-8"),
    ]);
    let truth = read_json(&dir.join("ground_truth.json"));
    assert_eq!(truth["sampling"].as_u64(), Some(u64::from(spec.sampling)));
    let attacks = attacks(&truth);
    let found = findings(&read_json(&report));
    let (table, mut failures) = evaluate(spec, &attacks, &found);
    // Guards on the ground truth itself: unsampled, everything is observable; sampled,
    // the observability rule must not excuse the fast attacks.
    let observable = attacks.iter().filter(|a| a.observable).count();
    if spec.sampling == 1 && observable != attacks.len() {
        failures.push(format!("{spec:?}: unsampled attacks marked unobservable"));
    }
    for c in CATEGORIES {
        if !attacks.iter().any(|a| a.category == c && a.observable) {
            failures.push(format!("{spec:?}: no observable {c} attack to test"));
        }
    }
    Outcome {
        spec,
        table,
        failures,
        elapsed: started.elapsed(),
    }
}

fn seeds() -> Vec<u64> {
    std::env::var("FLOWGUARD_QUALITY_SEEDS")
        .ok()
        .map(|s| {
            s.split(',')
                .filter(|x| !x.trim().is_empty())
                .map(|x| x.trim().parse().expect("FLOWGUARD_QUALITY_SEEDS: numbers"))
                .collect()
        })
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![1])
}

#[test]
fn detection_quality_on_six_hour_scenarios() {
    let started = Instant::now();
    let mut specs = Vec::new();
    for seed in seeds() {
        for sampling in [1, 100] {
            for format in ["v9", "ipfix"] {
                specs.push(RunSpec {
                    format,
                    sampling,
                    seed,
                });
            }
        }
    }
    // The runs are independent processes: run them side by side.
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|&spec| s.spawn(move || run_one(spec)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("run thread"))
            .collect()
    });
    let mut failures = Vec::new();
    for o in &outcomes {
        println!("{}", o.table);
        println!(
            "  ({} 1:{} seed {}: {:.1} s)\n",
            o.spec.format,
            o.spec.sampling,
            o.spec.seed,
            o.elapsed.as_secs_f64()
        );
        failures.extend(o.failures.iter().cloned());
    }
    println!(
        "detection quality: {} runs in {:.1} s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "detection quality failures:\n  {}",
        failures.join("\n  ")
    );
}
