//! Robust statistics for the detectors: median, MAD, quantiles, Bowley skew, robust z,
//! exponentially weighted mean and deviation.
//!
//! All functions are total: empty inputs give 0, and NaN never comes out of them for
//! finite inputs (`f64::total_cmp` sorts).

/// Sorts a slice of finite floats in place.
pub fn sort(v: &mut [f64]) {
    v.sort_unstable_by(f64::total_cmp);
}

/// The `q`-quantile (0 ≤ q ≤ 1) of a sorted slice, by linear interpolation (type 7, the
/// default of R and numpy); 0 for an empty slice.
#[must_use]
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "indices of in-memory slices"
)]
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let frac = pos - lo as f64;
            sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}

/// Median of a sorted slice.
#[must_use]
pub fn median_sorted(sorted: &[f64]) -> f64 {
    quantile_sorted(sorted, 0.5)
}

/// Median absolute deviation about `median` (unscaled). Uses `scratch` as work space.
#[must_use]
pub fn mad(values: &[f64], median: f64, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend(values.iter().map(|v| (v - median).abs()));
    sort(scratch);
    median_sorted(scratch)
}

/// Median and MAD of `values` (copied into `scratch`, which is left sorted by
/// deviation).
#[must_use]
pub fn median_mad(values: &[f64], scratch: &mut Vec<f64>) -> (f64, f64) {
    scratch.clear();
    scratch.extend_from_slice(values);
    sort(scratch);
    let median = median_sorted(scratch);
    let spread = mad(values, median, scratch);
    (median, spread)
}

/// Bowley (quartile) skewness of a sorted slice: (Q3 + Q1 − 2·Q2) / (Q3 − Q1), in
/// [−1, 1]; 0 when the quartiles coincide (a perfectly regular series).
#[must_use]
pub fn bowley_skew(sorted: &[f64]) -> f64 {
    let q1 = quantile_sorted(sorted, 0.25);
    let q2 = quantile_sorted(sorted, 0.5);
    let q3 = quantile_sorted(sorted, 0.75);
    let iqr = q3 - q1;
    if iqr <= f64::EPSILON * q2.abs().max(1.0) {
        0.0
    } else {
        ((q3 + q1 - 2.0 * q2) / iqr).clamp(-1.0, 1.0)
    }
}

/// Robust z-score: (x − median) / (1.4826 · max(MAD, `mad_floor`)). 1.4826 makes the MAD
/// a consistent estimator of σ for normal data (Rousseeuw & Croux 1993); the floor keeps a
/// perfectly flat history from turning every wiggle into z = ∞.
#[must_use]
pub fn robust_z(x: f64, median: f64, mad: f64, mad_floor: f64) -> f64 {
    (x - median) / (1.4826 * mad.max(mad_floor).max(f64::MIN_POSITIVE))
}

/// The factors of a run of `k` zero observations folded into an [`Ewma`]:
/// mean·keep and dev·keep + spread·mean, with keep = (1−α)^k and
/// spread = α·k·(1−α)^(k−1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZeroDecay {
    keep: f64,
    spread: f64,
}

impl ZeroDecay {
    /// The factors for `k` zeros (capped at 100,000) with weight `alpha`; `None` for none.
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "k is capped")]
    pub fn new(k: u64, alpha: f64) -> Option<Self> {
        if k == 0 {
            return None;
        }
        let k = k.min(100_000);
        let n = i32::try_from(k).unwrap_or(100_000);
        let keep_prev = (1.0 - alpha).powi(n - 1);
        Some(Self {
            keep: keep_prev * (1.0 - alpha),
            spread: alpha * k as f64 * keep_prev,
        })
    }
}

/// Exponentially weighted mean and mean absolute deviation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ewma {
    /// Smoothed mean.
    pub mean: f32,
    /// Smoothed mean absolute deviation from the mean (σ ≈ 1.2533 × this for normal data).
    pub dev: f32,
}

impl Ewma {
    /// Folds in one observation with weight `alpha`.
    #[inline]
    #[expect(clippy::cast_possible_truncation, reason = "f32 state is enough")]
    pub fn update(&mut self, x: f64, alpha: f64) {
        let mean = f64::from(self.mean);
        let dev = f64::from(self.dev);
        let err = x - mean;
        self.mean = (mean + alpha * err) as f32;
        self.dev = (dev + alpha * (err.abs() - dev)) as f32;
    }

    /// Folds in `k` observations of zero at once, in closed form: `k` calls of
    /// [`update`](Self::update) with 0 give `mean·(1−α)^k` and, since the j-th adds
    /// `α·|0 − mean·(1−α)^j|` to a deviation that decays by `(1−α)`,
    /// `dev·(1−α)^k + α·k·(1−α)^(k−1)·mean`.
    pub fn decay_zeros(&mut self, k: u64, alpha: f64) {
        if let Some(f) = ZeroDecay::new(k, alpha) {
            self.apply(f);
        }
    }

    /// [`decay_zeros`](Self::decay_zeros) with its factors computed once, for several
    /// baselines decayed by the same run.
    #[expect(clippy::cast_possible_truncation, reason = "f32 state is enough")]
    pub fn apply(&mut self, f: ZeroDecay) {
        let mean = f64::from(self.mean);
        self.dev = (f64::from(self.dev) * f.keep + f.spread * mean) as f32;
        self.mean = (mean * f.keep) as f32;
    }

    /// z of `x` against this baseline, with a deviation floor.
    #[must_use]
    pub fn z(&self, x: f64, dev_floor: f64) -> f64 {
        (x - f64::from(self.mean)) / (1.2533 * f64::from(self.dev).max(dev_floor).max(1e-9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_skew_and_mad() {
        let mut v: Vec<f64> = (1..=9).map(f64::from).collect();
        sort(&mut v);
        assert!((median_sorted(&v) - 5.0).abs() < 1e-12);
        assert!(bowley_skew(&v).abs() < 1e-12);
        let mut scratch = Vec::new();
        let (m, d) = median_mad(&v, &mut scratch);
        assert!((m - 5.0).abs() < 1e-12 && (d - 2.0).abs() < 1e-12);
        let mut skewed = vec![1.0, 1.0, 1.0, 2.0, 10.0, 20.0];
        sort(&mut skewed);
        assert!(bowley_skew(&skewed) > 0.5);
        assert!(bowley_skew(&[3.0, 3.0, 3.0]).abs() < 1e-12);
        assert!(robust_z(10.0, 5.0, 0.0, 1.0) > 3.0);
    }

    #[test]
    fn ewma_tracks_and_decays() {
        let mut e = Ewma::default();
        for _ in 0..200 {
            e.update(100.0, 0.1);
        }
        assert!((f64::from(e.mean) - 100.0).abs() < 0.1);
        e.decay_zeros(1000, 0.1);
        assert!(e.mean < 1.0);
    }

    #[test]
    fn decaying_zeros_in_closed_form_equals_folding_them_one_by_one() {
        for k in [1u64, 2, 7, 40] {
            let mut stepped = Ewma::default();
            for x in [50.0, 80.0, 20.0, 400.0] {
                stepped.update(x, 0.2);
            }
            let mut closed = stepped;
            for _ in 0..k {
                stepped.update(0.0, 0.2);
            }
            closed.decay_zeros(k, 0.2);
            assert!(
                (stepped.mean - closed.mean).abs() <= 1e-3 * stepped.mean.max(1.0),
                "k={k}"
            );
            assert!(
                (stepped.dev - closed.dev).abs() <= 1e-3 * stepped.dev.max(1.0),
                "k={k}"
            );
        }
    }
}
