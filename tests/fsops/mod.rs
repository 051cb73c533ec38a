//! The file operations of the randomized test and the oracle it checks the reloader against.
//!
//! The oracle is what an app reads: a walk of each watched directory that follows symlinks and
//! skips `..*` internals (so a kubelet volume is read through its visible links) and editor
//! scratch FILES (`4913`, `*~`, `.*.sw?`). Directories, empty or not, and dangling symlinks
//! count: their names are content. Modes and times are not.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use testkit::kubelet::{UpdateOptions, Volume};

/// A seeded splitmix64: the same seed replays the same operations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        (!xs.is_empty()).then(|| &xs[self.below(xs.len())])
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// One entry as the app sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir,
    Dangling,
}

/// Everything the app reads, keyed by `/`-separated path.
pub type Snapshot = BTreeMap<String, Node>;

/// Editor scratch files: vim's `4913` probe, `file~` backups, `.file.swp`-style swap files.
fn is_scratch_file(name: &str) -> bool {
    let swap = name.starts_with('.') && {
        let b = name.as_bytes();
        b.len() >= 5 && &b[b.len() - 4..b.len() - 1] == b".sw"
    };
    name == "4913" || name.ends_with('~') || swap
}

/// Adds what the app reads under `dir` to `out`, keys prefixed with `prefix`.
pub fn walk(dir: &Path, prefix: &str, out: &mut Snapshot) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        let key = format!("{prefix}/{name}");
        match fs::metadata(entry.path()) {
            Err(_) => {
                out.insert(key, Node::Dangling);
            }
            Ok(m) if m.is_dir() => {
                out.insert(key.clone(), Node::Dir);
                walk(&entry.path(), &key, out);
            }
            Ok(_) if is_scratch_file(&name) => {}
            Ok(_) => {
                out.insert(key, Node::File(fs::read(entry.path()).unwrap_or_default()));
            }
        }
    }
}

const FILES: [&str; 3] = ["a", "b", "c.conf"];
const DIRS: [&str; 3] = ["s", "t", "conf.d~"];
const LINKS: [&str; 2] = ["l1", "l2"];
const BYTES: [&str; 4] = ["", "1", "2", "1\n2\n"];
const KEYS: [&str; 3] = ["app.conf", "b.conf", "sub/x.conf"];

/// The directories and the volume the operations act on.
pub struct World {
    pub rng: Rng,
    pub plain: PathBuf,
    pub outside: PathBuf,
    pub volume: Volume,
    /// Fds held open across the check (a write not closed, a deleted dir held open); closed
    /// before the next step's operation.
    pub held: Vec<File>,
    serial: usize,
}

impl World {
    pub fn new(seed: u64, plain: PathBuf, outside: PathBuf, volume: Volume) -> World {
        World {
            rng: Rng::new(seed),
            plain,
            outside,
            volume,
            held: Vec::new(),
            serial: 0,
        }
    }

    /// Performs one random operation and returns what it did.
    pub fn step(&mut self) -> String {
        self.held.clear();
        loop {
            let op = self.rng.below(19);
            if let Some(done) = self.op(op) {
                return done;
            }
        }
    }

    /// Operation `op`, or `None` if it has nothing to act on right now.
    fn op(&mut self, op: usize) -> Option<String> {
        match op {
            0 | 1 => self.write_file(),
            2 => self.truncate(),
            3 => self.write_without_close(),
            4 => self.rename_file(),
            5 => self.rename_dir(),
            6 => self.move_dir_in(),
            7 => self.delete_and_recreate_held_open(),
            8 => self.chmod_or_touch(),
            9 => self.vim_save(),
            10 => self.sed_i(),
            11 => self.make_dir(),
            12 => self.remove_entry(),
            13 => self.make_link(),
            14 => self.scratch_file(),
            _ => self.kubelet_update(),
        }
    }

