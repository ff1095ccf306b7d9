//! Summaries of repeated timings: median, minimum, maximum, and the ratio of two medians.

/// The median, minimum and maximum of a set of samples, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The middle sample; with an even count, the mean of the two middle ones.
    pub median: f64,
    /// The fastest sample.
    pub min: f64,
    /// The slowest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none. NaNs are not expected (timings come
    /// from `Instant`) and sort last if they appear.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: s[0],
            max: s[n - 1],
        })
    }
}

/// `a`'s median over `b`'s: below 1.0 when `a` is faster. `None` when either side has no
/// samples or `b`'s median is not positive.
pub fn ratio(a: Option<Summary>, b: Option<Summary>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

/// A duration in seconds with about three significant digits and a unit: `812 µs`,
/// `34.1 ms`, `2.35 s`, `41.2 s`.
pub fn fmt_secs(s: f64) -> String {
    let (scale, unit) = unit_of(s);
    format!("{} {unit}", fmt_num(s * scale))
}

/// `median (min–max)`, the range in the median's unit without repeating it.
pub fn fmt_summary(s: &Summary) -> String {
    let (scale, unit) = unit_of(s.median);
    format!(
        "{} {unit} ({}–{})",
        fmt_num(s.median * scale),
        fmt_num(s.min * scale),
        fmt_num(s.max * scale)
    )
}

/// The unit a duration of `s` seconds reads best in, and the factor into it.
fn unit_of(s: f64) -> (f64, &'static str) {
    if s < 1e-3 {
        (1e6, "µs")
    } else if s < 1.0 {
        (1e3, "ms")
    } else {
        (1.0, "s")
    }
}

/// A number with three significant digits for values from 1 to 999 (more digits above).
fn fmt_num(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_odd_count_is_the_middle_sample() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 2.5,
                min: 1.0,
                max: 4.0
            }
        );
    }

    #[test]
    fn one_sample_is_its_own_median_min_and_max() {
        let s = Summary::of(&[0.25]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 0.25,
                min: 0.25,
                max: 0.25
            }
        );
    }

    #[test]
    fn no_samples_give_no_summary_and_no_ratio() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(ratio(None, Summary::of(&[1.0])), None);
        assert_eq!(ratio(Summary::of(&[1.0]), None), None);
    }

    #[test]
    fn ratio_is_median_over_median() {
        let a = Summary::of(&[1.0, 2.0, 100.0]);
        let b = Summary::of(&[4.0, 4.0, 0.5]);
        assert_eq!(ratio(a, b), Some(0.5));
        assert_eq!(ratio(Summary::of(&[1.0]), Summary::of(&[0.0])), None);
    }

    #[test]
    fn durations_print_with_three_significant_digits() {
        assert_eq!(fmt_secs(0.000_812), "812 µs");
        assert_eq!(fmt_secs(0.003_456), "3.46 ms");
        assert_eq!(fmt_secs(0.034_12), "34.1 ms");
        assert_eq!(fmt_secs(0.5), "500 ms");
        assert_eq!(fmt_secs(2.345_6), "2.35 s");
        assert_eq!(fmt_secs(41.23), "41.2 s");
        assert_eq!(fmt_secs(312.4), "312 s");
    }

    #[test]
    fn a_summary_prints_its_range_in_the_median_unit() {
        let s = Summary::of(&[12.04, 12.5, 11.9]).unwrap();
        assert_eq!(fmt_summary(&s), "12.0 s (11.9–12.5)");
        let s = Summary::of(&[0.0341, 0.0352, 0.0339]).unwrap();
        assert_eq!(fmt_summary(&s), "34.1 ms (33.9–35.2)");
        let s = Summary::of(&[1.2, 0.9, 1.5]).unwrap();
        assert_eq!(fmt_summary(&s), "1.20 s (0.90–1.50)");
    }
}
