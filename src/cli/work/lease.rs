//! The lease keeper: extends a running task's claim, so the task stays this worker's while
//! its command runs and goes back to the pool soon after the worker dies.
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use serde_json::{Value, json};

use super::super::client::{Client, seg};
use super::outage::HubState;
use super::report::Outcome;
use super::{Ctx, spawn};

/// Touches the task's lease every third of its length until the returned sender is dropped.
/// A 409 or 403 means the lease ran out and the task went to someone else: stop the command.
/// A 404 means a server without leases: nothing to keep.
pub fn keep_lease(ctx: &Ctx, task: &Value, lease: Duration, stop: Sender<Outcome>) -> Sender<()> {
    let (done_tx, done_rx) = bounded::<()>(0);
    let mut body = ctx.holder(task);
    body["lease_s"] = json!(lease.as_secs_f64());
    let id = super::tell::task_id(task);
    let keeper = LeaseKeeper {
        client: ctx.client.clone(),
        hub: Arc::clone(&ctx.hub),
        path: format!("/tasks/{}/touch", seg(id)),
        body,
        stop,
    };
    spawn("lease", move || keeper.run(&done_rx, lease / 3));
    done_tx
}

struct LeaseKeeper {
    client: Client,
    hub: Arc<HubState>,
    path: String,
    body: Value,
    /// Stops the command when the lease is lost.
    stop: Sender<Outcome>,
}

impl LeaseKeeper {
    fn run(&self, done: &Receiver<()>, every: Duration) {
        while let Err(RecvTimeoutError::Timeout) = done.recv_timeout(every) {
            if self.touch().is_break() {
                return;
            }
        }
    }

    /// One touch; `Break` when there is no lease left to keep.
    fn touch(&self) -> ControlFlow<()> {
        let sent = Instant::now();
        match self.client.post_json(&self.path, &self.body) {
            Ok(_) => {
                self.hub.answered(sent);
            }
            Err(e) if matches!(e.status, 403 | 409) => {
                eprintln!("workshop work: lost the claim on {}: {e}", self.path);
                let _ = self.stop.try_send(Outcome::Lost);
                return ControlFlow::Break(());
            }
            Err(e) if e.status == 404 => return ControlFlow::Break(()),
            Err(e) if e.is_transient() => self.hub.failed("touching the lease", &e),
            Err(e) => eprintln!("workshop work: touching {}: {e}", self.path),
        }
        ControlFlow::Continue(())
    }
}
