//! The template cache, sampling state and pending queues of one decoder.
//!
//! Layout: exporter IP → observation domain → template id (RFC 7011 §8: a template is
//! scoped to its transport session and observation domain; over UDP the session is the
//! exporter address, and the source port is left out because exporters change it when
//! they restart). v9 data and options templates share one id space (RFC 3954 §5.2), so
//! one map per domain holds both.
//!
//! Every structure here is bounded by [`DecoderConfig`] and every hit of a bound is
//! counted. Memory is accounted by the cache itself ([`Template::footprint`], pending
//! bytes), not measured from the allocator, so tests can assert it deterministically.

use std::collections::{HashMap, VecDeque};

use super::config::DecoderConfig;
use super::error::{DecodeCounters, DecodeError};
use super::template::Template;

/// How each message's clocks relate (needed to turn relative times into absolute ones).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExportCtx {
    /// 9 or 10.
    pub version: u16,
    /// Export time, Unix ms.
    pub export_ms: u64,
    /// v9 header sysUpTime (ms); `None` for IPFIX.
    pub sys_uptime_ms: Option<u32>,
    /// v9 source id or IPFIX observation domain id.
    pub observation_domain_id: u32,
}

/// A data set waiting for its template.
#[derive(Debug)]
pub(crate) struct Pending {
    pub template_id: u16,
    pub received_ms: u64,
    pub ctx: ExportCtx,
    pub data: Box<[u8]>,
}

/// Sampling configuration learned from options data (and kept in snapshots).
#[derive(Clone, Debug, Default)]
pub(crate) struct Sampling {
    /// Rate from options records that name no sampler.
    pub default: Option<u32>,
    /// Rate per sampler id (v9 `FLOW_SAMPLER_ID` 48, IPFIX `selectorId` 302 / `samplerId` 48).
    pub samplers: HashMap<u64, u32>,
}

impl Sampling {
    /// The interval for a data record that named `sampler_id` (or none).
    ///
    /// A known sampler wins; then the domain default. When the record names no sampler
    /// and the domain has exactly one, that one applies: exporters such as IOS-XE announce
    /// a sampler by id but leave `FLOW_SAMPLER_ID` out of the data template.
    pub fn interval_for(&self, sampler_id: Option<u64>) -> u32 {
        if let Some(rate) = sampler_id.and_then(|id| self.samplers.get(&id)) {
            return *rate;
        }
        if let Some(rate) = self.default {
            return rate;
        }
        if sampler_id.is_none() && self.samplers.len() == 1 {
            return self.samplers.values().next().copied().unwrap_or(1);
        }
        1
    }
}

/// State of one (exporter, observation domain).
#[derive(Debug, Default)]
pub(crate) struct DomainState {
    pub templates: HashMap<u16, Template>,
    pub sampling: Sampling,
    /// `systemInitTimeMilliseconds` (IE 160) from options data, for sysUpTime times.
    pub system_init_ms: Option<u64>,
    pub pending: VecDeque<Pending>,
    pub pending_bytes: usize,
}

impl DomainState {
    fn is_empty(&self) -> bool {
        self.templates.is_empty()
            && self.pending.is_empty()
            && self.sampling.default.is_none()
            && self.sampling.samplers.is_empty()
            && self.system_init_ms.is_none()
    }
}

/// State of one exporter.
#[derive(Debug, Default)]
pub(crate) struct ExporterState {
    pub domains: HashMap<u32, DomainState>,
    pub template_count: usize,
    pub template_bytes: usize,
    /// Templates in insertion/refresh order: (domain, template id, generation). Entries
    /// whose generation no longer matches the template are stale and skipped.
    pub order: VecDeque<(u32, u16, u64)>,
    pub counters: DecodeCounters,
    pub last_seen_ms: u64,
}

/// What happened when a template was stored.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct InsertOutcome {
    pub evicted: usize,
    /// True if the template was rejected (it alone is over the byte cap, or domain cap).
    pub rejected: bool,
}

impl ExporterState {
    /// Gets or creates the state of `domain`, enforcing `max_domains_per_exporter`.
    pub fn domain_mut(
        &mut self,
        domain: u32,
        config: &DecoderConfig,
    ) -> Result<&mut DomainState, DecodeError> {
        if !self.domains.contains_key(&domain)
            && self.domains.len() >= config.max_domains_per_exporter
        {
            return Err(DecodeError::DomainLimit {
                observation_domain_id: domain,
            });
        }
        Ok(self.domains.entry(domain).or_default())
    }

