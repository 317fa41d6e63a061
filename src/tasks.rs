//! The background tasks of a running service, in one shape: each is
//! started with the service's one stop token, runs until it is cancelled
//! (the committer: until its last handle is gone), and is awaited by name
//! when the service stops. [`crate::startup::Application`] owns them.

use anyhow::Context;
use futures_util::future::BoxFuture;
use std::future::Future;

/// The tasks, in the order they are awaited at shutdown.
#[derive(Default)]
pub struct Tasks(Vec<(&'static str, BoxFuture<'static, anyhow::Result<()>>)>);

impl Tasks {
    /// Owns a task spawned on the runtime; a panic in it fails the stop.
    pub fn spawned(&mut self, name: &'static str, task: tokio::task::JoinHandle<()>) {
        self.0.push((
            name,
            Box::pin(async move { task.await.with_context(|| format!("The {name} failed")) }),
        ));
    }

    /// Owns a task that runs elsewhere (a thread of its own) and says
    /// when it has stopped.
    pub fn elsewhere(&mut self, name: &'static str, stopped: impl Future + Send + 'static) {
        self.0.push((
            name,
            Box::pin(async move {
                stopped.await;
                Ok(())
            }),
        ));
    }

    /// Waits for every task to stop, in order; the first that failed is
    /// the error, after all have been awaited.
    pub async fn stopped(self) -> anyhow::Result<()> {
        let mut outcome = Ok(());
        for (name, task) in self.0 {
            let result = task.await;
            tracing::debug!(task = name, "stopped");
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }
}
