//! A pod-like pair: a config volume written by `testkit`'s kubelet-exact writer, the app's
//! container, and the sidecar image in the app's PID namespace (`--pid=container:APP`, what
//! `shareProcessNamespace: true` gives a pod), both seeing the volume read-only at `/config`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use testkit::kubelet::{UpdateOptions, Volume};
use testkit::TempDir;

use super::{dir_with_mode, image, wait_docker, Container, Image, DEADLINE};

/// The line the sidecar logs once every watch is armed and the baseline is taken.
pub const READY: &str = "info watching";

/// A scratch dir holding the config volume (`config/`, mounted read-only at `/config`) and an
/// output dir (`out/`, mounted read-write at `/out`) where recorders write.
pub struct Pod {
    tmp: TempDir,
    /// The config volume, written as the kubelet writes it.
    pub volume: Volume,
    /// What the containers mount at `/config` instead of the volume (e.g. a FUSE view of it).
    view: Option<PathBuf>,
}

impl Pod {
    /// A pod whose volume first holds `files`.
    pub fn new(files: &[(&str, &[u8])]) -> Pod {
        let tmp = TempDir::new("crs-e2e").expect("temp dir");
        let config = dir_with_mode(&tmp, "config", 0o755);
        dir_with_mode(&tmp, "out", 0o777);
        let volume = Volume::create(&config, files).expect("first population");
        Pod {
            tmp,
            volume,
            view: None,
        }
    }

    /// An empty directory `name` (mode 0755) in the pod's scratch dir, e.g. a mount point.
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        dir_with_mode(&self.tmp, name, 0o755)
    }

    /// From now on the containers see the volume through `dir` (a FUSE view of it, say), as a
    /// pod under gVisor or Kata does; updates are still written to the volume itself.
    pub fn view_through(&mut self, dir: &Path) {
        self.view = Some(dir.to_path_buf());
    }

    /// `-v` argument mounting the volume (or its view) read-only at `/config`.
    pub fn config_mount(&self) -> String {
        let source = self.view.as_deref().unwrap_or(self.volume.root());
        format!("{}:/config:ro", source.display())
    }

    /// `-v` argument mounting the output dir read-write at `/out`.
    pub fn out_mount(&self) -> String {
        format!("{}:/out", self.tmp.join("out").display())
    }

    /// `name` in the output dir, as seen from the host.
    pub fn out(&self, name: &str) -> PathBuf {
        self.tmp.join("out").join(name)
    }

    /// One kubelet update of the whole payload; panics if it was a no-op. Returns the commit's
    /// CLOCK_MONOTONIC ns.
    pub fn update(&self, files: &[(&str, &[u8])]) -> u64 {
        self.volume
            .update_with(files, &UpdateOptions::default())
            .expect("kubelet update")
            .expect("the payload changed")
            .commit_ns
    }

    /// What `chmod`/`touch` (or an old kubelet's fsGroup pass) does to a volume: metadata
    /// only, on every file and directory.
    pub fn chmod_everything(&self) {
        for entry in walk(self.volume.root()) {
            let meta = fs::symlink_metadata(&entry).expect("lstat");
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = if meta.is_dir() { 0o555 } else { 0o444 };
            fs::set_permissions(&entry, fs::Permissions::from_mode(mode)).expect("chmod");
            fs::File::open(&entry)
                .and_then(|f| f.set_modified(SystemTime::now()))
                .expect("touch");
        }
    }

    /// A resync that swaps `..data` for a copy with the same bytes: every event, no change.
    /// `files` must be the current payload.
    pub fn resync(&self, files: &[(&str, &[u8])]) {
        let resync = UpdateOptions {
            swap_on_equal: true,
            ..UpdateOptions::default()
        };
        self.volume
            .update_with(files, &resync)
            .expect("same-content update")
            .expect("swapped");
    }

    /// Starts the sidecar image (its own USER, 65534) in `target`'s PID namespace, watching
    /// `/config` with `env` added (`PROCESS_NAME`, ...); waits until it logs that it is
    /// watching.
    pub fn start_sidecar(&self, target: &Container, env: &[(&str, &str)]) -> Container {
        let config = self.config_mount();
        let pid_ns = format!("container:{}", target.name);
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["--pid", &pid_ns, "-v", &config, "-e", "CONFIG_DIR=/config"];
        for e in &env {
            args.extend(["-e", e]);
        }
        args.push(&image(Image::Sidecar).tag);
        let sidecar = Container::run("sidecar", &args);
        wait_docker(DEADLINE, "the sidecar's `info watching` line", || {
            if sidecar.logs().contains(READY) {
                return Some(());
            }
            assert!(
                sidecar.is_running(),
                "the sidecar exited before it was ready"
            );
            None
        });
        sidecar
    }
}

/// Log lines of `c` that start with `prefix`.
pub fn log_lines(c: &Container, prefix: &str) -> Vec<String> {
    c.logs()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Every path under `dir` (not following symlinks), deepest first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("readdir").flatten() {
        let path = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