    /// Stores `template` in `domain`, replacing any template of that id, and evicts the
    /// least recently (re)defined templates of this exporter until it is within its caps.
    pub fn insert_template(
        &mut self,
        domain: u32,
        mut template: Template,
        generation: u64,
        config: &DecoderConfig,
    ) -> Result<InsertOutcome, DecodeError> {
        let template_id = template.spec.template_id;
        let footprint = template.footprint();
        if footprint > config.max_template_bytes_per_exporter
            || config.max_templates_per_exporter == 0
        {
            return Err(DecodeError::TemplateLimit { template_id });
        }
        template.generation = generation;
        let state = self.domain_mut(domain, config)?;
        if let Some(old) = state.templates.insert(template_id, template) {
            self.template_bytes = self.template_bytes - old.footprint() + footprint;
        } else {
            self.template_count += 1;
            self.template_bytes += footprint;
        }
        self.order.push_back((domain, template_id, generation));
        let mut outcome = InsertOutcome::default();
        while self.template_count > config.max_templates_per_exporter
            || self.template_bytes > config.max_template_bytes_per_exporter
        {
            let Some((d, id, g)) = self.order.pop_front() else {
                break;
            };
            let live = self
                .domains
                .get(&d)
                .and_then(|s| s.templates.get(&id))
                .is_some_and(|t| t.generation == g);
            if live {
                self.remove_template(d, id);
                outcome.evicted += 1;
                if d == domain && id == template_id {
                    outcome.rejected = true;
                }
            }
        }
        // Refreshes leave stale entries behind; rebuild the queue before it outgrows the
        // templates it orders.
        if self.order.len() > 2 * self.template_count + 64 {
            self.compact_order();
        }
        Ok(outcome)
    }

    /// Refreshes a template whose definition did not change: only its clock and place in
    /// the eviction order move.
    pub fn touch_template(
        &mut self,
        domain: u32,
        template_id: u16,
        generation: u64,
        now_ms: u64,
    ) -> bool {
        let Some(t) = self
            .domains
            .get_mut(&domain)
            .and_then(|s| s.templates.get_mut(&template_id))
        else {
            return false;
        };
        t.last_seen_ms = now_ms;
        t.generation = generation;
        self.order.push_back((domain, template_id, generation));
        if self.order.len() > 2 * self.template_count + 64 {
            self.compact_order();
        }
        true
    }

    fn compact_order(&mut self) {
        let mut live: Vec<(u32, u16, u64)> = self
            .domains
            .iter()
            .flat_map(|(&d, s)| {
                s.templates
                    .iter()
                    .map(move |(&id, t)| (d, id, t.generation))
            })
            .collect();
        live.sort_unstable_by_key(|&(_, _, g)| g);
        self.order = live.into();
    }

    /// Removes one template, keeping the accounting right. Returns whether it existed.
    pub fn remove_template(&mut self, domain: u32, template_id: u16) -> bool {
        let Some(old) = self
            .domains
            .get_mut(&domain)
            .and_then(|s| s.templates.remove(&template_id))
        else {
            return false;
        };
        self.template_count -= 1;
        self.template_bytes -= old.footprint();
        true
    }

    /// Removes every data (or options) template of `domain` (RFC 7011 §8.1 withdraw-all).
    pub fn remove_all(&mut self, domain: u32, options: bool) -> usize {
        let ids: Vec<u16> = self
            .domains
            .get(&domain)
            .map(|s| {
                s.templates
                    .iter()
                    .filter(|(_, t)| t.spec.options == options)
                    .map(|(&id, _)| id)
                    .collect()
            })
            .unwrap_or_default();
        for &id in &ids {
            self.remove_template(domain, id);
        }
        ids.len()
    }

    /// Drops expired templates and pending sets, then empty domains. Counts into
    /// `counters` and returns the pending bytes freed.
    pub fn sweep(
        &mut self,
        now_ms: u64,
        config: &DecoderConfig,
        counters: &mut DecodeCounters,
    ) -> usize {
        let mut expired: Vec<(u32, u16)> = Vec::new();
        let mut freed = 0;
        for (&d, state) in &mut self.domains {
            for (&id, t) in &state.templates {
                if now_ms.saturating_sub(t.last_seen_ms) > config.template_ttl_ms {
                    expired.push((d, id));
                }
            }
            while let Some(p) = state.pending.front() {
                if now_ms.saturating_sub(p.received_ms) <= config.pending_timeout_ms {
                    break;
                }
                let len = p.data.len();
                state.pending.pop_front();
                state.pending_bytes -= len;
                freed += len;
                counters.pending_expired += 1;
            }
        }
        for (d, id) in expired {
            if self.remove_template(d, id) {
                counters.templates_expired += 1;
            }
        }
        self.domains.retain(|_, s| !s.is_empty());
        freed
    }

    /// True when nothing but counters is left.
    pub fn is_idle(&self) -> bool {
        self.domains.is_empty()
    }
}
