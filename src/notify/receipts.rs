//! Recording what became of each notification (SPEC §3 receipts) without costing the
//! delivery path a database write: sessions hand marks to a bounded queue (full: the
//! mark is dropped and counted, `locallife_receipts_dropped_total`), and one task per
//! replica writes them in batches, one statement per kind, every 200 ms at most.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::UserId;
use crate::engine::MsgId;
use crate::store::receipts::{self, Mark};
use crate::tasks::Tasks;

const QUEUE: usize = 65_536;
const BATCH: usize = 5_000;
const EVERY: Duration = Duration::from_millis(200);

type Item = (Mark, String, UserId, i64);

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

    /// `user` was delivered `id` (a Pong to a Ping written after it), or acked it.
    pub fn record(&self, kind: Mark, id: MsgId, user: UserId) {
        let at = crate::time::unix_ms() as i64;
        if self.tx.try_send((kind, id.to_string(), user, at)).is_err() {
            metrics::counter!("locallife_receipts_dropped_total").increment(1);
        }
    }
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
    for kind in [Mark::Delivered, Mark::Acked, Mark::Withdrawn] {
        let of_kind: Vec<(String, UserId, i64)> = batch
            .iter()
            .filter(|(k, ..)| *k == kind)
            .map(|(_, m, u, t)| (m.clone(), *u, *t))
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        match receipts::mark(db, kind, &of_kind).await {
            Ok(n) => metrics::counter!("locallife_receipts_written_total").increment(n),
            Err(e) => {
                metrics::counter!("locallife_receipts_dropped_total")
                    .increment(of_kind.len() as u64);
                tracing::warn!(error = %e, marks = of_kind.len(), "receipts not recorded");
            }
        }
    }
    batch.clear();
}
