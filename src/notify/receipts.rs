//! Recording what became of each notification (SPEC §3 receipts) without costing the
//! sending or delivery path a database write: senders hand pending receipts, and
//! sessions deliveries and acks, to a bounded queue (full: dropped and counted,
//! `locallife_receipts_dropped_total`); one task per replica merges what it took per
//! message and recipient and writes it as one statement, every 200 ms at most.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::UserId;
use crate::engine::MsgId;
use crate::store::receipts::{self, Mark, Update};
use crate::tasks::Tasks;

const QUEUE: usize = 65_536;
const BATCH: usize = 5_000;
const EVERY: Duration = Duration::from_millis(200);

type Item = Update;

#[derive(Clone)]
pub struct Receipts {
    tx: mpsc::Sender<Item>,
}

impl Receipts {
    /// Starts the writing task, supervised on `tasks`.
    pub fn start(db: deadpool_postgres::Pool, tasks: &Tasks) -> Receipts {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let cancel = tasks.cancel().clone();
        tasks.supervise("receipts", move || {
            run(rx.clone(), db.clone(), cancel.clone())
        });
        Receipts { tx }
    }

    /// `user` was delivered `id` (a Pong to a Ping written after it), acked it, or
    /// had it withdrawn.
    pub fn record(&self, kind: Mark, id: MsgId, user: UserId) {
        let now = crate::time::unix_ms();
        // Receipts are filed by their id's time, and pruned by it: a mark of an id
        // dated far from now could never be pruned, so none is stored.
        if !near_now(id.ms, now) {
            metrics::counter!("locallife_receipts_dropped_total").increment(1);
            return;
        }
        self.queue(Update::mark(kind, id.to_string(), user, now as i64));
    }

    /// A receipt's pending row (or any other part of it).
    pub fn queue(&self, update: Update) {
        if self.tx.try_send(update).is_err() {
            metrics::counter!("locallife_receipts_dropped_total").increment(1);
        }
    }
}

/// How far a message id's time may lie ahead of now (clock skew between replicas).
const AHEAD: u64 = 5 * 60 * 1000;
/// How old a notification may be and still get a mark: the longest ttl (7 days) and a
/// day's margin, within the receipts' 8-day life.
const BEHIND: u64 = 8 * 86_400 * 1000;

/// Whether a message id of `id_ms` may still get a receipt at `now_ms`.
fn near_now(id_ms: u64, now_ms: u64) -> bool {
    id_ms <= now_ms.saturating_add(AHEAD) && id_ms.saturating_add(BEHIND) >= now_ms
}

async fn run(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Item>>>,
    db: deadpool_postgres::Pool,
    cancel: CancellationToken,
) {
    let mut rx = rx.lock().await;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n == 0,
            _ = cancel.cancelled() => true,
        };
        // A moment for more to arrive: one statement for many marks.
        if !stopping {
            let _ = tokio::time::timeout(EVERY, async {
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    if rx.recv_many(&mut batch, room).await == 0 {
                        return;
                    }
                }
            })
            .await;
        } else {
            while let Ok(item) = rx.try_recv() {
                batch.push(item);
            }
        }
        write(&db, &mut batch).await;
        if stopping {
            return;
        }
    }
}

async fn write(db: &deadpool_postgres::Pool, batch: &mut Vec<Item>) {
    let rows = receipts::merged(batch.drain(..));
    let written = async {
        let client = db.get().await?;
        receipts::write(&client, &rows).await
    };
    match written.await {
        Ok(n) => metrics::counter!("locallife_receipts_written_total").increment(n),
        Err(e) => {
            metrics::counter!("locallife_receipts_dropped_total").increment(rows.len() as u64);
            tracing::warn!(error = %e, receipts = rows.len(), "receipts not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_dated_near_now_get_marks() {
        let now = 1_800_000_000_000;
        assert!(near_now(now, now));
        assert!(near_now(now - 7 * 86_400_000, now));
        assert!(!near_now(now + 366 * 86_400_000, now), "a year ahead");
        assert!(
            !near_now(now - 9 * 86_400_000, now),
            "older than receipts live"
        );
        assert!(!near_now(0, now));
    }
}
