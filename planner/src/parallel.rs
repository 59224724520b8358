//! Independent simulations (a sweep's fleets, a plan's replications) on
//! several threads, their results handed back in input order so that the
//! output is the same whatever the thread count.
//!
//! `std::thread::scope` and a shared counter rather than rayon: the
//! planner does not depend on rayon, the tasks are few (at most a sweep's
//! 1000 fleets) and long, and a counter already balances them (a fleet
//! may take 100 times as long as its neighbour); a thread count per call
//! (`--jobs`) needs no global pool.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Threads to use: `requested`, or one per core.
pub fn threads(requested: Option<NonZeroUsize>) -> usize {
    requested
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get)
}

/// Runs `work` on every item on up to `threads` threads, and hands each
/// result to `sink` in the items' order (a result that comes early waits
/// for those before it). The first error, of `work` or of `sink`, stops
/// the items not yet started and is returned.
pub fn in_order<T, R, E>(
    items: &[T],
    threads: usize,
    work: impl Fn(usize, &T) -> Result<R, E> + Sync,
    mut sink: impl FnMut(usize, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let threads = threads.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<R, E>)>();
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop, work) = (&next, &stop, &work);
            scope.spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                // A closed channel: the receiver gave up on an error.
                if tx.send((i, work(i, item))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut early = BTreeMap::new();
        let mut due = 0;
        let mut outcome = Ok(());
        for (i, result) in rx {
            early.insert(i, result);
            while let Some(result) = early.remove(&due) {
                due += 1;
                if let Err(e) = result.and_then(|r| sink(due - 1, r)) {
                    outcome = Err(e);
                    break;
                }
            }
            if outcome.is_err() {
                // Workers finish the item in hand and take no other.
                stop.store(true, Ordering::Relaxed);
                break;
            }
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items that take longer the earlier they come still reach the sink
    /// in order, on one thread or many.
    #[test]
    fn results_come_in_input_order_whatever_the_threads() {
        let items: Vec<u64> = (0..40).collect();
        for threads in [1, 3, 8] {
            let mut seen = Vec::new();
            in_order(
                &items,
                threads,
                |i, &x| {
                    // Uneven work, the early items the longest.
                    let spins = (40 - x) * 20_000;
                    let sum = (0..spins).fold(0u64, |s, k| s.wrapping_add(k ^ x));
                    Ok::<_, String>((i, x * x, sum))
                },
                |i, (j, square, _)| {
                    seen.push((i, j, square));
                    Ok(())
                },
            )
            .expect("no error");
            let expected: Vec<_> = (0..40u64)
                .map(|x| (x as usize, x as usize, x * x))
                .collect();
            assert_eq!(seen, expected, "{threads} threads");
        }
    }

    /// An error stops the run: the sink sees only what came before it.
    #[test]
    fn the_first_error_in_order_is_returned() {
        let items: Vec<u32> = (0..100).collect();
        let mut seen = Vec::new();
        let result = in_order(
            &items,
            4,
            |_, &x| if x == 7 || x == 60 { Err(x) } else { Ok(x) },
            |_, x| {
                seen.push(x);
                Ok(())
            },
        );
        assert_eq!(result, Err(7));
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        let sink_error = in_order(
            &items,
            2,
            |_, &x| Ok(x),
            |_, x| {
                if x == 3 {
                    Err(99)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(sink_error, Err(99));
        assert_eq!(threads(NonZeroUsize::new(5)), 5);
        assert!(threads(None) >= 1);
    }
}
