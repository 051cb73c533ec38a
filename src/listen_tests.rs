//! Unit tests of `listen`.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_input_crashes_the_parser_or_grows_the_head(chunks in vec(vec(any::<u8>(), 0..3000), 0..12)) {
        let mut got = Vec::new();
        for chunk in &chunks {
            let full = keep(&mut got, chunk);
            prop_assert!(got.len() <= MAX_HEAD + 1);
            let asked = parse(&got);
            prop_assert!(!(full && asked == Asked::More), "a full head still asks for more");
            let out = answer(asked, &mut || String::new());
            prop_assert!(out.starts_with(b"HTTP/1.1 ") && out.len() < 512);
            if asked != Asked::More {
                break;
            }
        }
    }

    #[test]
    fn a_scrape_split_anywhere_is_understood_once_whole(
        cut in 0usize..60,
        junk in "[A-Za-z0-9-]{0,20}",
    ) {
        let req = format!("GET /metrics HTTP/1.1\r\nX-{junk}: 1\r\n\r\n");
        let cut = cut.min(req.len() - 1);
        let mut got = Vec::new();
        keep(&mut got, &req.as_bytes()[..cut]);
        prop_assert_eq!(parse(&got), Asked::More);
        keep(&mut got, &req.as_bytes()[cut..]);
        prop_assert_eq!(parse(&got), Asked::Metrics { head: false });
    }
}
