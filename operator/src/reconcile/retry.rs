//! Retries of single API calls and the backoff between reconciles.

use std::time::Duration;

/// 1 s, 2 s, 4 s … capped at 5 minutes, each scaled by a random 0.5–1.5.
pub fn backoff(attempts: u32) -> Duration {
    let base = 2f64
        .powi(attempts.saturating_sub(1).min(9) as i32)
        .min(300.0);
    let mut byte = [0u8; 1];
    let jitter = match getrandom::fill(&mut byte) {
        Ok(()) => 0.5 + f64::from(byte[0]) / 255.0,
        Err(_) => 1.0,
    };
    Duration::from_secs_f64(base * jitter)
}

/// Errors worth another try within the same reconcile: the server was
/// briefly unable (5xx, 429), a write raced another (409), or the
/// connection failed.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs one idempotent API call, retrying transient failures a few times
/// with short jittered delays, so a flaky API server costs milliseconds
/// rather than a whole reconcile and its backoff.
pub(super) async fn retry<T, F, Fut>(mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Err(error) if attempt < 4 && is_transient(&error) => {
                attempt += 1;
                let delay = Duration::from_millis(25 << attempt).mul_f64(backoff(1).as_secs_f64());
                tokio::time::sleep(delay).await;
            }
            result => return result,
        }
    }
}
