//! The linearizability checker itself, on histories known to be good and
//! known to be bad: a checker that accepts everything would prove nothing.

use crate::common;

use common::history::{check, check_forgetting, Answer, Event, Model, Op};

fn ev(op: Op, answer: Answer, invoked: u64, returned: Option<u64>) -> Event {
    Event {
        job: "j".into(),
        op,
        answer,
        invoked,
        returned,
    }
}

#[test]
fn good_histories_pass() {
    let cases: Vec<(&str, Vec<Event>)> = vec![
        (
            "submit then get",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(10)),
                ev(Op::Get, Answer::Saw(Model::Live), 20, Some(30)),
            ],
        ),
        (
            "a get concurrent with the submit may miss it",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(10)),
                ev(Op::Get, Answer::NotFound, 5, Some(8)),
            ],
        ),
        (
            "a worker ends the job between two gets",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Get, Answer::Saw(Model::Live), 2, Some(3)),
                ev(Op::Get, Answer::Saw(Model::Ended), 4, Some(5)),
                ev(Op::Cancel, Answer::AlreadyEnded, 6, Some(7)),
            ],
        ),
        (
            "concurrent cancels: one wins",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Cancel, Answer::Cancelled, 2, Some(10)),
                ev(Op::Cancel, Answer::AlreadyEnded, 3, Some(9)),
            ],
        ),
        (
            "a lost submit answer, then the job is seen",
            vec![
                ev(Op::Submit, Answer::Unknown, 0, None),
                ev(Op::Get, Answer::Saw(Model::Live), 5, Some(6)),
            ],
        ),
        (
            "a lost cancel that never happened",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Cancel, Answer::Unknown, 2, None),
                ev(Op::Get, Answer::Saw(Model::Ended), 8, Some(9)),
            ],
        ),
    ];
    for (name, history) in cases {
        assert_eq!(check(&history), Ok(()), "{name}");
    }
}

#[test]
fn bad_histories_fail() {
    let cases: Vec<(&str, Vec<Event>)> = vec![
        (
            "an acknowledged job is not found later",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(10)),
                ev(Op::Get, Answer::NotFound, 20, Some(30)),
            ],
        ),
        (
            "two cancels both succeed one after the other",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Cancel, Answer::Cancelled, 2, Some(3)),
                ev(Op::Cancel, Answer::Cancelled, 4, Some(5)),
            ],
        ),
        (
            "a cancelled job comes back to life",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Cancel, Answer::Cancelled, 2, Some(3)),
                ev(Op::Get, Answer::Saw(Model::Live), 4, Some(5)),
            ],
        ),
        (
            "an ended job is cancelled",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Get, Answer::Saw(Model::Ended), 2, Some(3)),
                ev(Op::Cancel, Answer::Cancelled, 4, Some(5)),
            ],
        ),
        (
            "a stale read after a completed cancel",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Cancel, Answer::Cancelled, 2, Some(3)),
                ev(Op::Get, Answer::Saw(Model::Live), 10, Some(11)),
                ev(Op::Get, Answer::Saw(Model::Cancelled), 12, Some(13)),
            ],
        ),
    ];
    for (name, history) in cases {
        let verdict = check(&history);
        assert!(verdict.is_err(), "{name}: accepted a bad history");
    }
}

#[test]
fn with_retention_only_ended_jobs_vanish_and_never_return() {
    let forgotten_after_end = vec![
        ev(Op::Submit, Answer::Submitted, 0, Some(1)),
        ev(Op::Get, Answer::Saw(Model::Ended), 2, Some(3)),
        ev(Op::Get, Answer::NotFound, 4, Some(5)),
        ev(Op::Cancel, Answer::NotFound, 6, Some(7)),
    ];
    assert!(check_forgetting(&forgotten_after_end).is_ok());
    assert!(
        check(&forgotten_after_end).is_err(),
        "without retention an ended job stays"
    );
    let bad: Vec<(&str, Vec<Event>)> = vec![
        (
            "a forgotten job is found again",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Get, Answer::NotFound, 2, Some(3)),
                ev(Op::Get, Answer::Saw(Model::Ended), 4, Some(5)),
            ],
        ),
        (
            "a forgotten job is cancelled",
            vec![
                ev(Op::Submit, Answer::Submitted, 0, Some(1)),
                ev(Op::Cancel, Answer::AlreadyEnded, 2, Some(3)),
                ev(Op::Get, Answer::NotFound, 4, Some(5)),
                ev(Op::Cancel, Answer::Cancelled, 6, Some(7)),
            ],
        ),
    ];
    for (name, history) in bad {
        assert!(check_forgetting(&history).is_err(), "{name}: accepted");
    }
}
