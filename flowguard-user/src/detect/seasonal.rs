//! Per-host daily profiles: how much a host usually sends in each UTC hour of the day.
//!
//! The exfiltration detector's rolling host baseline (the last 24 active windows) is
//! dominated by a host's quiet hours. So a recurring job that is not allow-listed, such as
//! a nightly upload to off-site storage, scores as an anomaly every night. An
//! [`HourProfile`] learns, for each of the 24 UTC hours, the host's usual large outbound
//! volume in that hour and how regularly it happens. The exfiltration module docs say
//! how the score uses it.
//!
//! **Observations.** For one hour bin and one UTC day, the observation is the host's
//! outbound bytes to all destinations in the windows that start in that hour. With the
//! default 1 h windows that is one window. Shorter windows of the same hour are summed,
//! and a longer window counts in the bin of its start hour. The day is *active* when the
//! volume is at least `Learn::floor_log10` (the exfiltration detector sets it to
//! `min_bytes` / 10^tolerance, the smallest volume that could vouch for a reportable
//! window). Otherwise the day is *quiet*. That includes days on which the host sent
//! nothing at that hour, and background traffic too small to matter.
//!
//! **Rule, per bin and day.**
//! - An active day adds 1 to `days`, up to `Learn::days_cap`. The level is kept as
//!   log10(bytes + 1). It starts at the day's value when `days` was 0. After that it
//!   moves [`ALPHA`] of the way towards each active day's value, with the step clipped to
//!   ± tolerance. This is a Huber-type robust EWMA: one odd day (a failed job, a full
//!   backup) moves the level by at most `ALPHA` · tolerance.
//! - A quiet day takes 1 from `days`. The level stays, because it is the habit's size,
//!   not its frequency. Once `days` is back to 0 the level is ignored, and the next
//!   active day starts it afresh.
//!
//! So `days` counts the recent active days net of the quiet ones. A one-off upload is
//! forgotten on the next quiet day and never becomes "normal": a bin only reaches N
//! after N more active than quiet days. A daily job reaches N on its (N+1)-th day. A
//! weekday-only job also gets there, since it loses 2 each weekend and gains 5. A job
//! that runs every other day never does, and neither does a weekly one (allow-list
//! those). The cap bounds the memory. A job that stopped is no longer normal after
//! `days_cap` − N + 1 quiet days.
//!
//! **Earlier days only.** A day's observation stays pending in its bin. It is folded in
//! lazily, when a later day of the same bin is recorded or viewed. So [`HourProfile::view`]
//! for a window on day d sees exactly the days before d, whatever order host windows and
//! pair windows close in. A day on which the host's entry existed but no window of that
//! hour was recorded counts as quiet. The pending day is stored as u16 days since the
//! epoch. Differences use wrapping arithmetic, so the stamp is valid for gaps under 89
//! years.
//!
//! **Cost.** 24 bins × (f32 level + f32 pending bytes + u16 pending day + u8 days) = 264
//! bytes.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "log-scale volumes in f32, and hours and days of in-range event times"
)]

/// Hour bins.
pub const HOURS: usize = 24;
/// Weight of a new active day in a bin's level (an EWMA with a memory of about 4 days).
pub const ALPHA: f32 = 0.25;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// How a profile learns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learn {
    /// log10(bytes + 1) at or above which an hour of a day is active.
    pub floor_log10: f32,
    /// Largest step (decades) of a level's update, before the `ALPHA` weight.
    pub tolerance_log10: f32,
    /// Cap of a bin's net active-day count.
    pub days_cap: u8,
}

/// A host's 24 hour-of-day bins; see the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HourProfile {
    level: [f32; HOURS],
    pending: [f32; HOURS],
    pending_day: [u16; HOURS],
    days: [u8; HOURS],
}

/// What one bin had learned before some day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BinView {
    /// The bin: UTC hour of the day.
    pub hour: u8,
    /// Net active days (active − quiet, capped) before that day.
    pub days: u8,
    /// The learned level, log10(bytes + 1); meaningless when `days` is 0.
    pub level_log10: f32,
}

impl BinView {
    /// The learned level in bytes.
    #[must_use]
    pub fn usual_bytes(&self) -> f64 {
        (10f64.powf(f64::from(self.level_log10)) - 1.0).max(0.0)
    }

