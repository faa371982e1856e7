//! The writer thread: owns the read-write connection, drains every queued command into one
//! transaction (group commit), assigns ids, and feeds the hub only after the commit.
use super::{Stats, TaskBell};
use crate::error::ApiError;
use crate::hub::{Event, Hub};
use crate::ids::IdGen;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use ulid::Ulid;

/// Most commands folded into one transaction; bounds the latency of the first one.
const MAX_BATCH: usize = 1024;

pub struct Command {
    pub op: Op,
    pub reply: Sender<Result<Done, ApiError>>,
}

/// A committed change's HTTP answer.
#[derive(Debug)]
pub struct Done {
    pub status: u16,
    pub body: Value,
}

/// A message to store; `from`, `type` and `ch` are already validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub ch: String,
    pub from: String,
    pub kind: String,
    pub v: i64,
    pub body: Value,
    pub files: Vec<String>,
    pub reply_to: Option<String>,
    /// `to` as the sender gave it (one identity or a list), already validated; `None` is
    /// everyone, and leaves the field out of the envelope.
    pub to: Option<Value>,
    /// The agents whose inbox gets this message: the identities in `to`, or the agent a
    /// `task.created` is for.
    pub recipients: Vec<String>,
}

impl NewMessage {
    /// A message the server posts about a change it made (a task or lock transition):
    /// version 1, no files, no reply, addressed to no one.
    pub fn announcement(ch: &str, from: &str, kind: &str, body: Value) -> NewMessage {
        NewMessage {
            ch: ch.to_string(),
            from: from.to_string(),
            kind: kind.to_string(),
            v: 1,
            body,
            files: Vec::new(),
            reply_to: None,
            to: None,
            recipients: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct NewTask {
    pub from: String,
    pub title: String,
    pub context: Value,
    pub assigned_to: Option<String>,
    pub ch: String,
    /// Higher is claimed first by claim-next.
    pub priority: i64,
    /// Seconds before the task may be claimed.
    pub delay_s: f64,
    /// Releases (abandon, lease expiry) before the task fails for good.
    pub max_attempts: i64,
}

/// Every change the server makes. Task changes carry the acting agent (`from`).
#[derive(Debug)]
pub enum Op {
    Publish(NewMessage),
    CreateTask(NewTask),
    /// Claim one task; with a lease it returns to the queue unless touched in time.
    Claim {
        id: String,
        from: String,
        lease_s: Option<f64>,
    },
    /// Claim the best claimable task for `from` (highest priority, then oldest).
    ClaimNext {
        from: String,
        ch: Option<String>,
        lease_s: Option<f64>,
        /// Task ids the caller does not want (say, ones it just failed), as a JSON array.
        exclude: String,
    },
    /// Extend the claimer's lease.
    Touch {
        id: String,
        from: String,
        lease_s: Option<f64>,
    },
    /// Put a failed task back in the queue with its attempts reset.
    Retry {
        id: String,
        from: String,
    },
    Update {
        id: String,
        from: String,
        fields: Map<String, Value>,
    },
    Complete {
        id: String,
        from: String,
        result: Value,
        files: Vec<String>,
    },
    Abandon {
        id: String,
        from: String,
        reason: Value,
        delay_s: f64,
    },
    Interrupt {
        id: String,
        from: String,
        reason: Value,
    },
    Heartbeat {
        from: String,
        channels: Value,
        meta: Value,
    },
    /// Moves an agent's inbox read cursor forward to `up_to` (never back).
    MarkRead {
        agent: String,
        up_to: String,
    },
    /// Retention: delete messages older than `retention_days` (0 keeps them) and presence
    /// rows older than a week.
    Prune {
        retention_days: u64,
    },
    /// `op` under an Idempotency-Key: a repeat of a remembered key answers the first reply.
    Idempotent {
        key: super::idempotency::Key,
        op: Box<Op>,
    },
    /// Acquire or release an advisory lock (src/store/locks.rs).
    Lock(super::locks::LockOp),
}

/// The envelope exactly as stored and sent; field order is the documented one.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    ts: f64,
    from: &'a str,
    ch: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    v: i64,
    body: &'a Value,
    files: &'a [String],
    reply_to: Option<&'a str>,
    /// Last, and left out when absent, so envelopes without it are what they always were.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a Value>,
}

pub fn spawn(
    conn: Connection,
    commands: Receiver<Command>,
    hub: Arc<Hub>,
    stats: Arc<Stats>,
    bell: Arc<TaskBell>,
    floor: Option<Ulid>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let mut writer = Writer {
                conn,
                ids: IdGen::new(floor),
                hub,
                stats,
                bell,
                next_lease: None,
            };
            // Leases that ran out while the server was down expire on the first pass.
            writer.next_lease = writer.earliest_lease();
            while let Some(first) = writer.next_command(&commands) {
                let mut batch: Vec<Command> = first.into_iter().collect();
                while batch.len() < MAX_BATCH {
                    match commands.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
                writer.run_batch(batch);
            }
            // Every sender is gone: the server is shutting down. Fold the WAL back in.
            let _ = writer
                .conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        })
}

struct Writer {
    conn: Connection,
    ids: IdGen,
    hub: Arc<Hub>,
    stats: Arc<Stats>,
    bell: Arc<TaskBell>,
    /// When the soonest lease runs out (unix seconds), so the writer wakes up for it.
    next_lease: Option<f64>,
}

/// What one batch did, applied to the hub and counters only once it is committed.
#[derive(Default)]
pub(super) struct Effects {
    events: Vec<Arc<Event>>,
    messages_delta: i64,
    tasks_added: u64,
    /// A task became claimable: wake claim-next callers.
    tasks_opened: bool,
    /// A lease or lock was set, moved or cleared: recompute the writer's next wake-up.
    pub(super) leases_changed: bool,
    /// The task announcements made (`task.claimed`...), for /metrics.
    transitions: Vec<&'static str>,
}

impl Effects {
    fn absorb(&mut self, other: Effects) {
        self.events.extend(other.events);
        self.messages_delta += other.messages_delta;
        self.tasks_added += other.tasks_added;
        self.tasks_opened |= other.tasks_opened;
        self.leases_changed |= other.leases_changed;
        self.transitions.extend(other.transitions);
    }
}

impl Writer {
    /// Waits for the next command, or until the soonest lease runs out (`Some(None)`: no
    /// command, just expire). `None` once every sender is gone.
    fn next_command(&self, commands: &Receiver<Command>) -> Option<Option<Command>> {
        let Some(deadline) = self.next_lease else {
            return commands.recv().ok().map(Some);
        };
        let wait = Duration::from_secs_f64((deadline - now()).max(0.0));
        match commands.recv_timeout(wait) {
            Ok(command) => Some(Some(command)),
            Err(RecvTimeoutError::Timeout) => Some(None),
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    fn run_batch(&mut self, batch: Vec<Command>) {
        let mut effects = Effects::default();
        let mut replies = Vec::with_capacity(batch.len());
        let started = Instant::now();
        let committed = self.commit_batch(&batch, &mut effects, &mut replies);
        match committed {
            Ok(()) => {
                crate::metrics::METRICS.record_commit(
                    batch.len(),
                    started.elapsed(),
                    effects.events.len(),
                    &effects.transitions,
                );
                self.apply(effects);
                for (command, result) in batch.into_iter().zip(replies) {
                    let _ = command.reply.send(result);
                }
            }
            Err(err) => {
                for command in batch {
                    let _ = command.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Expires due leases, then runs each command in its own savepoint, so a refused one
    /// (409, 404...) leaves no trace while the rest of the batch commits together.
    fn commit_batch(
        &mut self,
        batch: &[Command],
        effects: &mut Effects,
        replies: &mut Vec<Result<Done, ApiError>>,
    ) -> Result<(), ApiError> {
        let tx = self.conn.transaction()?;
        if self.next_lease.is_some_and(|deadline| deadline <= now()) {
            let mut step = Step {
                tx: &tx,
                ids: &mut self.ids,
                effects: Effects::default(),
            };
            step.expire_leases()?;
            super::locks::expire(&mut step)?;
            effects.absorb(step.effects);
            effects.leases_changed = true;
        }
        for command in batch {
            let mut step = Step {
                tx: &tx,
                ids: &mut self.ids,
                effects: Effects::default(),
            };
            // Cached statements: parsing these three for every command was measurable.
            tx.prepare_cached("SAVEPOINT command")?.execute([])?;
            let result = step.run(&command.op);
            if result.is_ok() {
                effects.absorb(step.effects);
            } else {
                tx.prepare_cached("ROLLBACK TO command")?.execute([])?;
            }
            tx.prepare_cached("RELEASE command")?.execute([])?;
            replies.push(result);
        }
        tx.commit()?;
        Ok(())
    }

    fn apply(&mut self, effects: Effects) {
        let messages = &self.stats.messages;
        if effects.messages_delta >= 0 {
            messages.fetch_add(effects.messages_delta as u64, Ordering::Relaxed);
        } else {
            messages.fetch_sub(effects.messages_delta.unsigned_abs(), Ordering::Relaxed);
        }
        self.stats
            .tasks
            .fetch_add(effects.tasks_added, Ordering::Relaxed);
        self.hub.publish(&effects.events);
        if effects.leases_changed {
            self.next_lease = self.earliest_lease();
        }
        if effects.tasks_opened {
            self.bell.ring();
        }
    }

    /// The soonest deadline of a task lease or a lock.
    fn earliest_lease(&self) -> Option<f64> {
        let lease: Option<f64> = self
            .conn
            .query_row(
                "SELECT min(lease_expires_at) FROM tasks WHERE lease_expires_at IS NOT NULL",
                [],
                |row| row.get(0),
            )
            .ok()
            .flatten();
        let lock = super::locks::earliest(&self.conn);
        lease.into_iter().chain(lock).reduce(f64::min)
    }
}

/// One command inside the batch's transaction.
pub(super) struct Step<'a> {
    pub(super) tx: &'a Transaction<'a>,
    ids: &'a mut IdGen,
    pub(super) effects: Effects,
}

/// The columns of a task that its transitions check.
struct TaskState {
    status: String,
    assigned_to: Option<String>,
    claimed_by: Option<String>,
    title: String,
    ch: String,
    not_before: Option<f64>,
    attempts: i64,
    max_attempts: i64,
    lease_s: Option<f64>,
}

impl Step<'_> {
    fn run(&mut self, op: &Op) -> Result<Done, ApiError> {
        match op {
            Op::Publish(message) => {
                let (id, ts) = self.insert_message(message)?;
                Ok(done(201, json!({"id": id, "ts": ts})))
            }
            Op::CreateTask(task) => self.create_task(task),
            Op::Claim { id, from, lease_s } => {
                let claimed = self.claim(id, from, *lease_s)?;
                Ok(done(200, claimed))
            }
            Op::ClaimNext {
                from,
                ch,
                lease_s,
                exclude,
            } => self.claim_next(from, ch.as_deref(), *lease_s, exclude),
            Op::Touch { id, from, lease_s } => self.touch(id, from, *lease_s),
            Op::Retry { id, from } => self.retry(id, from),
            Op::Update { id, from, fields } => {
                // Only the claimer reports progress: an update from anyone else, or on a
                // task no one holds (done, expired), would be announced as if it were real.
                let task = self.load_claimed_by(id, from)?;
                self.touch_task(id)?;
                // Progress from the claimer proves it is alive: it extends the lease.
                if let Some(lease_s) = task.lease_s {
                    self.set_lease(id, Some(lease_s))?;
                }
                let mut body = fields.clone();
                body.remove("from");
                body.insert("task-id".into(), json!(id));
                self.announce(&task, from, "task.updated", Value::Object(body), vec![])?;
                Ok(done(200, json!({"id": id})))
            }
            Op::Complete {
                id,
                from,
                result,
                files,
            } => self.complete(id, from, result, files),
            Op::Abandon {
                id,
                from,
                reason,
                delay_s,
            } => {
                let task = self.load_claimed_by(id, from)?;
                let body = json!({"task-id": id, "title": task.title, "reason": reason});
                let status = self.release(id, &task, from, ("task.abandoned", body), *delay_s)?;
                Ok(done(200, json!({"id": id, "status": status})))
            }
            Op::Interrupt { id, from, reason } => {
                let task = self.load_task(id)?;
                self.touch_task(id)?;
                let body = json!({"task-id": id, "title": task.title, "reason": reason});
                self.announce(&task, from, "task.interrupt", body, vec![])?;
                Ok(done(200, json!({"id": id, "signalled": true})))
            }
            Op::Heartbeat {
                from,
                channels,
                meta,
            } => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO presence (agent_id, last_seen, channels, meta)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (agent_id) DO UPDATE SET last_seen = ?2, channels = ?3,
                         meta = ?4",
                    )?
                    .execute(params![from, now(), channels.to_string(), meta.to_string()])?;
                Ok(done(200, json!({"ok": true})))
            }
            Op::MarkRead { agent, up_to } => {
                // Clamped to the greatest id issued so far: a cursor beyond it (any valid
                // ULID is accepted) would hide every later message for good. A clamp rather
                // than a 400: "everything so far is read" is what such an id can only mean,
                // and a client cannot tell a future id from a present one before asking.
                let greatest = super::read::greatest_id(self.tx)?
                    .unwrap_or(Ulid::nil())
                    .to_string();
                let up_to = super::turns::mark_read(self.tx, agent, up_to.min(&greatest))?;
                Ok(done(200, json!({"agent": agent, "up_to": up_to})))
            }
            Op::Prune { retention_days } => self.prune(*retention_days),
            Op::Idempotent { key, op } => {
                if let Some(first) = super::idempotency::recall(self.tx, key)? {
                    return Ok(first);
                }
                let done = self.run(op)?;
                super::idempotency::remember(self.tx, key, &done)?;
                Ok(done)
            }
            Op::Lock(op) => super::locks::run(self, op),
        }
    }

    pub(super) fn insert_message(&mut self, m: &NewMessage) -> Result<(String, f64), ApiError> {
        let ulid = self.ids.next_id();
        let id = ulid.to_string();
        // The timestamp is the id's: monotonic with the ids and exact to the millisecond.
        let ts = ulid.timestamp_ms() as f64 / 1000.0;
        let envelope = serde_json::to_string(&Envelope {
            id: &id,
            ts,
            from: &m.from,
            ch: &m.ch,
            kind: &m.kind,
            v: m.v,
            body: &m.body,
            files: &m.files,
            reply_to: m.reply_to.as_deref(),
            to: m.to.as_ref(),
        })
        .map_err(|e| ApiError::internal(format!("cannot encode message: {e}")))?;
        self.tx
            .prepare_cached(
                "INSERT INTO messages (id, ch, type, envelope, reply_to)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, m.ch, m.kind, envelope, m.reply_to])?;
        super::search::index(self.tx, &id, &m.kind, &m.from, &m.ch, &m.body)?;
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO channels (name) VALUES (?1)")?
            .execute([&m.ch])?;
        super::turns::insert_recipients(self.tx, &id, &m.recipients)?;
        self.effects.messages_delta += 1;
        let mut event = Event::new(id.clone(), m.ch.clone(), m.kind.clone(), &envelope);
        event.recipients = m.recipients.clone();
        self.effects.events.push(Arc::new(event));
        Ok((id, ts))
    }

    /// Posts a task's announcement on the task's channel, in the task change's transaction.
    fn announce(
        &mut self,
        task: &TaskState,
        from: &str,
        kind: &'static str,
        body: Value,
        files: Vec<String>,
    ) -> Result<(), ApiError> {
        self.effects.transitions.push(kind);
        let mut message = NewMessage::announcement(&task.ch, from, kind, body);
        message.files = files;
        // A task made for one agent lands in that agent's inbox when it is created.
        if let ("task.created", Some(agent)) = (kind, &task.assigned_to) {
            message.recipients = vec![agent.clone()];
        }
        self.insert_message(&message).map(|_| ())
    }

    fn create_task(&mut self, task: &NewTask) -> Result<Done, ApiError> {
        let id = self.ids.next_id().to_string();
        let now = now();
        let not_before = (task.delay_s > 0.0).then_some(now + task.delay_s);
        self.tx
            .prepare_cached(
                "INSERT INTO tasks (id, created_at, updated_at, created_by, assigned_to, status,
                 title, context, files, ch, priority, not_before, max_attempts)
                 VALUES (?1, ?2, ?2, ?3, ?4, 'open', ?5, ?6, '[]', ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                id,
                now,
                task.from,
                task.assigned_to,
                task.title,
                task.context.to_string(),
                task.ch,
                task.priority,
                not_before,
                task.max_attempts
            ])?;
        self.effects.tasks_added += 1;
        self.effects.tasks_opened = true;
        let body = json!({"task-id": id, "title": task.title, "for": task.assigned_to});
        let state = self.load_task(&id)?;
        self.announce(&state, &task.from, "task.created", body, vec![])?;
        Ok(done(201, json!({"id": id})))
    }

    /// Claims an open task for `from`; the claim answer's body.
    fn claim(&mut self, id: &str, from: &str, lease_s: Option<f64>) -> Result<Value, ApiError> {
        let task = self.load_task(id)?;
        if let Some(assignee) = task.assigned_to.as_deref().filter(|a| *a != from) {
            return Err(ApiError::forbidden(format!("task {id} is for {assignee}")));
        }
        if task.status != "open" {
            return Err(ApiError::conflict(not_open(id, &task)));
        }
        if let Some(not_before) = task.not_before.filter(|t| *t > now()) {
            // Seconds from now, rounded up: people and scripts read this, not an epoch.
            let wait = (not_before - now()).ceil().max(1.0);
            return Err(ApiError::conflict(format!(
                "task {id} is delayed: claimable in {wait:.0} s"
            )));
        }
        self.tx
            .prepare_cached(
                "UPDATE tasks SET status = 'claimed', claimed_by = ?2, claimed_at = ?3,
                 updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, from, now()])?;
        let lease_expires_at = self.set_lease(id, lease_s)?;
        let body = json!({"task-id": id, "title": task.title});
        self.announce(&task, from, "task.claimed", body, vec![])?;
        let mut answer = json!({"id": id, "status": "claimed", "claimed-by": from});
        if let Some(expires) = lease_expires_at {
            answer["lease_expires_at"] = json!(expires);
        }
        Ok(answer)
    }

    /// Sets (or with `None` clears) a claimed task's lease; returns when it runs out.
    fn set_lease(&mut self, id: &str, lease_s: Option<f64>) -> Result<Option<f64>, ApiError> {
        let expires = lease_s.map(|lease| now() + lease);
        self.tx
            .prepare_cached("UPDATE tasks SET lease_s = ?2, lease_expires_at = ?3 WHERE id = ?1")?
            .execute(params![id, lease_s, expires])?;
        self.effects.leases_changed = true;
        Ok(expires)
    }

    fn claim_next(
        &mut self,
        from: &str,
        ch: Option<&str>,
        lease_s: Option<f64>,
        exclude: &str,
    ) -> Result<Done, ApiError> {
        let now = now();
        let next: Option<String> = self
            .tx
            .prepare_cached(
                "SELECT id FROM tasks WHERE status = 'open'
                 AND (not_before IS NULL OR not_before <= ?1)
                 AND (assigned_to IS NULL OR assigned_to = ?2)
                 AND (?3 IS NULL OR ch = ?3)
                 AND id NOT IN (SELECT value FROM json_each(?4))
                 ORDER BY priority DESC, id LIMIT 1",
            )?
            .query_row(params![now, from, ch, exclude], |row| row.get(0))
            .optional()?;
        let Some(id) = next else {
            // Nothing yet: say when the soonest delayed task becomes claimable.
            let next_ready: Option<f64> = self
                .tx
                .prepare_cached(
                    "SELECT min(not_before) FROM tasks WHERE status = 'open' AND not_before > ?1
                     AND (assigned_to IS NULL OR assigned_to = ?2) AND (?3 IS NULL OR ch = ?3)
                     AND id NOT IN (SELECT value FROM json_each(?4))",
                )?
                .query_row(params![now, from, ch, exclude], |row| row.get(0))?;
            return Ok(done(204, json!({ "next_ready": next_ready })));
        };
        self.claim(&id, from, lease_s)?;
        let task = super::read::task(self.tx, &id)?
            .ok_or_else(|| ApiError::internal("claimed task vanished"))?;
        Ok(done(200, json!(task)))
    }

    fn touch(&mut self, id: &str, from: &str, lease_s: Option<f64>) -> Result<Done, ApiError> {
        let task = self.load_claimed_by(id, from)?;
        let lease_s = lease_s.or(task.lease_s).ok_or_else(|| {
            ApiError::bad_request(format!("task {id} has no lease to extend: give lease_s"))
        })?;
        let expires = self.set_lease(id, Some(lease_s))?;
        Ok(done(200, json!({"id": id, "lease_expires_at": expires})))
    }

    fn retry(&mut self, id: &str, from: &str) -> Result<Done, ApiError> {
        let task = self.load_task(id)?;
        if task.status != "failed" {
            return Err(ApiError::conflict(format!(
                "task {id} is {}, not failed",
                task.status
            )));
        }
        self.tx
            .prepare_cached(
                "UPDATE tasks SET status = 'open', attempts = 0, not_before = NULL,
                 updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, now()])?;
        self.effects.tasks_opened = true;
        let body = json!({"task-id": id, "title": task.title});
        self.announce(&task, from, "task.retried", body, vec![])?;
        Ok(done(200, json!({"id": id, "status": "open"})))
    }

