//! A small deterministic random source and the few distributions the generator needs.
//!
//! Hand-written (xoshiro256** seeded through splitmix64) rather than `rand`, so that a seed
//! gives the same scenario on every platform and every future build: `rand`'s `StdRng` makes
//! no such promise across versions.

/// xoshiro256** (Blackman and Vigna), seeded from one `u64` through splitmix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut st = seed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Self { s }
    }

    /// An independent stream derived from this seed and a label, so that adding draws to
    /// one part of the generator does not shift every other part.
    #[must_use]
    pub fn fork(seed: u64, label: &str) -> Self {
        // FNV-1a of the label, mixed with the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self::new(seed ^ h.rotate_left(17))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    #[expect(
        clippy::cast_precision_loss,
        reason = "53 random bits are exactly representable"
    )]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`; `lo` when the range is empty.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in `[lo, hi]` (inclusive); `lo` when `hi < lo`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo + 1;
        if span == 0 {
            return self.next_u64();
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant here.
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64
    }

    /// Index in `[0, n)`; 0 when `n` is 0.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "result < n, which is a usize"
    )]
    pub fn index(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        self.range(0, n as u64 - 1) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and log-space standard deviation.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Binomial(n, p): exact by inversion when the mean is small, a rounded normal
    /// approximation (clamped to `[0, n]`) otherwise.
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::many_single_char_names,
        reason = "counts are far below 2^52; the normal draw is clamped to [0, n]; the \
                  textbook names n, p, q, k, u"
    )]
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let mean = n as f64 * p;
        if mean < 30.0 {
            // Inversion: walk the pmf from k = 0.
            let q = 1.0 - p;
            let ratio = p / q;
            let mut pk = q.powf(n as f64);
            if pk <= 0.0 {
                // Underflow (huge n, small p): fall through to Poisson by inversion.
                return self.poisson(mean).min(n);
            }
            let mut cdf = pk;
            let u = self.f64();
            let mut k = 0u64;
            while u > cdf && k < n {
                pk *= ratio * (n - k) as f64 / (k + 1) as f64;
                k += 1;
                cdf += pk;
                if pk < 1e-300 {
                    break;
                }
            }
            return k;
        }
        let sd = (mean * (1.0 - p)).sqrt();
        let x = (mean + sd * self.normal()).round();
        x.clamp(0.0, n as f64) as u64
    }

    /// Poisson by inversion (small means only).
    fn poisson(&mut self, mean: f64) -> u64 {
        let mut pk = (-mean).exp();
        let mut cdf = pk;
        let u = self.f64();
        let mut k = 0u64;
        while u > cdf && k < 10_000 {
            k += 1;
            #[expect(clippy::cast_precision_loss, reason = "k < 10000")]
            {
                pk *= mean / k as f64;
            }
            cdf += pk;
        }
        k
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.index(i + 1);
            v.swap(i, j);
        }
    }
}

/// Draws indices in `[0, n)` with Zipf(s) popularity: index 0 is the most popular.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A table for `n` items with exponent `s`.
    #[must_use]
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for i in 0..n {
            #[expect(clippy::cast_precision_loss, reason = "n is small")]
            let w = 1.0 / ((i + 1) as f64).powf(s);
            total += w;
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.f64();
        self.cdf
            .partition_point(|&c| c < u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_binomial_means_are_right() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut r = Rng::new(1);
        for (n, p) in [(10u64, 0.01), (1000, 0.01), (100_000, 0.01), (50, 0.5)] {
            let draws = 4000;
            let sum: u64 = (0..draws).map(|_| r.binomial(n, p)).sum();
            #[expect(clippy::cast_precision_loss, reason = "test")]
            let mean = sum as f64 / f64::from(draws);
            #[expect(clippy::cast_precision_loss, reason = "test")]
            let want = n as f64 * p;
            assert!(
                (mean - want).abs() < 0.05 * want + 0.05,
                "n={n} p={p}: {mean} vs {want}"
            );
        }
        let z = Zipf::new(100, 1.0);
        let top = (0..10_000).filter(|_| z.sample(&mut r) == 0).count();
        assert!(top > 1500 && top < 2300, "{top}");
    }
}
