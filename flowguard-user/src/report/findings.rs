//! The prioritized findings report and the live alert stream.
//!
//! Ranking: a finding's final score is its detector score plus modifiers, capped at 1:
//! * `corroborated` (+0.10): another detector category also flagged the same host;
//! * `sampled` (−0.05): counts came from sampled exports and are lower bounds.
//!
//! Findings with the same [`Finding::key`] are merged (highest score kept, first/last seen
//! widened). Entities (the acting host, or the victim of a flood) are ranked by their best
//! finding, and findings within an entity by final score.
//!
//! The JSON schema is versioned (`schema_version`); see README.md for the fields.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::detect::{Category, Finding, Severity};

/// Version of the report JSON layout. Bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Modifier for a host flagged by more than one detector category.
pub const CORROBORATED_BONUS: f64 = 0.10;
/// Modifier for findings whose counts are sampled lower bounds.
pub const SAMPLED_PENALTY: f64 = 0.05;

/// One finding as reported: the detector's finding plus its ranking.
#[derive(Clone, Debug, Serialize)]
pub struct RankedFinding {
    /// Score after modifiers, in [0, 1].
    pub final_score: f64,
    /// Severity of `final_score`.
    pub final_severity: Severity,
    /// The modifiers applied, by name.
    pub modifiers: BTreeMap<String, f64>,
    /// The detector's finding.
    #[serde(flatten)]
    pub finding: Finding,
}

/// All findings about one host (or the whole site, for findings about total traffic).
#[derive(Clone, Debug, Serialize)]
pub struct EntityGroup {
    /// The host's address, or `site` for findings about the site's total traffic.
    pub entity: String,
    /// Best final score of its findings.
    pub score: f64,
    /// Severity of `score`.
    pub severity: Severity,
    /// Categories flagged.
    pub categories: Vec<Category>,
    /// Its findings, best first.
    pub findings: Vec<RankedFinding>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always `flowguard.report`.
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What was analysed.
    pub input: serde_json::Value,
    /// Counts by category and severity.
    pub summary: BTreeMap<String, serde_json::Value>,
    /// Hosts, most urgent first.
    pub entities: Vec<EntityGroup>,
}

/// What a finding is "about": the actor, the victim of a flood, or (for a total-traffic
/// finding with no host) the site.
#[must_use]
pub fn primary_entity(f: &Finding) -> String {
    let host = match f.category {
        Category::Volumetric => f.entities.dst.or(f.entities.src),
        _ => f.entities.src.or(f.entities.dst),
    };
    host.map_or_else(|| SITE.to_owned(), |h| h.to_string())
}

/// The entity name of site-wide findings.
pub const SITE: &str = "site";

/// Merges findings with the same key (highest score wins, times widened).
#[must_use]
pub fn dedupe(findings: impl IntoIterator<Item = Finding>) -> Vec<Finding> {
    let mut by_key: BTreeMap<String, Finding> = BTreeMap::new();
    for f in findings {
        match by_key.get_mut(&f.key()) {
            Some(existing) => {
                let first = existing.first_seen_ms.min(f.first_seen_ms);
                let last = existing.last_seen_ms.max(f.last_seen_ms);
                if f.score > existing.score {
                    *existing = f;
                }
                existing.first_seen_ms = first;
                existing.last_seen_ms = last;
            }
            None => {
                by_key.insert(f.key(), f);
            }
        }
    }
    by_key.into_values().collect()
}

/// Ranks findings into a report.
#[must_use]
pub fn build_report(
    findings: impl IntoIterator<Item = Finding>,
    input: serde_json::Value,
) -> Report {
    let findings = dedupe(findings);
    let mut categories_by_host: HashMap<String, Vec<Category>> = HashMap::new();
    for f in &findings {
        let cats = categories_by_host.entry(primary_entity(f)).or_default();
        if !cats.contains(&f.category) {
            cats.push(f.category);
        }
    }
    let mut groups: BTreeMap<String, Vec<RankedFinding>> = BTreeMap::new();
    let mut summary: BTreeMap<String, u64> = BTreeMap::new();
    for f in findings {
        let host = primary_entity(&f);
        let mut modifiers = BTreeMap::new();
        if categories_by_host.get(&host).is_some_and(|c| c.len() > 1) {
            modifiers.insert("corroborated".to_owned(), CORROBORATED_BONUS);
        }
        if f.sampled_lower_bound {
            modifiers.insert("sampled".to_owned(), -SAMPLED_PENALTY);
        }
        let final_score = (f.score + modifiers.values().sum::<f64>()).clamp(0.0, 1.0);
        *summary
            .entry(format!("category.{}", category_name(f.category)))
            .or_default() += 1;
        *summary
            .entry(format!(
                "severity.{}",
                severity_name(Severity::from_score(final_score))
            ))
            .or_default() += 1;
        *summary.entry("findings".to_owned()).or_default() += 1;
        groups.entry(host).or_default().push(RankedFinding {
            final_score,
            final_severity: Severity::from_score(final_score),
            modifiers,
            finding: f,
        });
    }
    let mut entities: Vec<EntityGroup> = groups
        .into_iter()
        .map(|(entity, mut findings)| {
            findings.sort_by(|a, b| {
                b.final_score
                    .total_cmp(&a.final_score)
                    .then_with(|| a.finding.key().cmp(&b.finding.key()))
            });
            let score = findings.first().map_or(0.0, |f| f.final_score);
            let mut categories: Vec<Category> =
                findings.iter().map(|f| f.finding.category).collect();
            categories.sort();
            categories.dedup();
            EntityGroup {
                entity,
                score,
                severity: Severity::from_score(score),
                categories,
                findings,
            }
        })
        .collect();
    entities.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.entity.cmp(&b.entity))
    });
    Report {
        schema: "flowguard.report",
        schema_version: SCHEMA_VERSION,
        input,
        summary: summary.into_iter().map(|(k, v)| (k, v.into())).collect(),
        entities,
    }
}

