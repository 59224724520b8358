//! Pages of the job list: ordered by (creation time, submission position),
//! newest first unless asked otherwise, each page ending with a token that
//! says where the next one starts. A token is "<created_at_ms>.<position>"
//! of the page's last job: a job that has gone since (deleted, retained
//! away) still marks a place in the order. Jobs submitted within one
//! millisecond keep their submission order.

use tonic::Status;

/// Jobs in a page when the client names no size.
pub const DEFAULT_PAGE: usize = 500;
/// Most jobs in one page (well within gRPC's 4 MiB messages).
pub const MAX_PAGE: usize = 1000;

/// A place in the order of jobs: (created_at_ms, position).
pub type Key = (i64, u64);

/// The page size asked for, or why it cannot be served.
pub fn page_size(asked: u32) -> usize {
    match asked as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

pub fn token(key: &Key) -> String {
    format!("{}.{}", key.0, key.1)
}

/// Where a token says to continue; refused when it is not one.
pub fn parse_token(token: &str) -> Result<Option<Key>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad =
        || Status::invalid_argument(format!("page_token {token:?} is not one a list returned"));
    let (ms, position) = token.split_once('.').ok_or_else(bad)?;
    let ms = ms.parse().map_err(|_| bad())?;
    let position = position.parse().map_err(|_| bad())?;
    Ok(Some((ms, position)))
}

/// The page of `items` (each with its key) after `after`, in the order
/// asked for; and the token of the next page, if there is one.
pub fn page<T>(
    mut items: Vec<(Key, T)>,
    after: Option<&Key>,
    size: usize,
    oldest_first: bool,
) -> (Vec<T>, String) {
    if let Some(after) = after {
        items.retain(|(key, _)| {
            if oldest_first {
                key > after
            } else {
                key < after
            }
        });
    }
    items.sort_by_key(|(key, _)| *key);
    if !oldest_first {
        items.reverse();
    }
    let more = items.len() > size;
    items.truncate(size);
    let next = match items.last() {
        Some((key, _)) if more => token(key),
        _ => String::new(),
    };
    (items.into_iter().map(|(_, item)| item).collect(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: i64) -> Vec<(Key, i64)> {
        // Two jobs per millisecond: ties broken by position.
        (0..n).map(|i| ((i / 2, i as u64), i)).collect()
    }

    #[test]
    fn pages_cover_every_job_once_in_order_both_ways() {
        for oldest_first in [false, true] {
            let mut seen = Vec::new();
            let mut after = None;
            let mut pages = 0;
            loop {
                let (items, next) = page(keys(25), after.as_ref(), 10, oldest_first);
                seen.extend(items);
                pages += 1;
                if next.is_empty() {
                    break;
                }
                after = parse_token(&next).expect("a token");
            }
            assert_eq!(pages, 3);
            let mut expected: Vec<i64> = (0..25).collect();
            if !oldest_first {
                expected.reverse();
            }
            assert_eq!(seen, expected, "oldest_first {oldest_first}");
        }
    }

    #[test]
    fn an_exact_last_page_has_no_next_token_and_bad_tokens_are_refused() {
        let (items, next) = page(keys(10), None, 10, false);
        assert_eq!(items.len(), 10);
        assert!(next.is_empty());
        assert_eq!(page_size(0), DEFAULT_PAGE);
        assert_eq!(page_size(5000), MAX_PAGE);
        for bad in ["x", "12", "a.5", "12.", "12.j-1", "12.-3"] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }
}
