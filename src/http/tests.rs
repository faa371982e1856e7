//! The HTTP plumbing's unit tests.
use super::*;

struct Noop;

impl Takeover for Noop {
    fn take_over(self: Box<Self>, _: Request, _: Headers) {}
}

#[test]
fn a_stream_takes_the_headers_wrapped_around_it() {
    let inner = Reply::Headed(
        vec![("B", "2".into())],
        Box::new(Reply::Stream(Box::new(Noop))),
    );
    let outer = Reply::Headed(vec![("A", "1".into())], Box::new(inner));
    assert_eq!(outer.status(), 200);
    let Ok((_, headers)) = outer.into_takeover() else {
        panic!("a stream is taken over")
    };
    assert_eq!(headers, [("A", "1".to_string()), ("B", "2".to_string())]);
    let plain = Reply::Headed(vec![("A", "1".into())], Box::new(Reply::Empty(204)));
    let Err(plain) = plain.into_takeover() else {
        panic!("an ordinary reply is sent")
    };
    assert_eq!(plain.status(), 204);
}

#[test]
fn query_is_decoded() {
    let (path, q) = split_url("/ch/a/history?type=a%25&since=X&x=a+b&flag").unwrap();
    assert_eq!(path, "/ch/a/history");
    assert_eq!(q["type"], "a%");
    assert_eq!(q["since"], "X");
    assert_eq!(q["x"], "a b");
    assert_eq!(q["flag"], "");
}

#[test]
fn bad_escapes_are_refused() {
    for bad in ["/?a=%", "/?a=%4", "/?a=%zz", "/?a=%ff", "/?%c3%28=1"] {
        assert_eq!(split_url(bad).unwrap_err().status, 400, "{bad}");
    }
}

#[test]
fn counts_are_bounded() {
    let q = |v: &str| HashMap::from([("n".to_string(), v.to_string())]);
    assert_eq!(count_param(&HashMap::new(), 200, 1000).unwrap(), 200);
    assert_eq!(count_param(&q("5"), 200, 1000).unwrap(), 5);
    assert_eq!(count_param(&q("1000"), 200, 1000).unwrap(), 1000);
    assert_eq!(count_param(&q("5000"), 200, 1000).unwrap(), 1000);
    for bad in ["0", "-1", "abc", "", "1.5", "99999999999999999999999"] {
        assert!(count_param(&q(bad), 200, 1000).is_err(), "{bad}");
    }
}