    /// Takes a claimed task back (abandon or lease expiry): one more attempt used; back to
    /// `open` (after `delay_s`), or `failed` once attempts reach the task's maximum.
    fn release(
        &mut self,
        id: &str,
        task: &TaskState,
        from: &str,
        (kind, body): (&'static str, Value),
        delay_s: f64,
    ) -> Result<&'static str, ApiError> {
        let now = now();
        let attempts = task.attempts + 1;
        let status = if attempts >= task.max_attempts {
            "failed"
        } else {
            "open"
        };
        let not_before = (delay_s > 0.0).then_some(now + delay_s);
        self.tx
            .prepare_cached(
                "UPDATE tasks SET status = ?2, attempts = ?3, not_before = ?4, claimed_by = NULL,
                 claimed_at = NULL, lease_s = NULL, lease_expires_at = NULL, updated_at = ?5
                 WHERE id = ?1",
            )?
            .execute(params![id, status, attempts, not_before, now])?;
        self.effects.leases_changed = true;
        self.announce(task, from, kind, body, vec![])?;
        if status == "failed" {
            let body = json!({"task-id": id, "title": task.title, "attempts": attempts});
            self.announce(task, from, "task.failed", body, vec![])?;
        } else {
            self.effects.tasks_opened = true;
        }
        Ok(status)
    }