fn category_name(c: Category) -> &'static str {
    match c {
        Category::PortScan => "port_scan",
        Category::Exfiltration => "exfiltration",
        Category::Beaconing => "beaconing",
        Category::Volumetric => "volumetric",
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// The live alert stream: each finding key is emitted once, and again only when it
/// escalates (its severity band rises, or its score by at least 0.1).
#[derive(Debug, Default)]
pub struct AlertStream {
    emitted: HashMap<String, f64>,
}

/// Why an alert line was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// First time this finding is seen.
    New,
    /// The finding got worse.
    Escalated,
}

#[derive(Serialize)]
struct AlertLine<'a> {
    alert: AlertKind,
    key: String,
    #[serde(flatten)]
    finding: &'a Finding,
}

impl AlertStream {
    /// The NDJSON line to write for `finding`, if any.
    pub fn offer(&mut self, finding: &Finding) -> Option<String> {
        let key = finding.key();
        let kind = match self.emitted.get(&key) {
            None => AlertKind::New,
            Some(&prev)
                if Severity::from_score(finding.score) > Severity::from_score(prev)
                    || finding.score >= prev + 0.1 =>
            {
                AlertKind::Escalated
            }
            Some(_) => return None,
        };
        self.emitted.insert(key.clone(), finding.score);
        let mut line = serde_json::to_string(&AlertLine {
            alert: kind,
            key,
            finding,
        })
        .ok()?;
        line.push('\n');
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Entities;

    fn finding(category: Category, src: &str, score: f64) -> Finding {
        Finding {
            category,
            kind: "k".into(),
            mitre: category.mitre().into(),
            score,
            severity: Severity::from_score(score),
            entities: Entities {
                src: Some(src.parse().unwrap()),
                dst: None,
                ports: vec![],
            },
            first_seen_ms: 10,
            last_seen_ms: 20,
            evidence: BTreeMap::new(),
            sampled_lower_bound: false,
            summary: "s".into(),
        }
    }

    #[test]
    fn corroborated_hosts_rank_first_and_duplicates_merge() {
        let mut dup = finding(Category::PortScan, "10.0.0.2", 0.9);
        dup.first_seen_ms = 5;
        let report = build_report(
            vec![
                finding(Category::PortScan, "10.0.0.1", 0.75),
                finding(Category::Beaconing, "10.0.0.1", 0.7),
                finding(Category::PortScan, "10.0.0.2", 0.8),
                dup,
            ],
            serde_json::json!({}),
        );
        assert_eq!(report.entities.len(), 2);
        assert_eq!(
            report.entities[0].entity, "10.0.0.2",
            "0.9 beats 0.75 + 0.1"
        );
        assert_eq!(report.entities[0].findings.len(), 1, "same key merged");
        assert_eq!(report.entities[0].findings[0].finding.first_seen_ms, 5);
        let second = &report.entities[1];
        assert!(
            (second.score - 0.85).abs() < 1e-9,
            "corroboration bonus: {}",
            second.score
        );
        assert_eq!(
            second.categories,
            vec![Category::PortScan, Category::Beaconing]
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["entities"][1]["findings"][0]["mitre"], "T1046");
    }

    #[test]
    fn site_wide_findings_are_kept_under_the_site() {
        let mut total = finding(Category::Volumetric, "10.0.0.1", 0.8);
        total.entities = Entities::default();
        let report = build_report(vec![total], serde_json::json!({}));
        assert_eq!(report.entities.len(), 1);
        assert_eq!(report.entities[0].entity, SITE);
    }

    #[test]
    fn alerts_are_emitted_once_and_again_on_escalation() {
        let mut s = AlertStream::default();
        let f = finding(Category::Beaconing, "10.0.0.1", 0.5);
        assert!(s.offer(&f).unwrap().contains("\"alert\":\"new\""));
        assert!(s.offer(&f).is_none());
        let worse = finding(Category::Beaconing, "10.0.0.1", 0.75);
        assert!(s.offer(&worse).unwrap().contains("\"alert\":\"escalated\""));
        assert!(
            s.offer(&finding(Category::Beaconing, "10.0.0.1", 0.8))
                .is_none()
        );
    }
}
