//! Waiting on a condition with a deadline: what every test here does
//! instead of sleeping for a fixed time.

use std::future::Future;
use std::time::Duration;

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(25);

/// Checks `check` until it returns `Some`, and returns that value; panics
/// naming `what` once `limit` has passed.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_every(what, limit, POLL, check).await
}

/// [`eventually`], checking every `poll` (a benchmark that must not load
/// the API server more than it measures).
pub async fn eventually_every<T, F, Fut>(
    what: &str,
    limit: Duration,
    poll: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value() {
        let mut calls = 0;
        let value = eventually("the third call", Duration::from_secs(5), || {
            calls += 1;
            let now = calls;
            async move { (now == 3).then_some(now) }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for nothing")]
    async fn panics_naming_what_it_waited_for() {
        eventually("nothing", Duration::from_millis(60), || async {
            None::<()>
        })
        .await;
    }
}
