//! Socket admissions read from PostgreSQL in rounds: each `GET /v1/ws` needs its user's
//! [`AdmissionFacts`], and when many sockets connect at once (a redeploy, every client
//! reconnecting after a replica died) one query per socket made the database the
//! bottleneck of the storm and its pool the queue. Here a connect queues its user and
//! waits; one task takes what is queued and reads it with one query
//! ([`super::users::admission_many`]), with up to [`ROUNDS_IN_FLIGHT`] such queries at
//! once. Under light load a round holds one user and costs what a direct query would.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::users::{admission_many, AdmissionFacts};
use super::StoreError;
use crate::domain::UserId;
use crate::tasks::Tasks;

/// Users in one query at most.
const ROUND_MAX: usize = 500;
/// Queries in flight at once: a round waits only when this many are running.
const ROUNDS_IN_FLIGHT: usize = 4;
/// Connects waiting for a round; when full, connects wait for room.
const QUEUE: usize = 8192;

type Answer = Result<Option<AdmissionFacts>, StoreError>;
type Job = (UserId, oneshot::Sender<Answer>);
type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

/// The queue of admissions and the task that reads them in rounds.
pub struct Admissions {
    tx: mpsc::Sender<Job>,
}

impl Admissions {
    /// Starts the rounds on `tasks` (supervised: a restarted task takes the same queue).
    pub fn start(tasks: &Tasks, db: Pool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(rx));
        let cancel = tasks.cancel().clone();
        tasks.supervise("admissions", move || {
            rounds(queue.clone(), db.clone(), cancel.clone())
        });
        Self { tx }
    }

    /// What `user`'s sockets are admitted by (`None`: no such user), read in the next
    /// round.
    pub async fn facts(&self, user: UserId) -> Answer {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((user, reply)).await.is_err() {
            return Err(stopping());
        }
        answer.await.unwrap_or_else(|_| Err(stopping()))
    }
}

fn stopping() -> StoreError {
    StoreError::Unavailable("the replica is stopping".into())
}

/// Rounds until the replica stops. A round cut short by the stop drops its replies:
/// its connects are answered 503 and reconnect elsewhere.
async fn rounds(queue: Queue, db: Pool, cancel: CancellationToken) {
    let mut queue = queue.lock().await;
    let mut running = JoinSet::new();
    loop {
        while running.len() >= ROUNDS_IN_FLIGHT {
            running.join_next().await;
        }
        let mut batch = Vec::new();
        let got = tokio::select! {
            n = queue.recv_many(&mut batch, ROUND_MAX) => n,
            _ = cancel.cancelled() => 0,
        };
        if got == 0 {
            return;
        }
        // Finished rounds are reaped as new ones start.
        while running.try_join_next().is_some() {}
        running.spawn(one_round(db.clone(), batch));
    }
}

async fn one_round(db: Pool, jobs: Vec<Job>) {
    let mut users: Vec<UserId> = jobs.iter().map(|(u, _)| *u).collect();
    users.sort_unstable_by_key(|u| u.0);
    users.dedup();
    match admission_many(&db, &users).await {
        Ok(facts) => answer(jobs, &facts),
        Err(e) => {
            // Every connect of the round gets the failure: 503, and it reconnects.
            let message = e.to_string();
            for (_, reply) in jobs {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

fn answer(jobs: Vec<Job>, facts: &HashMap<UserId, AdmissionFacts>) {
    for (user, reply) in jobs {
        // A connect that gave up meanwhile dropped its receiver: nothing to do.
        let _ = reply.send(Ok(facts.get(&user).cloned()));
    }
}