    /// Returns every claimed task whose lease has run out to the queue, announcing each.
    fn expire_leases(&mut self) -> Result<(), ApiError> {
        let due: Vec<String> = self
            .tx
            .prepare_cached(
                "SELECT id FROM tasks WHERE lease_expires_at <= ?1 AND status = 'claimed'
                 ORDER BY lease_expires_at",
            )?
            .query_map([now()], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in due {
            let task = self.load_task(&id)?;
            let body = json!({"task-id": id, "title": task.title, "claimed-by": task.claimed_by});
            self.release(&id, &task, SERVER_IDENTITY, ("task.expired", body), 0.0)?;
        }
        Ok(())
    }

    fn complete(
        &mut self,
        id: &str,
        from: &str,
        result: &Value,
        files: &[String],
    ) -> Result<Done, ApiError> {
        let task = self.load_claimed_by(id, from)?;
        let files_json = serde_json::to_string(files)
            .map_err(|e| ApiError::internal(format!("cannot encode files: {e}")))?;
        self.tx
            .prepare_cached(
                "UPDATE tasks SET status = 'done', result = ?2, files = ?3, updated_at = ?4,
                 lease_s = NULL, lease_expires_at = NULL WHERE id = ?1",
            )?
            .execute(params![id, result.to_string(), files_json, now()])?;
        self.effects.leases_changed = true;
        let body = json!({"task-id": id, "title": task.title, "result": result});
        self.announce(&task, from, "task.done", body, files.to_vec())?;
        Ok(done(200, json!({"id": id, "status": "done"})))
    }

    fn load_task(&self, id: &str) -> Result<TaskState, ApiError> {
        self.tx
            .prepare_cached(
                "SELECT status, assigned_to, claimed_by, title, ch, not_before, attempts,
                 max_attempts, lease_s FROM tasks WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok(TaskState {
                    status: row.get(0)?,
                    assigned_to: row.get(1)?,
                    claimed_by: row.get(2)?,
                    title: row.get(3)?,
                    ch: row.get(4)?,
                    not_before: row.get(5)?,
                    attempts: row.get(6)?,
                    max_attempts: row.get(7)?,
                    lease_s: row.get(8)?,
                })
            })
            .optional()?
            .ok_or_else(|| ApiError::not_found(format!("no task {id}")))
    }

