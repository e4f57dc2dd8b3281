//! Saving and loading the template cache, so that a restart keeps its templates.
//!
//! The format is JSON, versioned by `format`/`version`:
//!
//! ```json
//! {"format":"flowguard-templates","version":1,"exporters":[
//!   {"exporter":"192.0.2.1","domains":[
//!     {"observation_domain_id":0,"system_init_ms":null,"default_sampling":null,
//!      "samplers":[[1,100]],
//!      "templates":[{"spec":{"template_id":256,"version":9,"options":false,
//!                            "scope_field_count":0,"fields":[{"id":8,"length":4,"enterprise":0}]},
//!                    "last_seen_ms":1700000000000}]}]}]}
//! ```
//!
//! Templates are stored as received (field specifiers) and compiled again on load, so a
//! snapshot never depends on the compiled layout. Pending data and counters are not
//! saved. Loading applies the decoder's limits, like templates arriving on the wire.

use std::io::{Read, Write};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Decoder;
use super::error::{DecodeCounters, DecodeError};
use super::template::{Template, TemplateSpec};

const FORMAT: &str = "flowguard-templates";
const VERSION: u32 = 1;

/// Why a snapshot could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing failed.
    #[error("snapshot i/o failed")]
    Io(#[source] std::io::Error),
    /// The snapshot is not valid JSON of the expected shape.
    #[error("snapshot is malformed")]
    Json(#[source] serde_json::Error),
    /// The snapshot is of another format or a newer version.
    #[error("unsupported snapshot format {format:?} version {version}")]
    Unsupported {
        /// Format string found.
        format: String,
        /// Version found.
        version: u32,
    },
}

/// What [`Decoder::load_snapshot`] restored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Templates restored.
    pub templates: usize,
    /// Templates refused (over a limit, or not compilable).
    pub rejected: usize,
    /// (exporter, domain) sampling states restored.
    pub domains: usize,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    exporters: Vec<ExporterSnap>,
}

#[derive(Serialize, Deserialize)]
struct ExporterSnap {
    exporter: IpAddr,
    domains: Vec<DomainSnap>,
}

#[derive(Serialize, Deserialize)]
struct DomainSnap {
    observation_domain_id: u32,
    system_init_ms: Option<u64>,
    default_sampling: Option<u32>,
    samplers: Vec<(u64, u32)>,
    templates: Vec<TemplateSnap>,
}

#[derive(Serialize, Deserialize)]
struct TemplateSnap {
    spec: TemplateSpec,
    last_seen_ms: u64,
    #[serde(default)]
    generation: u64,
}

impl Decoder {
    /// Writes the template cache and sampling state to `w` as JSON.
    ///
    /// # Errors
    /// [`SnapshotError::Io`] or [`SnapshotError::Json`] when writing fails.
    pub fn save_snapshot(&self, mut w: impl Write) -> Result<(), SnapshotError> {
        let mut exporters: Vec<ExporterSnap> = self
            .exporters
            .iter()
            .filter(|(_, e)| !e.domains.is_empty())
            .map(|(&exporter, e)| {
                let mut domains: Vec<DomainSnap> = e
                    .domains
                    .iter()
                    .map(|(&observation_domain_id, d)| {
                        let mut templates: Vec<TemplateSnap> = d
                            .templates
                            .values()
                            .map(|t| TemplateSnap {
                                spec: t.spec.clone(),
                                last_seen_ms: t.last_seen_ms,
                                generation: t.generation,
                            })
                            .collect();
                        templates.sort_by_key(|t| t.generation);
                        let mut samplers: Vec<(u64, u32)> =
                            d.sampling.samplers.iter().map(|(&k, &v)| (k, v)).collect();
                        samplers.sort_unstable();
                        DomainSnap {
                            observation_domain_id,
                            system_init_ms: d.system_init_ms,
                            default_sampling: d.sampling.default,
                            samplers,
                            templates,
                        }
                    })
                    .collect();
                domains.sort_by_key(|d| d.observation_domain_id);
                ExporterSnap { exporter, domains }
            })
            .collect();
        exporters.sort_by_key(|e| e.exporter);
        let snap = Snapshot {
            format: FORMAT.to_owned(),
            version: VERSION,
            exporters,
        };
        serde_json::to_writer(&mut w, &snap).map_err(SnapshotError::Json)?;
        w.flush().map_err(SnapshotError::Io)
    }

    /// Loads a snapshot written by [`Decoder::save_snapshot`] into this decoder, on top
    /// of what it holds. Templates keep their last-seen time, so ones older than the TTL
    /// expire at the next sweep. Limits apply as for templates from the wire; refusals
    /// are counted.
    ///
    /// # Errors
    /// [`SnapshotError`] when the snapshot cannot be read or is of another format.
    pub fn load_snapshot(&mut self, r: impl Read) -> Result<LoadSummary, SnapshotError> {
        let snap: Snapshot = serde_json::from_reader(r).map_err(SnapshotError::Json)?;
        if snap.format != FORMAT || snap.version != VERSION {
            return Err(SnapshotError::Unsupported {
                format: snap.format,
                version: snap.version,
            });
        }
        let mut summary = LoadSummary::default();
        for e in snap.exporters {
            if !self.exporters.contains_key(&e.exporter)
                && self.exporters.len() >= self.core.config.max_exporters
            {
                self.counters.count_error(&DecodeError::ExporterLimit);
                summary.rejected += e.domains.iter().map(|d| d.templates.len()).sum::<usize>();
                continue;
            }
            let state = self.exporters.entry(e.exporter).or_default();
            let mut counters = DecodeCounters::default();
            for d in e.domains {
                let domain = d.observation_domain_id;
                match state.domain_mut(domain, &self.core.config) {
                    Ok(ds) => {
                        ds.system_init_ms = d.system_init_ms;
                        ds.sampling.default = d.default_sampling;
                        let cap = self.core.config.max_samplers_per_domain;
                        ds.sampling
                            .samplers
                            .extend(d.samplers.into_iter().take(cap));
                        summary.domains += 1;
                    }
                    Err(err) => {
                        counters.count_error(&err);
                        summary.rejected += d.templates.len();
                        continue;
                    }
                }
                for t in d.templates {
                    state.last_seen_ms = state.last_seen_ms.max(t.last_seen_ms);
                    let generation = self.core.next_generation();
                    let stored =
                        Template::compile(t.spec, t.last_seen_ms).and_then(|(template, _)| {
                            state.insert_template(domain, template, generation, &self.core.config)
                        });
                    match stored {
                        Ok(outcome) if !outcome.rejected => {
                            counters.templates_evicted += outcome.evicted as u64;
                            summary.templates += 1;
                        }
                        Ok(outcome) => {
                            counters.templates_evicted += outcome.evicted as u64;
                            summary.rejected += 1;
                        }
                        Err(err) => {
                            counters.count_error(&err);
                            summary.rejected += 1;
                        }
                    }
                }
            }
            state.counters.merge(&counters);
            self.counters.merge(&counters);
        }
        Ok(summary)
    }
}
