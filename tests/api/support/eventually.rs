//! Waiting for what happens in the background, bounded: [`eventually`] polls a check
//! until it gives a value and fails naming what was awaited when the time runs out;
//! [`within`] is the same wait for a test that asserts on the outcome itself.

use std::time::Duration;

/// How often [`eventually`] polls.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `check` every [`POLL`] until it gives `Some`; that value. Panics naming `what`
/// when `limit` passes first.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    eventually_every(limit, POLL, what, check).await
}

/// [`eventually`], polling every `every` (for a check that is slow or costly to make).
pub async fn eventually_every<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    within(limit, every, check)
        .await
        .unwrap_or_else(|| panic!("not within {limit:?}: {what}"))
}

/// Polls `check` every `every` until it gives `Some` (that value), or `limit` passes
/// (`None`).
pub async fn within<T>(
    limit: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(limit, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(every).await;
        }
    })
    .await
    .ok()
}

/// [`eventually_every`] for a check that is a plain function (a command run, a flag
/// read). Its wait is `Send` whatever the check borrows, so a spawned task can make it
/// (the compiler cannot yet prove that of an async closure's borrowing future).
pub async fn eventually_sync<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let waited = tokio::time::timeout(limit, async {
        loop {
            if let Some(value) = check() {
                return value;
            }
            tokio::time::sleep(every).await;
        }
    });
    waited
        .await
        .unwrap_or_else(|_| panic!("not within {limit:?}: {what}"))
}
