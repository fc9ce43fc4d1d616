//! Calls gathered into rounds: callers queue a job and wait for its answer; one task
//! takes everything queued while the previous round was in flight and runs it as one
//! round (for Redis: one script call per slot instead of one per job). Under light load
//! a round holds one job and costs what a direct call would; under load the rounds grow,
//! and Redis runs one script, one parse and one reply for many jobs.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::EngineError;
use crate::tasks::Tasks;

/// Jobs waiting for a round; when full, callers wait.
const QUEUE: usize = 8192;
/// Jobs in one round at most.
pub(super) const ROUND_MAX: usize = 256;

/// Where a job's answer goes: its caller, or nowhere (a failure is logged).
type Reply<R> = Option<oneshot::Sender<Result<R, EngineError>>>;
type Queue<J, R> = Arc<tokio::sync::Mutex<mpsc::Receiver<(J, Reply<R>)>>>;

/// The queue of one kind of call, and the task that runs it in rounds.
pub(super) struct Batcher<J, R> {
    tx: mpsc::Sender<(J, Reply<R>)>,
}

impl<J: Send + 'static, R: Send + 'static> Batcher<J, R> {
    /// Starts the rounds on `tasks` (supervised: a restarted task takes the same queue).
    /// `run` answers every job of a round, in order.
    pub(super) fn start<F, Fut>(tasks: &Tasks, name: &'static str, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<R, EngineError>>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        let queue: Queue<J, R> = Arc::new(tokio::sync::Mutex::new(rx));
        let run = Arc::new(run);
        let cancel = tasks.cancel().clone();
        tasks.supervise(name, move || {
            rounds(name, queue.clone(), run.clone(), cancel.clone())
        });
        Self { tx }
    }

    /// Queues `job` and waits for its round's answer.
    pub(super) async fn call(&self, job: J) -> Result<R, EngineError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((job, Some(reply))).await.is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Queues `job` without waiting for its answer (only for room in the queue); a
    /// failure is logged. Whether it was queued (not when the replica is stopping).
    pub(super) async fn cast(&self, job: J) -> bool {
        self.tx.send((job, None)).await.is_ok()
    }
}

fn stopped() -> EngineError {
    EngineError::Unavailable("the replica is stopping".into())
}

/// Round after round until the replica stops; then what is queued gets a last round.
async fn rounds<J, R, F, Fut>(
    name: &'static str,
    queue: Queue<J, R>,
    run: Arc<F>,
    cancel: CancellationToken,
) where
    F: Fn(Vec<J>) -> Fut,
    Fut: Future<Output = Vec<Result<R, EngineError>>>,
{
    let mut queue = queue.lock().await;
    let mut batch = Vec::with_capacity(ROUND_MAX);
    loop {
        let open = tokio::select! {
            n = queue.recv_many(&mut batch, ROUND_MAX) => n > 0,
            _ = cancel.cancelled() => {
                queue.close();
                while queue.recv_many(&mut batch, ROUND_MAX).await > 0 {
                    one_round(name, &*run, &mut batch).await;
                }
                return;
            }
        };
        if !open {
            return;
        }
        one_round(name, &*run, &mut batch).await;
    }
}

async fn one_round<J, R, F, Fut>(name: &'static str, run: &F, batch: &mut Vec<(J, Reply<R>)>)
where
    F: Fn(Vec<J>) -> Fut,
    Fut: Future<Output = Vec<Result<R, EngineError>>>,
{
    let (jobs, replies): (Vec<J>, Vec<Reply<R>>) = batch.drain(..).unzip();
    let results = run(jobs).await;
    for (reply, result) in replies.into_iter().zip(results) {
        match (reply, result) {
            (Some(reply), result) => {
                let _ = reply.send(result);
            }
            // The job stays undone (an ack: the notification stays in the inbox and
            // comes again on a later connect).
            (None, Err(e)) => tracing::warn!(task = name, error = %e, "not recorded"),
            (None, Ok(_)) => {}
        }
    }
}

/// Splits `jobs` into groups of the same `slot` (one group when `slot` is `None`
/// for all, as off a Cluster), keeping each job's position: `(positions, jobs)`.
pub(super) fn by_slot<J>(
    jobs: Vec<J>,
    slot: impl Fn(&J) -> Option<u16>,
) -> Vec<(Vec<usize>, Vec<J>)> {
    let mut groups: Vec<(Option<u16>, Vec<usize>, Vec<J>)> = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let s = slot(&job);
        match groups.iter_mut().find(|g| g.0 == s) {
            Some(g) => {
                g.1.push(i);
                g.2.push(job);
            }
            None => groups.push((s, vec![i], vec![job])),
        }
    }
    groups.into_iter().map(|(_, at, jobs)| (at, jobs)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_positions() {
        let groups = by_slot(vec![1, 2, 3, 4, 5], |n| Some((n % 2) as u16));
        assert_eq!(
            groups,
            vec![(vec![0, 2, 4], vec![1, 3, 5]), (vec![1, 3], vec![2, 4])]
        );
        let one = by_slot(vec![1, 2, 3], |_| None);
        assert_eq!(one, vec![(vec![0, 1, 2], vec![1, 2, 3])]);
    }

    #[tokio::test]
    async fn every_caller_gets_its_own_answer() {
        let tasks = Tasks::new();
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::start(
            &tasks,
            "test_rounds",
            move |jobs: Vec<u32>| {
                seen.lock().unwrap().push(jobs.len());
                async move { jobs.into_iter().map(|j| Ok(j * 10)).collect() }
            },
        ));
        let calls = (0..500).map(|j| {
            let b = batcher.clone();
            tokio::spawn(async move { (j, b.call(j).await.unwrap()) })
        });
        for call in futures::future::join_all(calls).await {
            let (j, answer) = call.unwrap();
            assert_eq!(answer, j * 10);
        }
        // Cast jobs run too (their answers go nowhere), in order with the rest.
        assert!(batcher.cast(7).await);
        assert_eq!(batcher.call(8).await.unwrap(), 80);
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 502);
        assert!(sizes.iter().all(|n| *n <= ROUND_MAX));
        tasks.cancel().cancel();
    }
}
