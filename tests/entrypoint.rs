//! The app as the reloader's child (`config-reloader [FLAGS] -- APP [ARGS...]`, issue 15): the
//! real binary runs real programs and each test checks what an operator would.

mod entry;

use entry::{child_pid, exit_code, fds, start, status};
use testkit::apps::debian;
use testkit::reloader::{field, path_str};
use testkit::TempDir;

/// Regression: std hands a child our signal mask, which blocks nearly everything, so an app
/// that never sets its own (sleep, a shell script, most interpreters) was deaf to the SIGTERM
/// we forward and `docker stop` waited for its SIGKILL. The app must start as under a shell: no
/// signal blocked, only what our own parent ignored ignored (not SIGPIPE, which std ignores in
/// us), none of our fds. Then TERM and INT, which it does not handle, end it, and the reloader
/// exits 128+N.
#[test]
fn an_app_that_leaves_its_signal_mask_alone_is_not_deaf_to_sigterm() {
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let tmp = TempDir::new("entry-clean").unwrap();
        let sleep = debian("/usr/bin/sleep", "coreutils");
        let app = [path_str(&sleep).to_string(), "1000".into()];
        let mut rel = start(&[("CONFIG_DIR", path_str(tmp.path()))], &app);
        let pid = child_pid(&rel);
        assert_eq!(
            entry::comm(pid).as_deref(),
            Some("sleep"),
            "spawned, then ready"
        );
        assert_eq!(status(pid, "SigBlk").as_deref(), Some("0000000000000000"));
        // Ignored is inherited through exec: what the reloader ignores but SIGPIPE came from
        // its parent (glibc's posix_spawn sets its internal signals 32 and 33 to SIG_IGN).
        let ignored = |pid| u64::from_str_radix(&status(pid, "SigIgn").unwrap(), 16).unwrap();
        let pipe = 1u64 << (libc::SIGPIPE - 1);
        assert_eq!(
            ignored(pid),
            ignored(rel.pid()) & !pipe,
            "SigIgn of the app"
        );
        // Only what the reloader got from its parent: stdio (and here cargo's pipes), never its
        // inotify fd or its signalfd.
        let (app_fds, ours) = (fds(pid), fds(rel.pid()));
        assert!(
            ours.iter().any(|(_, to)| to.contains("inotify")),
            "{ours:?}"
        );
        assert!(
            app_fds
                .iter()
                .all(|fd| ours.contains(fd) && !fd.1.starts_with("anon_inode:")),
            "the app holds an fd of ours: {app_fds:?}"
        );

        rel.signal(sig);
        assert_eq!(exit_code(&mut rel), code, "{}", rel.log());
        let forwarded = rel.lines("info forwarding signal to the app");
        assert_eq!(forwarded.len(), 1, "{}", rel.log());
        assert_eq!(field(&forwarded[0], "pid"), Some(pid.to_string()));
    }
}
