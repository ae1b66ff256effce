//! [`LogThrottle`]: lets a repeated warning (a limit being hit, say) be logged at most once a
//! second, with the number of occurrences since the last line. Shared by any thread; holds
//! two words. Must not log itself: the caller words the line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct LogThrottle {
    last: Mutex<Option<Instant>>,
    count: AtomicU64,
}

impl LogThrottle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one occurrence. Returns how many occurred since the last line (this one
    /// included) when a line may be logged now, `None` when it must stay quiet.
    pub fn hit(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.duration_since(t) < PERIOD) {
            return None;
        }
        *last = Some(now);
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count() {
        let t = LogThrottle::new();
        assert_eq!(t.hit(), Some(1));
        assert_eq!(t.hit(), None);
        assert_eq!(t.hit(), None);
        *t.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now().checked_sub(PERIOD);
        assert_eq!(t.hit(), Some(3));
    }
}
