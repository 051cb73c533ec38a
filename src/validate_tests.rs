//! Unit tests of `validate`.

use super::*;
use proptest::prelude::*;

#[test]
fn quotes_group_and_nothing_else_is_special() {
    let w = split(r#"nginx -t -q -g 'daemon off;' "a b"c $HOME \x"#).unwrap();
    assert_eq!(
        w,
        [
            "nginx",
            "-t",
            "-q",
            "-g",
            "daemon off;",
            "a bc",
            "$HOME",
            "\\x"
        ]
    );
    assert_eq!(split("  ").unwrap(), Vec::<String>::new());
    assert_eq!(split("a '' b").unwrap(), ["a", "", "b"]);
    assert_eq!(split("say \"it's\"").unwrap(), ["say", "it's"]);
    assert_eq!(split("a 'b"), Err('\''));
}

#[test]
fn a_missing_program_is_a_one_line_error() {
    let e = parse(
        "RELOAD_VALIDATE_COMMAND",
        "no-such-validator -t",
        Duration::ZERO,
    )
    .unwrap_err();
    assert!(e.0.contains("no-such-validator"), "{}", e.0);
    let ok = parse("X", "sh -c 'exit 0'", Duration::ZERO).unwrap();
    assert!(ok.program.ends_with("sh"));
    assert_eq!(ok.argv, ["sh", "-c", "exit 0"]);
}

#[test]
fn only_a_pass_is_no_failure() {
    assert_eq!(Validation::Passed.failure(), None);
    let failed = Validation::Failed {
        exit: Exit::Code(1),
        output: String::new(),
    };
    assert_eq!(
        failed.failure().as_deref(),
        Some("validation failed (exit 1)")
    );
    let said = Validation::Failed {
        exit: Exit::Code(1),
        output: "nginx: [emerg] unexpected \"}\" | nginx: test failed".into(),
    };
    assert_eq!(
        said.step(),
        Step::Failed("validation failed (exit 1): nginx: [emerg] unexpected \"}\"".into())
    );
    assert_eq!(cut("aé", 2), "a");
    let slow = Validation::TimedOut {
        after: Duration::from_secs(30),
    };
    assert_eq!(
        slow.failure().as_deref(),
        Some("validation timed out after 30s")
    );
}

#[test]
fn output_is_cut_to_its_first_lines() {
    let many: String = (0..100).map(|i| format!("line {i}\n\n")).collect();
    let shown = first_lines(many.as_bytes());
    assert!(shown.starts_with("line 0 | line 1"), "{shown}");
    assert!(shown.ends_with("line 9"), "{shown}");
}

fn word() -> impl Strategy<Value = String> {
    "[a-z;$\\\\/.-]{0,6}( [a-z]{1,3}){0,2}"
}

proptest! {
    #[test]
    fn quoted_words_split_back(words in proptest::collection::vec(word(), 0..6), double in any::<bool>()) {
        let q = if double { '"' } else { '\'' };
        let line: Vec<String> = words.iter().map(|w| format!("{q}{w}{q}")).collect();
        prop_assert_eq!(split(&line.join("  ")).unwrap(), words);
    }

    #[test]
    fn unquoted_text_splits_like_split_whitespace(s in "[^'\"]{0,40}") {
        let want: Vec<&str> = s.split_whitespace().collect();
        prop_assert_eq!(split(&s).unwrap(), want);
    }

    #[test]
    fn any_input_splits_or_names_its_open_quote(s in "\\PC{0,60}") {
        match split(&s) {
            Ok(w) => prop_assert!(w.len() <= s.len()),
            Err(q) => prop_assert!(q == '\'' || q == '"'),
        }
    }
}
