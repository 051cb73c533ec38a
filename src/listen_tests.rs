//! Unit tests of `listen`.

use super::*;

#[test]
fn addresses() {
    assert_eq!(
        parse_address(":9533"),
        Some("0.0.0.0:9533".parse().unwrap())
    );
    assert_eq!(
        parse_address("127.0.0.1:9533"),
        Some("127.0.0.1:9533".parse().unwrap())
    );
    assert_eq!(
        parse_address("[::]:9533"),
        Some("[::]:9533".parse().unwrap())
    );
    for bad in [
        "localhost:9533",
        "9533",
        ":",
        ":99999",
        "[::]",
        "1.2.3.4",
        "http://:9533",
    ] {
        assert_eq!(parse_address(bad), None, "{bad}");
    }
}

#[test]
fn requests() {
    assert_eq!(
        parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        Asked::Metrics { head: false }
    );
    assert_eq!(
        parse(b"HEAD /metrics?x=1 HTTP/1.0\n\n"),
        Asked::Metrics { head: true }
    );
    assert_eq!(
        parse(b"GET /healthz HTTP/1.1\r\n\r\n"),
        Asked::Health { head: false }
    );
    assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Asked::NotFound);
    assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Asked::NotAllowed);
    assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost:"), Asked::More);
    assert_eq!(parse(b"SSH-2.0-x\r\n\r\n"), Asked::Bad);
    assert_eq!(parse(&[b'a'; MAX_HEAD + 1]), Asked::TooLarge);
    assert_eq!(parse(&[b'a'; MAX_HEAD]), Asked::More);
}

#[test]
fn answers_carry_a_length_and_head_has_no_body() {
    let mut m = || "x 1\n".to_string();
    let a = String::from_utf8(answer(Asked::Metrics { head: false }, &mut m)).unwrap();
    assert!(
        a.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4"),
        "{a}"
    );
    assert!(
        a.contains("Content-Length: 4\r\n") && a.ends_with("\r\n\r\nx 1\n"),
        "{a}"
    );
    let h = String::from_utf8(answer(Asked::Metrics { head: true }, &mut m)).unwrap();
    assert!(
        h.contains("Content-Length: 4\r\n") && h.ends_with("\r\n\r\n"),
        "{h}"
    );
    let n = String::from_utf8(answer(Asked::NotAllowed, &mut m)).unwrap();
    assert!(
        n.starts_with("HTTP/1.1 405") && n.contains("Allow: GET, HEAD"),
        "{n}"
    );
}