    /// A task that `from` holds: claimed (else 409) by `from` (else 403).
    fn load_claimed_by(&self, id: &str, from: &str) -> Result<TaskState, ApiError> {
        let task = self.load_task(id)?;
        if task.status != "claimed" {
            return Err(ApiError::conflict(format!(
                "task {id} is {}, not claimed",
                task.status
            )));
        }
        match task.claimed_by.as_deref() {
            Some(claimer) if claimer != from => Err(ApiError::forbidden(format!(
                "task {id} is claimed by {claimer}, not {from}"
            ))),
            _ => Ok(task),
        }
    }

    fn touch_task(&self, id: &str) -> Result<(), ApiError> {
        self.tx
            .prepare_cached("UPDATE tasks SET updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now()])?;
        Ok(())
    }

    fn prune(&mut self, retention_days: u64) -> Result<Done, ApiError> {
        let now_ms = now_ms();
        let mut deleted = 0;
        if retention_days > 0 {
            // Ids start with their millisecond, so "older than" is a range of the primary key.
            let cutoff_ms = now_ms.saturating_sub(retention_days.saturating_mul(86_400_000));
            let cutoff = Ulid::from_parts(cutoff_ms, 0).to_string();
            super::horizon::record(self.tx, &cutoff)?;
            deleted = self
                .tx
                .execute("DELETE FROM messages WHERE id < ?1", [&cutoff])?;
            super::turns::prune(self.tx, &cutoff)?;
            super::search::prune(self.tx, &cutoff)?;
            if deleted > 0 {
                self.tx.execute(
                    "DELETE FROM channels WHERE NOT EXISTS
                     (SELECT 1 FROM messages WHERE messages.ch = channels.name)",
                    [],
                )?;
            }
        }
        let week_ago = (now_ms as f64 / 1000.0) - 7.0 * 86_400.0;
        self.tx
            .execute("DELETE FROM presence WHERE last_seen < ?1", [week_ago])?;
        super::idempotency::forget_expired(self.tx)?;
        self.effects.messages_delta -= deleted as i64;
        Ok(done(200, json!({"deleted": deleted})))
    }
}

/// The `from` of announcements the server makes on its own (lease expiry).
pub(super) const SERVER_IDENTITY: &str = "workshop";

fn not_open(id: &str, task: &TaskState) -> String {
    match (&task.status[..], &task.claimed_by) {
        ("claimed", Some(by)) => format!("task {id} is already claimed by {by}"),
        (status, _) => format!("task {id} is {status}, not open"),
    }
}

pub(super) fn done(status: u16, body: Value) -> Done {
    Done { status, body }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix seconds with millisecond precision, as every timestamp in the API.
pub fn now() -> f64 {
    now_ms() as f64 / 1000.0
}
