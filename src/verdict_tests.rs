//! The rule on plain data, then `judge` on real processes: each judge test fails if the state
//! of a thread is misread (forcing every thread `Exposed` fails the sigwait and mask cases,
//! forcing `Unreadable` the running one).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

const HUP: Signal = Signal::HUP;

#[test]
fn caught_or_ignored_wins_whatever_the_threads_do() {
    let exposed = [(7, Thread::Exposed)];
    assert_eq!(decide(1, 0, &exposed, HUP), (Handling::Caught, None));
    assert_eq!(decide(0, 1, &exposed, HUP), (Handling::Ignored, None));
    assert_eq!(decide(1 << 63, 0, &exposed, Signal(64)).0, Handling::Caught);
}

#[test]
fn one_exposed_thread_is_enough_to_refuse() {
    // The multithreaded victim: the main thread blocks SIGHUP, a worker does not.
    let threads = [(10, Thread::Blocks), (11, Thread::Exposed)];
    assert_eq!(decide(0, 0, &threads, HUP), (Handling::Default, Some(11)));
    let threads = [(10, Thread::Waits), (11, Thread::Unreadable)];
    assert_eq!(decide(0, 0, &threads, HUP), (Handling::Unknown, Some(11)));
}

#[test]
fn waiting_is_safe_and_a_mask_alone_needs_a_signalfd() {
    let masked = decide(0, 0, &[(1, Thread::Blocks), (2, Thread::Blocks)], HUP);
    assert_eq!(masked, (Handling::Masked, None));
    assert_eq!(
        refine(masked.0, || true, || None, false).0,
        Handling::Blocked
    );
    assert_eq!(
        refine(masked.0, || false, || None, false).0,
        Handling::Masked
    );
    // No live thread at all (every one a zombie) is no evidence either.
    assert_eq!(decide(0, 0, &[], HUP).0, Handling::Masked);
    // tini, dumb-init: one thread, in sigtimedwait, SigBlk 0 for the wait.
    assert_eq!(
        decide(0, 0, &[(1, Thread::Waits)], HUP),
        (Handling::Waited, Some(1))
    );
    assert_eq!(
        decide(0, 0, &[(1, Thread::Blocks), (2, Thread::Waits)], HUP),
        (Handling::Waited, Some(2))
    );
}

#[test]
fn a_runtime_catch_all_is_no_handler_unless_trusted() {
    let go = || Some(Runtime::Go);
    assert_eq!(
        refine(Handling::Caught, || false, go, false),
        (Handling::Runtime(Runtime::Go), None)
    );
    assert_eq!(
        refine(Handling::Caught, || false, go, true),
        (Handling::Caught, Some(Runtime::Go))
    );
    assert_eq!(
        refine(Handling::Caught, || false, || None, false).0,
        Handling::Caught
    );
}

fn v(handling: Handling, ns_init: bool) -> Verdict {
    Verdict {
        handling,
        ns_init,
        tid: Some(5),
        signal: HUP,
        trusted: None,
    }
}

#[test]
fn verdicts_send_only_with_evidence_unless_forced() {
    for h in [Handling::Caught, Handling::Blocked, Handling::Waited] {
        assert!(v(h, false).sends(false), "{h:?}");
    }
    for h in [
        Handling::Default,
        Handling::Unknown,
        Handling::Masked,
        Handling::Ignored,
        Handling::Runtime(Runtime::Jvm),
    ] {
        assert!(!v(h, false).sends(false), "{h:?}");
        assert!(v(h, false).sends(true), "{h:?}");
    }
    assert!(v(Handling::Unknown, false)
        .reason()
        .contains("RELOAD_FORCE"));
    assert!(v(Handling::Default, true)
        .reason()
        .contains("kernel would drop"));
    assert!(v(Handling::Default, false).reason().contains("terminate"));
    assert!(v(Handling::Ignored, false)
        .reason()
        .contains("would not reload"));
    let jvm = v(Handling::Runtime(Runtime::Jvm), false).reason();
    assert!(
        jvm.contains("JVM") && jvm.contains("RELOAD_TRUST_HANDLER"),
        "{jvm}"
    );
    // What waiting may change is retried; what only the operator can change is not.
    assert!(Handling::Masked.retried() && Handling::Default.retried());
    assert!(!Handling::Ignored.retried() && !Handling::Runtime(Runtime::Go).retried());
}

/// A child we kill and reap on drop.
struct Proc(Child);

impl Proc {
    fn spawn(program: &str, args: &[&str]) -> Proc {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        Proc(child)
    }

    fn python(script: &str) -> Proc {
        Proc::spawn("/usr/bin/python3", &["-c", script])
    }

    /// Waits until `judge` says `want` for SIGHUP, and returns that verdict; each other
    /// verdict seen on the way is printed, so a failure shows what was read instead.
    fn judged(&self, want: Handling) -> Verdict {
        let pid = Pid::new(self.0.id() as i32).expect("a child pid");
        let mut last = None;
        let what = format!("pid {} judged {want:?}", pid.get());
        testkit::wait_until(Duration::from_secs(10), &what, || {
            let got = judge(pid, HUP, false).expect("judge a live child");
            if got.handling != want && last.as_ref() != Some(&got) {
                eprintln!("pid {}: {got:?}", pid.get());
            }
            let hit = got.handling == want;
            last = Some(got.clone());
            hit.then_some(got)
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn judge_reads_real_threads_sigwait_mask_handler_ignore_and_a_running_loop() {
    let waiter = Proc::python(
        "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})\nwhile True: signal.sigwait({signal.SIGHUP})",
    );
    let masked = Proc::python(
        "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})\nwhile True: time.sleep(1)",
    );
    let handler = Proc::python(
        "import signal, time\nsignal.signal(signal.SIGHUP, lambda *a: None)\nwhile True: time.sleep(1)",
    );
    let sleeper = Proc::spawn("sleep", &["30"]);
    let nohup = Proc::spawn("nohup", &["sleep", "30"]);
    let spinner = Proc::spawn("sh", &["-c", "while :; do :; done"]);
    assert!(waiter.judged(Handling::Waited).sends(false));
    let m = masked.judged(Handling::Masked);
    assert!(!m.sends(false) && m.handling.retried());
    assert!(handler.judged(Handling::Caught).sends(false));
    assert!(!sleeper.judged(Handling::Default).sends(false));
    assert!(!nohup.judged(Handling::Ignored).sends(false));
    // The shell runs: wchan reads 0 as it would without ptrace access, but its state is R.
    let spin = spinner.judged(Handling::Default);
    assert!(!spin.reason().contains("ptrace"), "{}", spin.reason());
}

#[test]
fn our_own_status_is_readable_and_the_test_harness_threads_are_seen() {
    // The test harness does not handle SIGUSR2 and its threads do not block it.
    let me = std::process::id() as i32;
    let status = fs::read(format!("/proc/{me}/status")).unwrap();
    assert!(status_field(&status, "SigCgt").is_some());
    assert_eq!(
        status_field(&status, "NSpid")
            .map(str::trim)
            .map(|s| s.split_whitespace().count() >= 1),
        Some(true)
    );
}