    /// Whether the bin is a habit (at least `min_days` net active days; 0 counts as 1)
    /// and `bytes` is within its level plus `tolerance_log10`.
    #[must_use]
    pub fn covers(&self, bytes: u64, min_days: u8, tolerance_log10: f32) -> bool {
        self.days >= min_days.max(1) && log10p(bytes) <= self.level_log10 + tolerance_log10
    }
}

/// log10(bytes + 1).
#[must_use]
pub fn log10p(bytes: u64) -> f32 {
    (bytes as f64 + 1.0).log10() as f32
}

/// (hour bin, UTC day since the epoch, wrapping) of an instant.
fn slot(t_ms: u64) -> (usize, u16) {
    ((t_ms / HOUR_MS % 24) as usize, (t_ms / DAY_MS) as u16)
}

/// Days from `from` to `to`, or `None` when `to` is the earlier one.
fn days_between(from: u16, to: u16) -> Option<u16> {
    let d = to.wrapping_sub(from);
    (d < 0x8000).then_some(d)
}

impl HourProfile {
    /// Records `bytes` (more than 0) sent by the host in the window starting at
    /// `window_start_ms`. Windows must be recorded in time order. A window of a day
    /// earlier than one already recorded in its bin is ignored.
    pub fn record(&mut self, window_start_ms: u64, bytes: u64, learn: &Learn) {
        let (h, day) = slot(window_start_ms);
        if self.pending[h] == 0.0 && self.days[h] == 0 {
            // Nothing was ever learned here, or all of it was forgotten.
            self.pending[h] = bytes as f32;
            self.pending_day[h] = day;
            return;
        }
        match days_between(self.pending_day[h], day) {
            Some(0) => self.pending[h] += bytes as f32,
            Some(gap) => {
                (self.level[h], self.days[h]) = self.folded(h, gap, learn);
                self.pending[h] = bytes as f32;
                self.pending_day[h] = day;
            }
            None => {}
        }
    }

    /// What the bin of the window starting at `window_start_ms` had learned from the days
    /// before that window's day.
    #[must_use]
    pub fn view(&self, window_start_ms: u64, learn: &Learn) -> BinView {
        let (h, day) = slot(window_start_ms);
        let (level_log10, days) = match days_between(self.pending_day[h], day) {
            _ if self.pending[h] == 0.0 && self.days[h] == 0 => (0.0, 0),
            Some(0) => (self.level[h], self.days[h]),
            Some(gap) => self.folded(h, gap, learn),
            // A day before one already recorded: nothing trustworthy.
            None => (0.0, 0),
        };
        BinView {
            hour: h as u8,
            days,
            level_log10,
        }
    }

