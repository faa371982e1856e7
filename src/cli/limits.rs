//! How long the client waits on a hub that holds it back before it gives up: a loop guard
//! that keeps refusing (`WORKSHOP_THROTTLE_WAIT`), a file transfer where no byte moves
//! (`WORKSHOP_TRANSFER_STALL`). Read from the environment, like `WORKSHOP_URL`.
use std::time::Duration;

/// How long in all a request may be refused by the loop guard (429) before it is given up.
/// Each `Retry-After` is waited out (at most a minute each), so an agent that is merely
/// slowed down gets through well within this; one refused for five minutes straight is in a
/// loop, or behind a guard set too low for it, and a clear failure tells its operator where
/// resending for ever told no one.
const THROTTLE_WAIT: Duration = Duration::from_secs(300);

/// How long a file transfer may go without a byte moving, each way, before it is cut off.
/// There is no limit on the whole transfer (a 100 MiB file on a slow link takes as long as
/// it takes), but a hub or proxy that stopped mid-way must not hold the client for ever.
const TRANSFER_STALL: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub throttle_wait: Duration,
    pub transfer_stall: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            throttle_wait: THROTTLE_WAIT,
            transfer_stall: TRANSFER_STALL,
        }
    }
}

impl Limits {
    /// The defaults, or what the environment sets; a bad value names its variable.
    pub fn from_env() -> Result<Limits, String> {
        let read = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Limits::parse(
            read("WORKSHOP_THROTTLE_WAIT").as_deref(),
            read("WORKSHOP_TRANSFER_STALL").as_deref(),
        )
    }

    fn parse(throttle_wait: Option<&str>, transfer_stall: Option<&str>) -> Result<Limits, String> {
        let default = Limits::default();
        let throttle_wait = throttle_wait.map(|text| seconds("WORKSHOP_THROTTLE_WAIT", text));
        let transfer_stall = transfer_stall.map(stall);
        Ok(Limits {
            throttle_wait: throttle_wait.transpose()?.unwrap_or(default.throttle_wait),
            transfer_stall: transfer_stall
                .transpose()?
                .unwrap_or(default.transfer_stall),
        })
    }
}

/// A stall time: more than 0 (a socket timeout of 0 is no timeout at all to the OS).
fn stall(text: &str) -> Result<Duration, String> {
    match seconds("WORKSHOP_TRANSFER_STALL", text)? {
        zero if zero.is_zero() => {
            Err("WORKSHOP_TRANSFER_STALL: must be more than 0 seconds".into())
        }
        stall => Ok(stall),
    }
}

/// `text` as seconds (`super::parse_secs`), the error naming `name`.
fn seconds(name: &str, text: &str) -> Result<Duration, String> {
    super::parse_secs(text).map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_are_checked() {
        assert_eq!(Limits::parse(None, None), Ok(Limits::default()));
        let set = Limits::parse(Some("0"), Some("1.5")).unwrap();
        assert_eq!(set.throttle_wait, Duration::ZERO);
        assert_eq!(set.transfer_stall, Duration::from_millis(1500));
        for (wait, stall) in [(Some("soon"), None), (None, Some("0")), (None, Some("-1"))] {
            let err = Limits::parse(wait, stall).unwrap_err();
            assert!(err.starts_with("WORKSHOP_"), "{err}");
        }
    }
}
