//! `Counted`: counts something in progress (a waiting request, a request in flight) for as
//! long as a guard lives, so an early return or a panic cannot leave the count off by one.
use std::sync::atomic::{AtomicUsize, Ordering};

/// Adds one to its counter when made, takes it away when dropped.
pub(crate) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    pub(crate) fn enter(count: &'a AtomicUsize) -> Counted<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Counted(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_while_alive() {
        let count = AtomicUsize::new(0);
        {
            let _one = Counted::enter(&count);
            let _two = Counted::enter(&count);
            assert_eq!(count.load(Ordering::SeqCst), 2);
        }
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
