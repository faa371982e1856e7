//! `workshop work`'s arguments, as clap reads them and as the worker uses them.
use std::time::Duration;

use clap::Args;

use super::super::{parse_poll, parse_secs};
use super::report::Output;

pub const HELP: &str = "\
For each task it can claim (open, and unassigned or assigned to AGENT_ID; on the --ch channels,
or any), runs COMMAND with the task's JSON on stdin and WORKSHOP_TASK_ID, WORKSHOP_URL and
AGENT_ID in its environment:
  - each line COMMAND writes to stderr is posted as a task update (note), 10 a second at most;
  - exit 0: the task is done, with stdout as its result (JSON if it parses, else {\"output\": text};
    over 1 MiB, more than the hub takes, fails the task);
  - any other exit: task.error is posted on the task's channel and the task is abandoned;
  - task.interrupt for a running task: COMMAND's process group gets SIGTERM, SIGKILL after
    --grace seconds, and the task is given back with reason \"interrupted\" (no attempt used);
  - running longer than --timeout seconds: stopped the same way, abandoned with reason \"timeout\".
COMMAND is checked before anything is claimed: if it is not an executable file (a typo, or a
script without chmod +x), work exits 2 at once.
One line per task outcome on stderr (done/failed/interrupted/stopped/timeout/lost, task id,
title, duration, and for a failure the exit code and last stderr line); --json prints them as
JSON objects on stdout instead, --quiet prints only problems. While the hub is unreachable,
work retries with backoff (up to 5 s apart) and says so once, then once more when it is back.
Claims are leased for --lease seconds and touched every third of that while COMMAND runs: if
this worker dies (even by SIGKILL), COMMAND's process group gets SIGTERM, SIGKILL after --grace
seconds or half the lease if shorter (a guard process, this program, runs each COMMAND to see
to it), and the task returns to the pool when the lease runs out; if the lease is lost anyway
(the server unreachable for too long), COMMAND is stopped and nothing is reported.
A task this worker failed, timed out or was interrupted on is left to other workers for
--retry-after seconds times its attempts (at most 5 minutes), then this worker may take it
again. Tasks are claimed with claim-next (highest priority first, then oldest) as soon as the
live stream shows one, and also every --poll seconds and whenever a slot frees. Heartbeats
every 30 s.
SIGINT/SIGTERM: stop claiming, stop running commands, abandon their tasks (reason \"worker
stopped\"), exit 0; a second signal kills every running command's process group and exits 130.

Examples:
  workshop work --ch jobs -- ./handle.sh
  workshop work --jobs 4 --timeout 600 -- python3 agent.py --model small
  workshop work --json -- ./handle.sh | jq -c 'select(.outcome != \"done\")'
  # handle.sh (chmod +x): read the task, report progress on stderr, print the result on stdout
  #   task=$(cat); echo 'fetching' >&2; printf '{\"rows\": %d}' 42";

#[derive(Args, Debug)]
pub struct WorkArgs {
    /// Only take tasks announced on this channel (repeatable, asked in the order given, so an
    /// earlier channel's tasks go first whatever their priority; default: every channel)
    #[arg(long = "ch", value_name = "CH")]
    pub(super) channels: Vec<String>,
    /// How many tasks to run at once
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(super) jobs: u32,
    /// Seconds between SIGTERM and SIGKILL when stopping a command
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_secs)]
    pub(super) grace: Duration,
    /// Seconds between checks of the open-task list (the stream is the fast path; at least 0.5)
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = parse_poll)]
    pub(super) poll: Duration,
    /// Claim lease in seconds, kept alive while the command runs (0: claims never expire)
    #[arg(long, default_value = "60", value_name = "SECS", value_parser = parse_secs)]
    pub(super) lease: Duration,
    /// Stop a command that runs longer than SECS and abandon its task (reason "timeout")
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(super) timeout: Option<Duration>,
    /// Leave a task this worker gave up on to others for SECS times its attempts (at most 5
    /// minutes, or SECS if longer) before taking it again
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_secs)]
    pub(super) retry_after: Duration,
    /// Task outcomes as JSON lines on stdout (task-id, title, outcome, duration_s, exit_code,
    /// reason, stderr)
    #[arg(long, conflicts_with = "quiet")]
    pub(super) json: bool,
    /// Print only problems, no line per task
    #[arg(long, short)]
    pub(super) quiet: bool,
    /// The command to run per task, after `--`
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub(super) command: Vec<String>,
}

impl WorkArgs {
    /// How outcome lines are written: `--json`, `--quiet`, or one human line each.
    pub(super) fn output(&self) -> Output {
        match (self.json, self.quiet) {
            (true, _) => Output::Json,
            (_, true) => Output::Quiet,
            _ => Output::Human,
        }
    }

    /// The claim lease; `None` claims without one (`--lease 0`: claims never expire).
    pub(super) fn claim_lease(&self) -> Option<Duration> {
        Some(self.lease).filter(|lease| !lease.is_zero())
    }

    /// COMMAND's program (clap requires COMMAND, so there is one).
    pub(super) fn program(&self) -> &str {
        &self.command[0]
    }

    /// The one channel followed when `--ch` is given once; `None` follows every channel.
    pub(super) fn single_channel(&self) -> Option<&str> {
        match self.channels.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        }
    }

    /// Whether a task announced on `ch` is one to take.
    pub(super) fn takes_from(&self, ch: &str) -> bool {
        self.channels.is_empty() || self.channels.iter().any(|c| c == ch)
    }

    /// The `--ch` channels for the start line.
    pub(super) fn described_channels(&self) -> String {
        if self.channels.is_empty() {
            "every channel".to_string()
        } else {
            self.channels.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        work: WorkArgs,
    }

    fn parse(args: &[&str]) -> WorkArgs {
        let argv = ["work"].iter().chain(args).chain(&["--", "./h.sh"]);
        Cli::try_parse_from(argv).unwrap().work
    }

    #[test]
    fn output_follows_json_and_quiet() {
        assert_eq!(parse(&[]).output(), Output::Human);
        assert_eq!(parse(&["--json"]).output(), Output::Json);
        assert_eq!(parse(&["-q"]).output(), Output::Quiet);
    }

    #[test]
    fn a_zero_lease_claims_without_one() {
        assert_eq!(parse(&[]).claim_lease(), Some(Duration::from_secs(60)));
        assert_eq!(parse(&["--lease", "0"]).claim_lease(), None);
        assert_eq!(parse(&[]).program(), "./h.sh");
    }

    #[test]
    fn channels_decide_what_is_followed_and_taken() {
        let every = parse(&[]);
        assert_eq!(every.single_channel(), None);
        assert!(every.takes_from("anything"));
        assert_eq!(every.described_channels(), "every channel");
        let one = parse(&["--ch", "jobs"]);
        assert_eq!(one.single_channel(), Some("jobs"));
        assert!(one.takes_from("jobs") && !one.takes_from("other"));
        let two = parse(&["--ch", "a", "--ch", "b"]);
        assert_eq!(two.single_channel(), None);
        assert!(two.takes_from("b") && !two.takes_from("c"));
        assert_eq!(two.described_channels(), "a, b");
    }
}