    /// Bin `h` after folding in its pending day and then the `gap − 1` quiet days before
    /// the day `gap` days after it.
    fn folded(&self, h: usize, gap: u16, learn: &Learn) -> (f32, u8) {
        let (mut level, mut days) = (self.level[h], self.days[h]);
        let x = (f64::from(self.pending[h]) + 1.0).log10() as f32;
        if self.pending[h] > 0.0 && x >= learn.floor_log10 {
            let tol = learn.tolerance_log10.max(0.0);
            level = if days == 0 {
                x
            } else {
                level + ALPHA * (x - level).clamp(-tol, tol)
            };
            days = days.saturating_add(1).min(learn.days_cap);
        } else {
            days = days.saturating_sub(1);
        }
        let quiet = u8::try_from(gap.saturating_sub(1)).unwrap_or(u8::MAX);
        (level, days.saturating_sub(quiet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14 00:00 UTC.
    const DAY0: u64 = 1_699_920_000_000;
    const LEARN: Learn = Learn {
        floor_log10: 7.7,
        tolerance_log10: 0.3,
        days_cap: 7,
    };

    fn at(day: u64, hour: u64) -> u64 {
        DAY0 + day * DAY_MS + hour * HOUR_MS
    }

    #[test]
    fn a_daily_job_is_learned_from_earlier_days_only() {
        let mut p = HourProfile::default();
        for day in 0..6 {
            let v = p.view(at(day, 2), &LEARN);
            assert_eq!(v.days, u8::try_from(day).unwrap(), "day {day}");
            assert_eq!(v.hour, 2);
            p.record(at(day, 2), 700_000_000, &LEARN);
            // Its own day is never part of the view, whatever the order.
            assert_eq!(p.view(at(day, 2), &LEARN).days, v.days, "day {day}");
        }
        let v = p.view(at(6, 2), &LEARN);
        assert!((v.usual_bytes() / 7e8 - 1.0).abs() < 1e-3, "{v:?}");
        assert!(v.covers(700_000_000, 3, 0.3));
        assert!(v.covers(1_300_000_000, 3, 0.3), "under 2×");
        assert!(!v.covers(7_000_000_000, 3, 0.3), "10×");
        // Other hours learned nothing.
        for hour in (0..24).filter(|&h| h != 2) {
            assert_eq!(p.view(at(6, hour), &LEARN).days, 0, "{hour}:00");
        }
    }

    #[test]
    fn one_offs_and_quiet_days_are_not_habits() {
        let mut p = HourProfile::default();
        p.record(at(0, 2), 700_000_000, &LEARN);
        assert_eq!(p.view(at(1, 2), &LEARN).days, 1);
        // A day without the upload (small background only) is quiet, as is a day with
        // nothing at all at that hour.
        p.record(at(1, 2), 200_000, &LEARN);
        assert_eq!(p.view(at(2, 2), &LEARN).days, 0);
        assert_eq!(p.view(at(5, 2), &LEARN).days, 0);
        // Three days in a row, then two quiet days: back below three.
        let mut p = HourProfile::default();
        for day in 0..3 {
            p.record(at(day, 2), 700_000_000, &LEARN);
        }
        assert_eq!(p.view(at(3, 2), &LEARN).days, 3);
        assert_eq!(p.view(at(4, 2), &LEARN).days, 2);
        assert_eq!(p.view(at(5, 2), &LEARN).days, 1);
        // Every other day never gets there.
        let mut p = HourProfile::default();
        for day in (0..20).step_by(2) {
            p.record(at(day, 2), 700_000_000, &LEARN);
            assert!(p.view(at(day + 1, 2), &LEARN).days <= 1);
        }
    }

    #[test]
    fn a_weekday_job_stays_learned_over_the_weekend_and_the_count_is_capped() {
        let mut p = HourProfile::default();
        let mut seen = Vec::new();
        for day in 0..21 {
            seen.push(p.view(at(day, 23), &LEARN).days);
            if day % 7 < 5 {
                p.record(at(day, 23), 400_000_000, &LEARN);
            }
        }
        // Week one: 0..5, weekend 5, 4; week two's Monday starts at 3.
        assert_eq!(&seen[..8], &[0, 1, 2, 3, 4, 5, 4, 3]);
        assert!(seen[7..].iter().all(|&d| (3..=7).contains(&d)), "{seen:?}");
        assert_eq!(seen.iter().max(), Some(&7));
    }

    #[test]
    fn an_odd_day_moves_the_level_by_at_most_alpha_times_the_tolerance() {
        let mut p = HourProfile::default();
        for day in 0..4 {
            p.record(at(day, 2), 700_000_000, &LEARN);
        }
        let before = p.view(at(4, 2), &LEARN).level_log10;
        p.record(at(4, 2), 70_000_000_000, &LEARN);
        let after = p.view(at(5, 2), &LEARN).level_log10;
        assert!(
            (after - before - ALPHA * 0.3).abs() < 1e-4,
            "{before} → {after}"
        );
        // A failed job (a small upload) is a quiet day: the level stays.
        p.record(at(5, 2), 1_000_000, &LEARN);
        assert!((p.view(at(6, 2), &LEARN).level_log10 - after).abs() < 1e-6);
    }

    #[test]
    fn windows_shorter_than_an_hour_add_up() {
        let mut p = HourProfile::default();
        for day in 0..3 {
            for quarter in 0..4 {
                // 4 × 20 MB: each under the 50 MB floor, 80 MB in the hour.
                p.record(at(day, 2) + quarter * 15 * 60_000, 20_000_000, &LEARN);
            }
        }
        let v = p.view(at(3, 2), &LEARN);
        assert_eq!(v.days, 3);
        assert!((v.usual_bytes() / 8e7 - 1.0).abs() < 1e-3, "{v:?}");
    }
}
