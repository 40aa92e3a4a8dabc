//! When to stop starting images: before the Lambda deadline (or a time budget
//! outside Lambda), leaving time for the images in flight to finish and the
//! summary to be written.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Deadline {
    at: Option<Instant>,
    /// Fixed reserve: writing the summary, returning, clock skew.
    margin: Duration,
}

impl Deadline {
    pub fn none() -> Self {
        Self { at: None, margin: Duration::ZERO }
    }

    pub fn at(at: Instant, margin: Duration) -> Self {
        Self { at: Some(at), margin }
    }

    pub fn after(budget: Duration, margin: Duration) -> Self {
        Self::at(Instant::now() + budget, margin)
    }

    /// From a wall-clock deadline (the Lambda context's).
    pub fn at_system(at: std::time::SystemTime, margin: Duration) -> Self {
        let left = at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
        Self::after(left, margin)
    }

    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.at.map(|a| a.saturating_duration_since(now))
    }

    /// May another image start now? The slowest image seen (×2: it may be
    /// slower still, and images in flight finish first) plus the margin must
    /// fit in the time left. `started` is how many images this run started:
    /// the first always starts, so every invocation makes progress.
    pub fn may_start(&self, now: Instant, slowest: Duration, started: usize) -> bool {
        let Some(left) = self.remaining(now) else { return true };
        if started == 0 {
            return true;
        }
        left > slowest * 2 + self.margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_when_twice_the_slowest_image_plus_margin_no_longer_fits() {
        let t0 = Instant::now();
        let d = Deadline::at(t0 + Duration::from_secs(10), Duration::from_secs(2));
        assert!(d.may_start(t0, Duration::from_secs(3), 5)); // 10 > 3*2 + 2
        assert!(!d.may_start(t0, Duration::from_secs(4), 5)); // 10 = 4*2 + 2
        assert!(!d.may_start(t0 + Duration::from_secs(9), Duration::ZERO, 1));
        // The first image of a run always starts.
        assert!(d.may_start(t0 + Duration::from_secs(20), Duration::from_secs(4), 0));
        assert!(Deadline::none().may_start(t0, Duration::from_secs(1000), 9));
    }
}
