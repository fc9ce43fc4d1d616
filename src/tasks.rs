//! Every background task of a replica has an owner: [`Tasks`].
//!
//! One tracker and one cancellation token per replica. A task is spawned through
//! [`Tasks::spawn`] (runs once: a retry, a replay, a socket session) or
//! [`Tasks::supervise`] (must run for the replica's life: restarted after a panic). On
//! shutdown the application cancels the token, closes the tracker and waits for every
//! task with a deadline ([`Tasks::shutdown`]), so nothing is left running detached.
//!
//! A panic is logged and counted (`locallife_task_panics_total{task}`), and reported to
//! the hook set with [`Tasks::on_panic`] (the application raises a system alert there;
//! the hook exists because alerts are themselves built on tasks).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type PanicHook = Box<dyn Fn(&'static str) + Send + Sync>;

/// Cheap to clone (two `Arc`s).
#[derive(Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
    hook: Arc<OnceLock<PanicHook>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

/// The first restart of a panicked task waits this long, doubling up to [`RESTART_MAX`]:
/// a task that panics on every start cannot spin.
const RESTART_MIN: Duration = Duration::from_millis(100);
const RESTART_MAX: Duration = Duration::from_secs(10);

impl Tasks {
    pub fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            hook: Arc::new(OnceLock::new()),
        }
    }

    /// Cancelled when the replica stops: every loop selects on it.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn is_stopping(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Called with the task's name after a panic (once set; later calls are ignored).
    pub fn on_panic(&self, hook: impl Fn(&'static str) + Send + Sync + 'static) {
        let _ = self.hook.set(Box::new(hook));
    }

    /// How many tracked tasks are running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Spawns a task that runs once. A panic is logged and counted; the handle may be
    /// dropped (the tracker still owns the task) or awaited.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = self.tracker.spawn(task);
        let this = self.clone();
        self.tracker.spawn(async move {
            if let Err(e) = inner.await {
                if e.is_panic() {
                    this.panicked(name);
                }
            }
        })
    }

    /// Spawns a task without a watcher: for the many small ones (one per socket) whose
    /// panic is already caught where they run. Still tracked and awaited on shutdown.
    pub fn spawn_quiet<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Blocking work on tokio's blocking pool, tracked like the rest.
    pub fn spawn_blocking<F>(&self, task: F) -> JoinHandle<()>
    where
        F: FnOnce() + Send + 'static,
    {
        self.tracker.spawn_blocking(task)
    }

    /// Spawns a task that must run until the replica stops: `make` builds it again after
    /// a panic (with a growing pause), until the token is cancelled. A task that returns
    /// normally is not restarted.
    pub fn supervise<M, F>(&self, name: &'static str, make: M)
    where
        M: Fn() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        self.tracker.spawn(async move {
            let mut pause = RESTART_MIN;
            loop {
                let result = this.tracker.spawn(make()).await;
                match result {
                    Err(e) if e.is_panic() => {
                        this.panicked(name);
                        metrics::counter!("locallife_task_restarts_total", "task" => name)
                            .increment(1);
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = this.cancel.cancelled() => return,
                        }
                        pause = (pause * 2).min(RESTART_MAX);
                        tracing::warn!(task = name, "restarting a background task");
                    }
                    _ => return,
                }
            }
        });
    }

    fn panicked(&self, name: &'static str) {
        tracing::error!(task = name, "background task panicked");
        metrics::counter!("locallife_task_panics_total", "task" => name).increment(1);
        if let Some(hook) = self.hook.get() {
            hook(name);
        }
    }

    /// Cancels every task and waits for them for at most `deadline`; whether all ended.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        let ended = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            tracing::warn!(
                running = self.tracker.len(),
                "background tasks still running after the shutdown deadline"
            );
        }
        ended
    }

    /// Waits (at most `deadline`) for the tracked tasks to end without cancelling them:
    /// sessions closing after their close frame was queued.
    pub async fn wait(&self, deadline: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_supervised_task_is_restarted_after_a_panic_and_stops_on_cancel() {
        let tasks = Tasks::new();
        let panics = Arc::new(AtomicUsize::new(0));
        let counted = panics.clone();
        tasks.on_panic(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let starts = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let s = starts.clone();
        let cancel = tasks.cancel().clone();
        tasks.supervise("flaky", move || {
            let n = s.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            let cancel = cancel.clone();
            async move {
                let _ = tx.send(n);
                if n < 2 {
                    panic!("start {n} fails");
                }
                cancel.cancelled().await;
            }
        });
        for expected in 0..3 {
            assert_eq!(rx.recv().await, Some(expected));
        }
        assert_eq!(panics.load(Ordering::SeqCst), 2);
        assert!(tasks.shutdown(Duration::from_secs(1)).await);
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert!(tasks.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_reports_a_task_that_ignores_cancellation() {
        let tasks = Tasks::new();
        tasks.spawn("stubborn", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        assert!(!tasks.shutdown(Duration::from_secs(5)).await);
        assert_eq!(tasks.len(), 2, "the task and its watcher");
    }

    #[tokio::test]
    async fn a_panic_in_a_one_off_task_is_reported() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        tasks.on_panic(move |name| {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(name);
            }
        });
        tasks.spawn("one_off", async { panic!("boom") });
        assert_eq!(rx.await, Ok("one_off"));
    }
}