    /// Real directories (never through a link) under `plain`, at most 2 levels down.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut out = vec![self.plain.clone()];
        let mut i = 0;
        while i < out.len() {
            let depth = out[i]
                .strip_prefix(&self.plain)
                .map_or(0, |r| r.iter().count());
            if depth < 2 {
                for e in fs::read_dir(&out[i]).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        out.push(e.path());
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// Regular files (not links) in those directories.
    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in self.dirs() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(e.path());
                }
            }
        }
        out
    }

    fn bytes(&mut self) -> &'static str {
        BYTES[self.rng.below(BYTES.len())]
    }

    /// A free `name` from `names` in a random directory.
    fn free_path(&mut self, names: &[&str]) -> Option<PathBuf> {
        let dir = self.rng.pick(&self.dirs())?.clone();
        let path = dir.join(self.rng.pick(names)?);
        fs::symlink_metadata(&path).is_err().then_some(path)
    }

    fn rel(&self, p: &Path) -> String {
        let base = self.plain.parent().unwrap_or(&self.plain);
        p.strip_prefix(base).unwrap_or(p).display().to_string()
    }

    fn write_file(&mut self) -> Option<String> {
        let dir = self.rng.pick(&self.dirs())?.clone();
        let path = dir.join(self.rng.pick(&FILES)?);
        let bytes = self.bytes();
        fs::write(&path, bytes).ok()?;
        Some(format!("write {} {bytes:?}", self.rel(&path)))
    }

    fn truncate(&mut self) -> Option<String> {
        let path = self.rng.pick(&self.files())?.clone();
        let len = self.rng.below(2);
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: c is a valid NUL-terminated path that outlives the call.
        (unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) } == 0).then_some(())?;
        Some(format!("truncate(2) {} {len}", self.rel(&path)))
    }

    fn write_without_close(&mut self) -> Option<String> {
        let path = self.rng.pick(&self.files())?.clone();
        let bytes = self.bytes();
        let mut f = OpenOptions::new().write(true).open(&path).ok()?;
        f.write_all(bytes.as_bytes()).ok()?;
        self.held.push(f);
        Some(format!("write without close {} {bytes:?}", self.rel(&path)))
    }

    fn rename_file(&mut self) -> Option<String> {
        let from = self.rng.pick(&self.files())?.clone();
        let dir = self.rng.pick(&self.dirs())?.clone();
        let to = dir.join(self.rng.pick(&FILES)?);
        if to == from || to.is_dir() {
            return None;
        }
        fs::rename(&from, &to).ok()?;
        Some(format!("mv {} {}", self.rel(&from), self.rel(&to)))
    }

    /// An existing empty directory to rename over, or a free name, outside of `not_under`.
    fn dir_target(&mut self, not_under: Option<&Path>) -> Option<PathBuf> {
        let ok = |p: &Path| not_under.is_none_or(|x| !p.starts_with(x));
        if self.rng.chance(50) {
            let empty: Vec<PathBuf> = self.dirs()[1..]
                .iter()
                .filter(|d| ok(d) && fs::read_dir(d).is_ok_and(|mut r| r.next().is_none()))
                .cloned()
                .collect();
            return self.rng.pick(&empty).cloned();
        }
        let parents: Vec<PathBuf> = self.dirs().into_iter().filter(|d| ok(d)).collect();
        let parent = self.rng.pick(&parents)?.clone();
        let path = parent.join(self.rng.pick(&DIRS)?);
        fs::symlink_metadata(&path).is_err().then_some(path)
    }

    fn rename_dir(&mut self) -> Option<String> {
        let from = self.rng.pick(&self.dirs()[1..])?.clone();
        if self.rng.chance(25) {
            self.serial += 1;
            let to = self.outside.join(format!("out{}", self.serial));
            fs::rename(&from, &to).ok()?;
            return Some(format!("mv {} out of the tree", self.rel(&from)));
        }
        let to = self.dir_target(Some(&from))?;
        fs::rename(&from, &to).ok()?;
        Some(format!("mv -T {} {}", self.rel(&from), self.rel(&to)))
    }

    fn move_dir_in(&mut self) -> Option<String> {
        let to = self.dir_target(None)?;
        self.serial += 1;
        let from = self.outside.join(format!("in{}", self.serial));
        fs::create_dir(&from).ok()?;
        let bytes = self.bytes();
        fs::write(from.join(self.rng.pick(&FILES)?), bytes).ok()?;
        fs::rename(&from, &to).ok()?;
        Some(format!(
            "mv -T outside/in {} (one file {bytes:?})",
            self.rel(&to)
        ))
    }

    fn delete_and_recreate_held_open(&mut self) -> Option<String> {
        let dir = self.rng.pick(&self.dirs()[1..])?.clone();
        let fd = File::open(&dir).ok()?;
        fs::remove_dir_all(&dir).ok()?;
        fs::create_dir(&dir).ok()?;
        let bytes = self.bytes();
        let file = dir.join(self.rng.pick(&FILES)?);
        fs::write(&file, bytes).ok()?;
        self.held.push(fd);
        Some(format!(
            "rm -rf + mkdir {} held open, write {bytes:?}",
            self.rel(&file)
        ))
    }

    fn chmod_or_touch(&mut self) -> Option<String> {
        let path = self.rng.pick(&self.files())?.clone();
        if self.rng.chance(50) {
            let mode = [0o600, 0o640, 0o644][self.rng.below(3)];
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).ok()?;
            return Some(format!("chmod {mode:o} {}", self.rel(&path)));
        }
        let t = SystemTime::now() - Duration::from_secs(self.rng.below(1000) as u64);
        File::open(&path).ok()?.set_modified(t).ok()?;
        Some(format!("touch {}", self.rel(&path)))
    }

    /// What vim does on `:w` with the default `backupcopy=auto`: probe with `4913`, rename the
    /// file to `file~`, write a new file, delete the backup; a `.file.swp` may stay behind.
    fn vim_save(&mut self) -> Option<String> {
        let path = self.rng.pick(&self.files())?.clone();
        let dir = path.parent()?.to_path_buf();
        let name = path.file_name()?.to_string_lossy().into_owned();
        if fs::write(dir.join("4913"), "").is_ok() {
            let _ = fs::remove_file(dir.join("4913"));
        }
        let backup = dir.join(format!("{name}~"));
        fs::rename(&path, &backup).ok()?;
        let bytes = self.bytes();
        fs::write(&path, bytes).ok()?;
        fs::remove_file(&backup).ok()?;
        let swap = dir.join(format!(".{name}.swp"));
        if self.rng.chance(50) {
            let _ = fs::write(&swap, "b0VIM");
        } else {
            let _ = fs::remove_file(&swap);
        }
        Some(format!("vim :w {} {bytes:?}", self.rel(&path)))
    }

    fn sed_i(&mut self) -> Option<String> {
        let path = self.rng.pick(&self.files())?.clone();
        let expr = ["s/1/2/", "s/2/1/", "s/x/y/"][self.rng.below(3)];
        let ok = Command::new("sed").args(["-i", expr]).arg(&path).status();
        ok.ok()?.success().then_some(())?;
        Some(format!("sed -i {expr} {}", self.rel(&path)))
    }

    fn make_dir(&mut self) -> Option<String> {
        let path = self.free_path(&DIRS)?;
        fs::create_dir(&path).ok()?;
        Some(format!("mkdir {}", self.rel(&path)))
    }

    fn remove_entry(&mut self) -> Option<String> {
        let dirs = self.dirs();
        let dir = self.rng.pick(&dirs)?;
        let entries: Vec<PathBuf> = fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        let path = self.rng.pick(&entries)?.clone();
        match fs::symlink_metadata(&path).ok()?.is_dir() {
            true => fs::remove_dir_all(&path).ok()?,
            false => fs::remove_file(&path).ok()?,
        }
        Some(format!("rm -rf {}", self.rel(&path)))
    }

    /// A dangling link, or a link to a file beside it (dangling once that file goes).
    fn make_link(&mut self) -> Option<String> {
        let path = self.free_path(&LINKS)?;
        let target = match self.rng.chance(50) {
            true => "nowhere",
            false => self.rng.pick(&FILES)?,
        };
        symlink(target, &path).ok()?;
        Some(format!("ln -s {target} {}", self.rel(&path)))
    }

    fn scratch_file(&mut self) -> Option<String> {
        let dir = self.rng.pick(&self.dirs())?.clone();
        let name = ["4913", "a~", ".a.swp", ".c.conf.swx"][self.rng.below(4)];
        let path = dir.join(name);
        if path.is_dir() {
            return None;
        }
        let bytes = self.bytes();
        fs::write(&path, bytes).ok()?;
        Some(format!("scratch file {} {bytes:?}", self.rel(&path)))
    }

    fn kubelet_update(&mut self) -> Option<String> {
        let mut files: Vec<(&str, &[u8])> = Vec::new();
        for key in KEYS {
            if self.rng.chance(60) {
                files.push((key, self.bytes().as_bytes()));
            }
        }
        if files.is_empty() {
            return None;
        }
        let ms = |n: u64| Some(Duration::from_millis(n));
        let opts = UpdateOptions {
            swap_on_equal: self.rng.chance(30),
            fsgroup: self.rng.chance(20).then_some(0),
            pause_after_commit: if self.rng.chance(30) { ms(50) } else { None },
            pause_between_keys: if self.rng.chance(20) { ms(150) } else { None },
            legacy_order: false,
            default_mode: None,
        };
        let commit = self.volume.update_with(&files, &opts).ok()?;
        let what = if commit.is_some() { "swapped" } else { "no-op" };
        Some(format!("kubelet update {files:?} {opts:?}: {what}"))
    }
}
